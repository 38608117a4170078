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
// resolve: the claims whose `SET key token NX` found the key (a duplicate, a message another
// run holds, or one whose run was abandoned). KEYS = message keys; ARGV[1] = run key prefix,
// ARGV[2] = the claiming run's token, ARGV[3] = message key TTL (ms). Per key: 2 = done,
// 0 = in progress (its run's lease key exists; or it is the claiming run's own: the same id
// twice in one call; or the value is not a run token ("r:..."): a lease written by a consumer
// of an earlier version, which expires by itself), 1 = fresh: the key vanished meanwhile, or it
// names a run whose lease key is gone (its owner died or overran its lease) and is taken over
// for the claiming run, compare-and-set inside the script. Run keys are built from ARGV[1]
// (standalone Redis, or a hash tag in the key prefix, as for the other multi-key scripts).
constexpr const char* resolve_lua =
    "local out = {} "
    "for i, k in ipairs(KEYS) do "
    "  local v = redis.call('GET', k) "
    "  if not v then redis.call('SET', k, ARGV[2], 'PX', ARGV[3]) out[i] = 1 "
    "  elseif v == 'done' then out[i] = 2 "
    "  elseif v == ARGV[2] or string.sub(v, 1, 2) ~= 'r:' then out[i] = 0 "
    "  else "
    "    local r = redis.call('GET', ARGV[1] .. v) "
    "    if r == 'done' then out[i] = 2 "
    "    elseif r then out[i] = 0 "
    "    else redis.call('SET', k, ARGV[2], 'PX', ARGV[3]) out[i] = 1 end "
    "  end "
    "end "
    "return out";
constexpr int script_count = 3;

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
    std::atomic<long long> max_lease{1};  // the longest lease claimed with (run "done" TTL)
    std::string shas[script_count];       // complete, release, resolve (set once, read after)

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
        const char* scripts[script_count] = {complete_lua, release_lua, resolve_lua};
        for (int i = 0; i < script_count; ++i) {
            if (!shas[i].empty()) {
                check(static_cast<redisReply*>(redisCommand(c, "SCRIPT LOAD %s", scripts[i])),
                      "SCRIPT LOAD");
                continue;
            }
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

    // `<key_prefix>:run:<token>`: the lease key ("lease") and then the outcome ("done") of one
    // run of claims. Tokens are this store's random prefix and a counter (never a UUID), so a
    // run key cannot be a message key.
    void run_key_into(std::string& k, std::string_view token) const {
        k.clear();
        k.append(o.key_prefix).append(":run:").append(token);
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

    // The resolve script over `keys` (one call per chunk of 256, pipelined): 0 in progress,
    // 1 fresh, 2 done, one per key.
    std::vector<long long> eval_resolve(const std::vector<std::string>& keys,
                                        const std::string& run_prefix, const std::string& token,
                                        const std::string& key_ttl) {
        constexpr std::size_t chunk = 256;
        const std::size_t calls = (keys.size() + chunk - 1) / chunk;
        static const std::string evalsha = "EVALSHA";
        auto out = pipeline(calls, [&](redisContext* c, std::size_t call) {
            const std::size_t from = call * chunk;
            const std::size_t to = std::min(keys.size(), from + chunk);
            const std::string numkeys = std::to_string(to - from);
            std::vector<const char*> argv;
            std::vector<size_t> lens;
            auto push = [&](const std::string& x) {
                argv.push_back(x.data());
                lens.push_back(x.size());
            };
            push(evalsha);
            push(shas[2]);
            push(numkeys);
            for (std::size_t i = from; i < to; ++i) push(keys[i]);
            push(run_prefix);
            push(token);
            push(key_ttl);
            return redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(),
                                          lens.data());
        });
        if (out.size() != keys.size()) unavailable("short reply from the resolve script");
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
    t << "r:" << std::hex << rd() << rd() << ':';  // "r:": a run token (resolve_lua)
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

redis_store::complete_and_claim_result redis_store::complete_and_claim(
    const std::vector<claim>& done, std::string_view group,
    const std::vector<std::string>& message_ids, std::chrono::milliseconds lease) {
    return complete_and_claim(done, {}, group, message_ids, lease);
}

// One pipelined round trip, run by Redis in this order: `SET key done PX window` per message
// mark, `SET <prefix>:run:<token> done PX window+lease` per run mark, then (when there is
// something to claim) the new run's lease key `SET <prefix>:run:<token> lease PX lease` and
// `SET key token NX PX window+lease` per message. A message key thus names its run; the run
// key says what the run's claims are (lease: in progress; done: done; gone: abandoned). The
// lease key goes first, so no reader sees a message key whose run key was not written yet.
// Message keys outlive their lease by the done window because a run mark is one write for the
// whole run; a run's "done" key outlives every message key naming it (written later, with the
// longest lease this store claimed with). A claim whose SET found the key (a duplicate, a
// message another run holds, an abandoned run) is resolved by one script call in a second
// round trip. The common case, a new message, costs the server one SET.
redis_store::complete_and_claim_result redis_store::complete_and_claim(
    const std::vector<claim>& done, const std::vector<std::string>& done_runs,
    std::string_view group, const std::vector<std::string>& message_ids,
    std::chrono::milliseconds lease) {
    complete_and_claim_result result;
    auto& out = result.claims;
    out.resize(message_ids.size());
    result.completed.assign(done.size(), complete_status::completed);
    if (message_ids.empty() && done.empty() && done_runs.empty()) return result;
    const long long lease_count = std::max<long long>(1, lease.count());
    if (!message_ids.empty()) {
        long long seen = _impl->max_lease.load();
        while (seen < lease_count && !_impl->max_lease.compare_exchange_weak(seen, lease_count)) {
        }
    }
    const long long window_count = std::max<long long>(1, _impl->o.done_window.count());
    const auto lease_ms = std::to_string(lease_count);
    const auto window = std::to_string(window_count);
    const auto key_ttl = std::to_string(window_count + lease_count);
    const auto run_done_ttl = std::to_string(window_count + _impl->max_lease.load());
    const std::string token = message_ids.empty() ? std::string() : _impl->new_token();
    for (std::size_t i = 0; i < message_ids.size(); ++i) {
        out[i].group = std::string(group);
        out[i].message_id = message_ids[i];
        out[i].token = token;
    }
    static const std::string set = "SET", nx = "NX", px = "PX", done_value = "done",
                             lease_value = "lease";
    const std::size_t n_marks = done.size() + done_runs.size();
    const std::size_t n_lease = message_ids.empty() ? 0 : 1;
    std::string key;
    std::vector<std::size_t> taken;  // claims whose key existed
    _impl->pipeline_each(
        n_marks + n_lease + out.size(),
        [&](redisContext* c, std::size_t i) {
            if (i < done.size()) {
                _impl->key_into(key, done[i].group, done[i].message_id);
                const char* argv[5] = {set.data(), key.data(), done_value.data(), px.data(),
                                       window.data()};
                const size_t lens[5] = {set.size(), key.size(), done_value.size(), px.size(),
                                        window.size()};
                return redisAppendCommandArgv(c, 5, argv, lens);
            }
            if (i < n_marks + n_lease) {
                const bool mark = i < n_marks;
                _impl->run_key_into(key, mark ? done_runs[i - done.size()] : token);
                const std::string& value = mark ? done_value : lease_value;
                const std::string& ttl = mark ? run_done_ttl : lease_ms;
                const char* argv[5] = {set.data(), key.data(), value.data(), px.data(), ttl.data()};
                const size_t lens[5] = {set.size(), key.size(), value.size(), px.size(),
                                        ttl.size()};
                return redisAppendCommandArgv(c, 5, argv, lens);
            }
            const claim& cl = out[i - n_marks - n_lease];
            _impl->key_into(key, cl.group, cl.message_id);
            const char* argv[6] = {set.data(), key.data(), token.data(),
                                   nx.data(),  px.data(),  key_ttl.data()};
            const size_t lens[6] = {set.size(), key.size(), token.size(),
                                    nx.size(),  px.size(),  key_ttl.size()};
            return redisAppendCommandArgv(c, 6, argv, lens);
        },
        [&](std::size_t i, const redisReply& r) {
            if (r.type == REDIS_REPLY_STATUS) return true;  // OK: marked, leased, or claimed
            if (r.type != REDIS_REPLY_NIL || i < n_marks + n_lease) return false;
            taken.push_back(i - n_marks - n_lease);  // NX found the key
            return true;
        });
    for (auto& c : out) c.status = claim_status::fresh;
    if (taken.empty()) return result;
    std::vector<std::string> keys(taken.size());
    for (std::size_t j = 0; j < taken.size(); ++j) {
        _impl->key_into(keys[j], group, message_ids[taken[j]]);
    }
    std::string run_prefix;
    _impl->run_key_into(run_prefix, "");
    const auto states = _impl->eval_resolve(keys, run_prefix, token, key_ttl);
    for (std::size_t j = 0; j < taken.size(); ++j) {
        auto& c = out[taken[j]];
        if (states[j] == 1) continue;  // fresh: taken over for this run
        c.status = states[j] == 2 ? claim_status::done : claim_status::in_progress;
        c.token.clear();
    }
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
