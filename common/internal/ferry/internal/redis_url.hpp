#pragma once
// The one reader of Redis URLs. Configuration validation (config/), the dedup Redis store and
// reconciliation's Redis lookup all call parse_redis_url, so a URL that config accepts is exactly
// a URL the clients can use, and the reasons for refusing one are worded once.
//
// Accepted forms (hiredis 0.14 as Debian ships it: no TLS, no cluster):
//   redis://[user[:password]@]host[:port][/db]    host may be [IPv6]; port 1-65535 (6379)
//   unix://[user[:password]@]/path/to/redis.sock[?db=N]
// A user-info without ':' is a password (Redis's convention, as `redis-cli -u` reads it), sent
// as `AUTH password`; `user:password` is sent as `AUTH user password` (ACL users, Redis 6+).
// User and password may be percent-encoded; the user-info runs to the last '@' of the URL, so an
// unencoded password may still hold '/', '?', '#' or '@' (ferry::redact_url masks the same span).
//
// Problems are plain text that never contains the user-info: they may name the scheme, host,
// port, db index or a query parameter name, nothing else. Free functions, no state, any thread.

#include <optional>
#include <string>
#include <string_view>

namespace ferry::internal {

/// Where and how to connect, as read from a Redis URL.
struct redis_target {
    bool unix_socket = false;
    std::string host;         // TCP: host name or address (IPv6 without brackets)
    int port = 6379;          // TCP
    std::string socket_path;  // unix_socket: absolute path
    std::string user;         // ACL user; empty = the default user
    std::string password;     // empty = no AUTH
    int db = 0;               // SELECT when not 0

    /// "host:port", "[::1]:port" or "unix:/path", for logs and errors: never credentials.
    [[nodiscard]] std::string where() const;
};

struct redis_url_result {
    std::optional<redis_target> target;  // set when the URL is usable
    std::string problem;                 // otherwise: why not, without secrets

    [[nodiscard]] bool ok() const noexcept { return target.has_value(); }
};

/// Parses a Redis URL strictly; never throws on bad input.
[[nodiscard]] redis_url_result parse_redis_url(std::string_view url);

/// The longest unix socket path the kernel accepts (sun_path holds 108 bytes with the NUL).
inline constexpr std::size_t k_max_redis_socket_path = 107;

}  // namespace ferry::internal
