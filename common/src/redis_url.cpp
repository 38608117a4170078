#include "ferry/internal/redis_url.hpp"

#include <algorithm>
#include <charconv>
#include <climits>

namespace ferry::internal {
namespace {

constexpr std::string_view k_forms =
    "redis://[user[:password]@]host[:port][/db] or unix:///path/to/redis.sock[?db=N]";
constexpr std::size_t k_max_quoted = 40;

// A non-secret piece of the URL quoted in a problem, truncated.
std::string quoted(std::string_view s) {
    std::string out = "\"";
    out += s.substr(0, k_max_quoted);
    if (s.size() > k_max_quoted) out += "...";
    return out + '"';
}

redis_url_result refuse(std::string problem) { return {std::nullopt, std::move(problem)}; }

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Percent-decoding of user-info; nullopt on a broken escape ("%", "%4", "%zz").
std::optional<std::string> decoded(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        if (i + 2 >= s.size() || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0) {
            return std::nullopt;
        }
        out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
        i += 2;
    }
    return out;
}

bool all_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A decimal in [lo, hi] with digits only (no sign, no space, no suffix), or nullopt.
std::optional<int> strict_int(std::string_view s, int lo, int hi) {
    if (!all_digits(s) || s.size() > 10) return std::nullopt;
    long long v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size() || v < lo || v > hi) return std::nullopt;
    return static_cast<int>(v);
}

std::optional<std::string> db_problem(std::string_view text, int& db) {
    const auto v = strict_int(text, 0, INT_MAX);
    if (!v) return "bad db index " + quoted(text) + " (expected a number from 0)";
    db = *v;
    return std::nullopt;
}

bool is_host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

// host[:port] or [v6][:port] into t.
std::optional<std::string> authority_problem(std::string_view a, redis_target& t) {
    if (a.empty()) return "empty host (expected " + std::string(k_forms) + ")";
    std::string_view host;
    std::string_view rest;  // "" or ":port"
    if (a.front() == '[') {
        const auto close = a.find(']');
        if (close == std::string_view::npos) return std::string("unclosed '[' in the host");
        host = a.substr(1, close - 1);
        rest = a.substr(close + 1);
        if (host.empty()) return "empty host (expected " + std::string(k_forms) + ")";
        if (!std::all_of(host.begin(), host.end(),
                         [](char c) { return hex_value(c) >= 0 || c == ':' || c == '.'; })) {
            return "bad IPv6 address " + quoted(host);
        }
        if (!rest.empty() && rest.front() != ':') {
            return "unexpected text after the IPv6 address: " + quoted(rest);
        }
    } else {
        const auto colon = a.find(':');
        if (colon != std::string_view::npos && a.find(':', colon + 1) != std::string_view::npos) {
            return "bad host:port " + quoted(a) +
                   " (write IPv6 addresses in brackets, as redis://[::1]:6379)";
        }
        host = a.substr(0, colon);
        rest = colon == std::string_view::npos ? std::string_view{} : a.substr(colon);
        if (host.empty()) return "empty host (expected " + std::string(k_forms) + ")";
        if (!std::all_of(host.begin(), host.end(), is_host_char)) {
            return "bad host " + quoted(host) + " (a name or address of [a-zA-Z0-9.-_])";
        }
    }
    t.host = std::string(host);
    if (!rest.empty()) {
        const auto port_text = rest.substr(1);
        if (port_text.empty()) return std::string("empty port after ':' (expected 1-65535)");
        const auto port = strict_int(port_text, 1, 65535);
        if (!port) return "bad port " + quoted(port_text) + " (expected 1-65535)";
        t.port = *port;
    }
    return std::nullopt;
}

}  // namespace

std::string redis_target::where() const {
    if (unix_socket) return "unix:" + socket_path;
    const bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

redis_url_result parse_redis_url(std::string_view url) {
    if (url.empty()) return refuse("must not be empty (expected " + std::string(k_forms) + ")");
    const auto sep = url.find("://");
    if (sep == std::string_view::npos) {
        return refuse("missing scheme (expected " + std::string(k_forms) + ")");
    }
    std::string scheme(url.substr(0, sep));
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) {
        return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    });
    if (scheme == "rediss") {
        return refuse(
            "rediss:// (TLS) is not supported: the hiredis 0.14 client Ferry is built with has no "
            "TLS; reach a TLS Redis through a local tunnel (stunnel or spiped on loopback) and "
            "use redis://127.0.0.1:<tunnel port>, see docs/operations.md \"Redis over TLS\"");
    }
    const bool unix_socket = scheme == "unix";
    if (scheme != "redis" && !unix_socket) {
        const bool printable =
            !scheme.empty() && std::all_of(scheme.begin(), scheme.end(),
                                           [](char c) { return is_host_char(c) || c == '+'; });
        return refuse("unsupported scheme " + (printable ? quoted(scheme) : std::string("")) +
                      (printable ? " " : "") + "(expected " + std::string(k_forms) +
                      "; Redis Cluster and Sentinel are not supported)");
    }

    redis_target t;
    t.unix_socket = unix_socket;
    std::string_view rest = url.substr(sep + 3);

    // User-info runs to the last '@' (see the header).
    if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
        const auto info = rest.substr(0, at);
        rest = rest.substr(at + 1);
        const auto colon = info.find(':');
        const auto user = decoded(colon == std::string_view::npos ? "" : info.substr(0, colon));
        const auto password =
            decoded(colon == std::string_view::npos ? info : info.substr(colon + 1));
        if (!user || !password) return refuse("bad percent-encoding in the user-info");
        if (!user->empty() && password->empty()) {
            return refuse("a user name without a password (write user:password@)");
        }
        t.user = *user;
        t.password = *password;
    }
    if (rest.find('#') != std::string_view::npos) {
        return refuse("a fragment ('#') is not part of a Redis URL");
    }
    std::string_view query;
    if (const auto q = rest.find('?'); q != std::string_view::npos) {
        query = rest.substr(q + 1);
        rest = rest.substr(0, q);
    }

    if (unix_socket) {
        if (rest.empty() || rest == "/") {
            return refuse("empty socket path (expected unix:///path/to/redis.sock)");
        }
        if (rest.front() != '/') {
            return refuse(
                "the socket path must be absolute, with nothing between unix:// and it "
                "(expected unix:///path/to/redis.sock)");
        }
        if (rest.size() > k_max_redis_socket_path) {
            return refuse("socket path is longer than " + std::to_string(k_max_redis_socket_path) +
                          " bytes, the limit of a unix socket address");
        }
        if (rest.back() == '/') return refuse("socket path " + quoted(rest) + " names a directory");
        t.socket_path = std::string(rest);
        bool db_seen = false;
        std::size_t pos = 0;
        while (!query.empty() && pos <= query.size()) {
            auto end = query.find('&', pos);
            if (end == std::string_view::npos) end = query.size();
            const auto param = query.substr(pos, end - pos);
            const auto eq = param.find('=');
            const auto name = param.substr(0, eq);
            if (name != "db") {
                return refuse("unknown query parameter " + quoted(name) +
                              " (unix:// URLs take only ?db=N)");
            }
            if (db_seen) return refuse("db given twice");
            db_seen = true;
            if (auto p =
                    db_problem(eq == std::string_view::npos ? "" : param.substr(eq + 1), t.db)) {
                return refuse(*p);
            }
            pos = end + 1;
        }
        return {std::move(t), {}};
    }

    if (!query.empty()) {
        return refuse(
            "query parameters are not supported in redis:// URLs (put the db in the path, as "
            "redis://host:6379/2)");
    }
    const auto slash = rest.find('/');
    const auto authority = rest.substr(0, slash);
    if (auto p = authority_problem(authority, t)) return refuse(*p);
    if (slash != std::string_view::npos) {
        const auto path = rest.substr(slash + 1);
        if (!path.empty()) {
            if (auto p = db_problem(path, t.db)) return refuse(*p);
        }
    }
    return {std::move(t), {}};
}

}  // namespace ferry::internal
