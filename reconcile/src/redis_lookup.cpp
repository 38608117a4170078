#include "redis_lookup.hpp"

#include <hiredis/hiredis.h>

#include <chrono>
#include <functional>
#include <string_view>

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

// A message is done when its key holds "done", or names a run ("r:<token>", ADR 0024) whose
// key `<prefix>:run:<token>` holds "done". Two pipelined rounds: the message keys, then the run
// keys they name.
std::vector<bool> redis_lookup::done(const std::vector<std::string>& ids) {
    std::vector<bool> out(ids.size(), false);
    auto get_all = [&](const std::vector<std::string>& keys,
                       const std::function<void(std::size_t, const redisReply&)>& on_reply) {
        for (const auto& key : keys) {
            if (redisAppendCommand(_impl->c, "GET %b", key.data(), key.size()) != REDIS_OK) {
                unavailable("pipeline GET");
            }
        }
        for (std::size_t i = 0; i < keys.size(); ++i) {
            void* reply = nullptr;
            if (redisGetReply(_impl->c, &reply) != REDIS_OK || reply == nullptr) {
                unavailable(std::string("GET reply: ") + _impl->c->errstr);
            }
            auto* r = static_cast<redisReply*>(reply);
            on_reply(i, *r);
            freeReplyObject(r);
        }
    };
    std::vector<std::string> keys;
    keys.reserve(ids.size());
    for (const auto& id : ids) keys.push_back(_impl->prefix + ":" + _impl->group + ":" + id);
    std::vector<std::string> run_keys;
    std::vector<std::size_t> run_of;  // index into ids of each run key
    get_all(keys, [&](std::size_t i, const redisReply& r) {
        if (r.type != REDIS_REPLY_STRING) return;
        const std::string_view v(r.str, r.len);
        if (v == "done") {
            out[i] = true;
        } else if (v.substr(0, 2) == "r:") {
            run_keys.push_back(_impl->prefix + ":run:" + std::string(v));
            run_of.push_back(i);
        }
    });
    get_all(run_keys, [&](std::size_t j, const redisReply& r) {
        out[run_of[j]] = r.type == REDIS_REPLY_STRING && std::string_view(r.str, r.len) == "done";
    });
    return out;
}

}  // namespace ferry::reconcile
