#pragma once
// Opening a hiredis connection from a parsed Redis URL, the one way Ferry does it (the dedup
// store and reconciliation's lookup). Header-only: only modules that link hiredis include it.
//
// Errors (ferry::error, `field` names the configuration key that held the URL):
//   retryable  <prefix>.redis_unavailable  cannot connect, timed out, connection lost, LOADING
//   permanent  <prefix>.redis_auth         the server refused the credentials (WRONGPASS,
//                                          NOAUTH, an AUTH without a configured password)
//   permanent  <prefix>.redis_db           SELECT refused (db index beyond `databases`)
// Messages name the endpoint (redis_target::where()) and the user, never the password; a server
// reply is scrubbed of the password in case it was ever echoed.

#include <hiredis/hiredis.h>

#include <chrono>
#include <string>

#include "ferry/common/error.hpp"
#include "ferry/internal/redis_url.hpp"

namespace ferry::internal {

inline timeval redis_timeval(std::chrono::milliseconds ms) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
    return tv;
}

/// Connects to `t`, sends AUTH (`AUTH user password` for an ACL user, `AUTH password` for a
/// password alone) and SELECT, and sets the command timeout. The caller owns the context
/// (redisFree).
[[nodiscard]] inline redisContext* redis_connect(const redis_target& t,
                                                 std::chrono::milliseconds connect_timeout,
                                                 std::chrono::milliseconds command_timeout,
                                                 const std::string& code_prefix,
                                                 const std::string& field) {
    const auto scrub = [&](std::string text) {
        if (!t.password.empty()) {
            for (auto p = text.find(t.password); p != std::string::npos;
                 p = text.find(t.password, p + 3)) {
                text.replace(p, t.password.size(), "***");
            }
        }
        return text;
    };
    const auto fail = [&](error_kind kind, const char* code, const std::string& what) {
        throw ferry::error(kind, code_prefix + code, "Redis " + t.where() + ": " + scrub(what),
                           field);
    };
    redisContext* c =
        t.unix_socket
            ? redisConnectUnixWithTimeout(t.socket_path.c_str(), redis_timeval(connect_timeout))
            : redisConnectWithTimeout(t.host.c_str(), t.port, redis_timeval(connect_timeout));
    if (c == nullptr) fail(error_kind::retryable, ".redis_unavailable", "cannot allocate");
    if (c->err != 0) {
        const std::string e = c->errstr;
        redisFree(c);
        fail(error_kind::retryable, ".redis_unavailable", "connect: " + e);
    }
    redisSetTimeout(c, redis_timeval(command_timeout));
    // Runs one command; an error reply is permanent (`code`) unless the server is only loading.
    const auto run = [&](redisReply* r, const char* code, const std::string& what) {
        if (r == nullptr) {
            const std::string e = c->errstr;
            redisFree(c);
            fail(error_kind::retryable, ".redis_unavailable", what + ": " + e);
        }
        if (r->type == REDIS_REPLY_ERROR) {
            const std::string e(r->str, r->len);
            freeReplyObject(r);
            redisFree(c);
            const bool transient = e.rfind("LOADING", 0) == 0 || e.rfind("BUSY", 0) == 0;
            fail(transient ? error_kind::retryable : error_kind::permanent,
                 transient ? ".redis_unavailable" : code, what + " refused: " + e);
        }
        freeReplyObject(r);
    };
    if (!t.user.empty()) {
        run(static_cast<redisReply*>(redisCommand(c, "AUTH %b %b", t.user.data(), t.user.size(),
                                                  t.password.data(), t.password.size())),
            ".redis_auth", "AUTH as user \"" + t.user + "\"");
    } else if (!t.password.empty()) {
        run(static_cast<redisReply*>(
                redisCommand(c, "AUTH %b", t.password.data(), t.password.size())),
            ".redis_auth", "AUTH (password only, default user)");
    }
    if (t.db != 0) {
        run(static_cast<redisReply*>(redisCommand(c, "SELECT %d", t.db)), ".redis_db",
            "SELECT " + std::to_string(t.db));
    }
    return c;
}

}  // namespace ferry::internal
