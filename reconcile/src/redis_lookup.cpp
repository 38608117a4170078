#include "redis_lookup.hpp"

#include <hiredis/hiredis.h>

#include <chrono>

#include "ferry/common/error.hpp"
#include "ferry/internal/redis_connect.hpp"
#include "ferry/internal/redis_url.hpp"

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
};

redis_lookup::redis_lookup(const std::string& url, std::string prefix, std::string group)
    : _impl(std::make_unique<impl>()) {
    _impl->prefix = std::move(prefix);
    _impl->group = std::move(group);
    // The one Redis URL reader and connector (the dedup store and config validation share it).
    auto parsed = internal::parse_redis_url(url);
    if (!parsed.ok()) {
        throw ferry::error(error_kind::permanent, "reconcile.redis_url",
                           "reconcile.groups.redis_url: " + parsed.problem,
                           "reconcile.groups.redis_url");
    }
    _impl->c =
        internal::redis_connect(*parsed.target, std::chrono::seconds(5), std::chrono::seconds(30),
                                "reconcile", "reconcile.groups.redis_url");
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
