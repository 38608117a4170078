#include "ferry/dedup/redis_store.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <sstream>
#include <vector>

#include "ferry/internal/redis_connect.hpp"
#include "ferry/internal/redis_url.hpp"

namespace ferry::dedup {
namespace {

// Claims and "done" marks are plain pipelined SET commands (below); only the compare-and-set
// operations of the store contract (complete, release) are scripts. A script call costs the
// server several times a SET per key (measured, ADR 0023), and claims and marks are the hot path.
//
// complete: KEYS = message keys; ARGV[1] = done window ms; ARGV[i + 1] = token for KEYS[i].
// Per key: 1 = completed (compare-and-set owner -> "done"), 0 = another owner holds it or it was
// done already. A key that expired (lease over, nobody else claimed it) is completed as well:
// nobody can be applying it concurrently, and remembering "done" is what the caller wants.
constexpr const char* complete_lua =
    "local out = {} "
    "for i, k in ipairs(KEYS) do "
    "  local v = redis.call('GET', k) "
    "  if v == ARGV[i + 1] or not v then redis.call('SET', k, 'done', 'PX', ARGV[1]) out[i] = 1 "
    "  else out[i] = 0 end "
    "end "
    "return out";
// release: KEYS[1] message key; ARGV[1] token. 1 = released, 0 = not the owner.
constexpr const char* release_lua =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end "
    "return 0";

[[noreturn]] void unavailable(const std::string& what) {
    throw ferry::error(error_kind::retryable, "dedup.redis_unavailable",
                       "Redis dedup store unavailable: " + what, "redis.url");
}

struct reply_ptr {
    redisReply* r = nullptr;
    ~reply_ptr() {
        if (r != nullptr) freeReplyObject(r);
    }
};

}  // namespace

struct redis_store::impl {
    redis_options o;
    internal::redis_target url;
    std::mutex mutex;
    std::vector<redisContext*> idle;
    std::string token_prefix;
    std::atomic<unsigned long long> counter{0};
    std::string shas[2];  // complete, release (set once, read under no lock after)

    ~impl() {
        for (auto* c : idle) redisFree(c);
    }

    redisContext* open() {
        redisContext* c = internal::redis_connect(url, o.connect_timeout, o.command_timeout,
                                                  "dedup", o.url_field);
        auto check = [&](redisReply* r, const char* what) {
            reply_ptr guard{r};
            if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
                std::string e = r != nullptr ? std::string(r->str, r->len) : std::string(c->errstr);
                redisFree(c);
                unavailable(std::string(what) + ": " + e);
            }
        };
        // EVALSHA saves the server hashing the script body on every call. Scripts survive
        // FLUSHALL but not a restart; a reply of NOSCRIPT drops the connection, and the next one
        // loads them again.
        std::lock_guard lock(mutex);
        if (shas[0].empty()) {
            const char* scripts[2] = {complete_lua, release_lua};
            for (int i = 0; i < 2; ++i) {
                auto* r = static_cast<redisReply*>(redisCommand(c, "SCRIPT LOAD %s", scripts[i]));
                if (r == nullptr || r->type != REDIS_REPLY_STRING) {
                    std::string e = (r != nullptr && r->type == REDIS_REPLY_ERROR)
                                        ? std::string(r->str, r->len)
                                        : std::string(c->errstr);
                    if (r != nullptr) freeReplyObject(r);
                    redisFree(c);
                    unavailable("SCRIPT LOAD: " + e);
                }
                shas[i].assign(r->str, r->len);
                freeReplyObject(r);
            }
        } else {
            for (int i = 0; i < 2; ++i) {
                const char* scripts[2] = {complete_lua, release_lua};
                check(static_cast<redisReply*>(redisCommand(c, "SCRIPT LOAD %s", scripts[i])),
                      "SCRIPT LOAD");
            }
        }
        return c;
    }

    // A pooled connection; returned to the pool unless it broke.
    struct lease_conn {
        impl* owner;
        redisContext* c;
        bool broken = false;
        ~lease_conn() {
            if (c == nullptr) return;
            if (broken || c->err != 0) {
                redisFree(c);
                return;
            }
            std::lock_guard lock(owner->mutex);
            owner->idle.push_back(c);
        }
    };

    lease_conn get() {
        {
            std::lock_guard lock(mutex);
            if (!idle.empty()) {
                auto* c = idle.back();
                idle.pop_back();
                return lease_conn{this, c};
            }
        }
        return lease_conn{this, open()};
    }

    // `<key_prefix>:<group>:<message_id>` into `k`, reusing its buffer.
    void key_into(std::string& k, std::string_view group, std::string_view message_id) const {
        k.clear();
        k.append(o.key_prefix).append(":").append(group).append(":").append(message_id);
    }

    std::string new_token() {
        return token_prefix + std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
    }

    // Sends n pipelined commands (append(c, i) queues command i) and hands each reply to
    // on_reply(i, reply) in order. Every reply is read even after an error reply, so the
    // connection stays in step; then the first error is thrown (retryable, and the connection
    // is dropped: NOSCRIPT after a restart makes the next connection reload the scripts).
    template <typename Append, typename OnReply>
    void pipeline_each(std::size_t n, Append&& append, OnReply&& on_reply) {
        auto conn = get();
        for (std::size_t i = 0; i < n; ++i) {
            if (append(conn.c, i) != REDIS_OK) {
                conn.broken = true;
                unavailable(std::string("send: ") + conn.c->errstr);
            }
        }
        std::string failure;
        for (std::size_t i = 0; i < n; ++i) {
            void* raw = nullptr;
            if (redisGetReply(conn.c, &raw) != REDIS_OK) {
                conn.broken = true;
                if (raw != nullptr) freeReplyObject(raw);
                unavailable(std::string("reply: ") + conn.c->errstr);
            }
            reply_ptr r{static_cast<redisReply*>(raw)};
            if (r.r != nullptr && r.r->type == REDIS_REPLY_ERROR) {
                if (failure.empty()) failure.assign(r.r->str, r.r->len);
                continue;
            }
            if (r.r == nullptr || !on_reply(i, *r.r)) {
                if (failure.empty()) failure = "unexpected reply type";
            }
        }
        if (!failure.empty()) {
            conn.broken = true;
            unavailable(failure);
        }
    }

    // Sends n pipelined commands and returns their integer replies, flattening array replies
    // (the multi-key scripts return one integer per key).
    template <typename Append>
    std::vector<long long> pipeline(std::size_t n, Append&& append) {
        std::vector<long long> out;
        pipeline_each(n, append, [&](std::size_t, const redisReply& r) {
            if (r.type == REDIS_REPLY_INTEGER) {
                out.push_back(r.integer);
                return true;
            }
            if (r.type == REDIS_REPLY_ARRAY) {
                for (std::size_t j = 0; j < r.elements; ++j) {
                    const auto* e = r.element[j];
                    out.push_back(e->type == REDIS_REPLY_INTEGER ? e->integer : -1);
                }
                return true;
            }
            return false;
        });
        return out;
    }

    // One multi-key script call over many keys: `sha` with ARGV[1] = arg1 and one argument per
    // key.
    struct script_job {
        const std::string* sha;
        const std::vector<std::string>* keys;
        std::string arg1;
        const std::vector<std::string>* per_key;
    };

    // EVALSHA of each job's script over its keys in chunks, all jobs pipelined in order in one
    // round trip (Redis runs them in that order); one integer per key, jobs concatenated.
    std::vector<long long> eval_jobs(const std::vector<script_job>& jobs) {
        constexpr std::size_t chunk = 256;
        struct call_ref {
            const script_job* job;
            std::size_t from;
        };
        std::vector<call_ref> calls;
        std::size_t total = 0;
        for (const auto& j : jobs) {
            for (std::size_t from = 0; from < j.keys->size(); from += chunk) {
                calls.push_back({&j, from});
            }
            total += j.keys->size();
        }
        auto out = pipeline(calls.size(), [&](redisContext* c, std::size_t call) {
            const auto& job = *calls[call].job;
            const auto& keys = *job.keys;
            const auto& per_key = *job.per_key;
            const auto& sha = *job.sha;
            const auto& arg1 = job.arg1;
            const std::size_t from = calls[call].from;
            const std::size_t to = std::min(keys.size(), from + chunk);
            const std::size_t nk = to - from;
            const std::string numkeys = std::to_string(nk);
            std::vector<const char*> argv;
            std::vector<size_t> lens;
            argv.reserve(4 + 2 * nk);
            auto push = [&](const std::string& x) {
                argv.push_back(x.data());
                lens.push_back(x.size());
            };
            static const std::string evalsha = "EVALSHA";
            push(evalsha);
            push(sha);
            push(numkeys);
            for (std::size_t i = from; i < to; ++i) push(keys[i]);
            push(arg1);
            for (std::size_t i = from; i < to; ++i) push(per_key[i]);
            return redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(),
                                          lens.data());
        });
        if (out.size() != total) unavailable("short reply from a dedup script");
        return out;
    }

    std::vector<long long> eval_keys(const std::string& sha, const std::vector<std::string>& keys,
                                     const std::string& arg1,
                                     const std::vector<std::string>& per_key) {
        return eval_jobs({script_job{&sha, &keys, arg1, &per_key}});
    }
};

redis_store::redis_store(redis_options options) : _impl(std::make_unique<impl>()) {
    _impl->o = std::move(options);
    auto parsed = internal::parse_redis_url(_impl->o.url);
    if (!parsed.ok()) {
        throw ferry::error(error_kind::permanent, "dedup.redis_url",
                           _impl->o.url_field + ": " + parsed.problem, _impl->o.url_field);
    }
    _impl->url = std::move(*parsed.target);
    std::random_device rd;
    std::ostringstream t;
    t << std::hex << rd() << rd() << ':';
    _impl->token_prefix = t.str();
}

redis_store::~redis_store() = default;

std::string redis_store::key_of(std::string_view group, std::string_view message_id) const {
    std::string k;
    _impl->key_into(k, group, message_id);
    return k;
}

claim redis_store::try_claim(std::string_view group, std::string_view message_id,
                             std::chrono::milliseconds lease) {
    auto v = try_claim_batch(group, {std::string(message_id)}, lease);
    return std::move(v.front());
}

std::vector<claim> redis_store::try_claim_batch(std::string_view group,
                                                const std::vector<std::string>& message_ids,
                                                std::chrono::milliseconds lease) {
    return complete_and_claim({}, group, message_ids, lease).claims;
}

// One pipelined round trip: `SET key done PX window` per mark, then
// `SET key token NX PX lease` per claim. A claim whose SET finds the key (a duplicate, or a
// message another owner holds) is read back with GET in a second round trip: "done" -> done,
// anything else (a token, or a key that vanished meanwhile) -> in_progress, which the caller
// asks again later. The common case, a new message, costs the server one SET.
redis_store::complete_and_claim_result redis_store::complete_and_claim(
    const std::vector<claim>& done, std::string_view group,
    const std::vector<std::string>& message_ids, std::chrono::milliseconds lease) {
    complete_and_claim_result result;
    auto& out = result.claims;
    out.resize(message_ids.size());
    result.completed.assign(done.size(), complete_status::completed);
    if (message_ids.empty() && done.empty()) return result;
    const auto lease_ms = std::to_string(std::max<long long>(1, lease.count()));
    const auto window = std::to_string(std::max<long long>(1, _impl->o.done_window.count()));
    for (std::size_t i = 0; i < message_ids.size(); ++i) {
        out[i].group = std::string(group);
        out[i].message_id = message_ids[i];
        out[i].token = _impl->new_token();
    }
    static const std::string set = "SET", nx = "NX", px = "PX", done_value = "done";
    std::string key;
    std::vector<std::size_t> taken;  // claims whose key existed
    _impl->pipeline_each(
        done.size() + out.size(),
        [&](redisContext* c, std::size_t i) {
            const bool mark = i < done.size();
            const claim& cl = mark ? done[i] : out[i - done.size()];
            _impl->key_into(key, cl.group, cl.message_id);
            if (mark) {
                const char* argv[5] = {set.data(), key.data(), done_value.data(), px.data(),
                                       window.data()};
                const size_t lens[5] = {set.size(), key.size(), done_value.size(), px.size(),
                                        window.size()};
                return redisAppendCommandArgv(c, 5, argv, lens);
            }
            const char* argv[6] = {set.data(), key.data(), cl.token.data(),
                                   nx.data(),  px.data(),  lease_ms.data()};
            const size_t lens[6] = {set.size(), key.size(), cl.token.size(),
                                    nx.size(),  px.size(),  lease_ms.size()};
            return redisAppendCommandArgv(c, 6, argv, lens);
        },
        [&](std::size_t i, const redisReply& r) {
            if (r.type == REDIS_REPLY_STATUS) return true;  // OK: marked, or claimed
            if (r.type != REDIS_REPLY_NIL || i < done.size()) return false;
            taken.push_back(i - done.size());  // NX found the key
            return true;
        });
    for (auto& c : out) c.status = claim_status::fresh;
    if (taken.empty()) return result;
    static const std::string get = "GET";
    _impl->pipeline_each(
        taken.size(),
        [&](redisContext* c, std::size_t j) {
            _impl->key_into(key, group, message_ids[taken[j]]);
            const char* argv[2] = {get.data(), key.data()};
            const size_t lens[2] = {get.size(), key.size()};
            return redisAppendCommandArgv(c, 2, argv, lens);
        },
        [&](std::size_t j, const redisReply& r) {
            auto& c = out[taken[j]];
            const bool is_done =
                r.type == REDIS_REPLY_STRING && std::string_view(r.str, r.len) == done_value;
            if (r.type != REDIS_REPLY_STRING && r.type != REDIS_REPLY_NIL) return false;
            c.status = is_done ? claim_status::done : claim_status::in_progress;
            c.token.clear();
            return true;
        });
    return result;
}

std::vector<complete_status> redis_store::mark_done(const std::vector<claim>& applied) {
    return complete_and_claim(applied, "", {}, std::chrono::milliseconds(1)).completed;
}

complete_status redis_store::complete(const claim& c) { return complete_batch({c}).front(); }

std::vector<complete_status> redis_store::complete_batch(const std::vector<claim>& claims) {
    std::vector<complete_status> out;
    if (claims.empty()) return out;
    std::vector<std::string> keys(claims.size());
    for (std::size_t i = 0; i < claims.size(); ++i) {
        keys[i] = key_of(claims[i].group, claims[i].message_id);
    }
    const auto window = std::to_string(std::max<long long>(1, _impl->o.done_window.count()));
    std::vector<std::string> tokens(claims.size());
    for (std::size_t i = 0; i < claims.size(); ++i) tokens[i] = claims[i].token;
    const auto replies = _impl->eval_keys(_impl->shas[0], keys, window, tokens);
    out.reserve(claims.size());
    for (auto r : replies)
        out.push_back(r == 1 ? complete_status::completed : complete_status::lease_lost);
    return out;
}

bool redis_store::release(const claim& c) {
    if (c.token.empty()) return false;
    const auto key = key_of(c.group, c.message_id);
    const auto r = _impl->pipeline(1, [&](redisContext* ctx, std::size_t) {
        return redisAppendCommand(ctx, "EVALSHA %s 1 %s %s", _impl->shas[1].c_str(), key.c_str(),
                                  c.token.c_str());
    });
    return r.front() == 1;
}

void redis_store::ping() {
    auto conn = _impl->get();
    reply_ptr r{static_cast<redisReply*>(redisCommand(conn.c, "PING"))};
    if (r.r == nullptr || r.r->type == REDIS_REPLY_ERROR) {
        conn.broken = true;
        unavailable("PING failed");
    }
}

}  // namespace ferry::dedup
