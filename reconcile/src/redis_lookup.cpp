#include "redis_lookup.hpp"

#include <hiredis/hiredis.h>

#include <cstdlib>

#include "ferry/common/error.hpp"

namespace ferry::reconcile {
namespace {

[[noreturn]] void unavailable(const std::string& what) {
    throw ferry::error(error_kind::retryable, "reconcile.redis_unavailable",
                       "Redis unavailable: " + what, "reconcile.groups.redis_url");
}

}  // namespace

struct redis_lookup::impl {
    redisContext* c = nullptr;
    std::string prefix;
    std::string group;
    ~impl() {
        if (c != nullptr) redisFree(c);
    }
    void command_ok(redisReply* r, const char* what) {
        const bool bad = r == nullptr || r->type == REDIS_REPLY_ERROR;
        std::string e = bad ? (r != nullptr ? std::string(r->str, r->len) : std::string(c->errstr))
                            : std::string();
        if (r != nullptr) freeReplyObject(r);
        if (bad) unavailable(std::string(what) + ": " + e);
    }
};

redis_lookup::redis_lookup(const std::string& url, std::string prefix, std::string group)
    : _impl(std::make_unique<impl>()) {
    _impl->prefix = std::move(prefix);
    _impl->group = std::move(group);
    std::string rest = url, host = "127.0.0.1", password;
    int port = 6379, db = 0;
    if (rest.rfind("redis://", 0) != 0) {
        throw ferry::error(error_kind::permanent, "reconcile.redis_url",
                           "redis url must start with redis://", "reconcile.groups.redis_url");
    }
    rest = rest.substr(8);
    if (auto at = rest.rfind('@'); at != std::string::npos) {
        auto cred = rest.substr(0, at);
        rest = rest.substr(at + 1);
        auto colon = cred.find(':');
        password = colon == std::string::npos ? cred : cred.substr(colon + 1);
    }
    if (auto slash = rest.find('/'); slash != std::string::npos) {
        if (slash + 1 < rest.size()) db = std::atoi(rest.c_str() + slash + 1);
        rest = rest.substr(0, slash);
    }
    if (auto colon = rest.rfind(':'); colon != std::string::npos) {
        port = std::atoi(rest.c_str() + colon + 1);
        rest = rest.substr(0, colon);
    }
    if (!rest.empty()) host = rest;
    timeval tv{5, 0};
    _impl->c = redisConnectWithTimeout(host.c_str(), port, tv);
    if (_impl->c == nullptr) unavailable("cannot allocate a connection");
    if (_impl->c->err != 0) unavailable(std::string("connect: ") + _impl->c->errstr);
    redisSetTimeout(_impl->c, timeval{30, 0});
    if (!password.empty()) {
        _impl->command_ok(
            static_cast<redisReply*>(redisCommand(_impl->c, "AUTH %s", password.c_str())), "AUTH");
    }
    if (db != 0) {
        _impl->command_ok(static_cast<redisReply*>(redisCommand(_impl->c, "SELECT %d", db)),
                          "SELECT");
    }
}

redis_lookup::~redis_lookup() = default;

std::vector<bool> redis_lookup::done(const std::vector<std::string>& ids) {
    std::vector<bool> out(ids.size(), false);
    for (const auto& id : ids) {
        const std::string key = _impl->prefix + ":" + _impl->group + ":" + id;
        if (redisAppendCommand(_impl->c, "GET %b", key.data(), key.size()) != REDIS_OK) {
            unavailable("pipeline GET");
        }
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
        void* reply = nullptr;
        if (redisGetReply(_impl->c, &reply) != REDIS_OK || reply == nullptr) {
            unavailable(std::string("GET reply: ") + _impl->c->errstr);
        }
        auto* r = static_cast<redisReply*>(reply);
        out[i] = r->type == REDIS_REPLY_STRING && std::string(r->str, r->len) == "done";
        freeReplyObject(r);
    }
    return out;
}

}  // namespace ferry::reconcile
