#pragma once
// Redis dedup store: the fast filter and the lease against concurrent processing.
//
// Keys are `<key_prefix>:<group>:<message_id>`. Every claim call is one run (ADR 0024) with
// one token and a lease key `<key_prefix>:run:<token>` ("lease", expiring after the lease); a
// claimed message key holds the run token (`SET key token NX PX done_window+lease`) and says
// what its run's key says: "lease" in progress, "done" done, gone = abandoned (the next claim
// takes it over, compare-and-set). One `SET run-key done` marks a whole run; a message key may
// also hold "done" itself (complete(), per-message marks). complete and release are Lua
// compare-and-set scripts on the message key and the token; claims, run marks and per-message
// marks are plain pipelined SETs (redisAppendCommandArgv + redisGetReply: one round trip), and
// complete_and_claim writes the marks of one run with the claims of the next.
//
// Memory: about 134 B per "done" key (key ~70 B + value + dict entry + expiry entry; 16 B more
// when the key keeps its run token), so the window costs rate x window x 134-150 B: 1k msg/s
// for 1 h is ~0.5 GB; 5k msg/s for 24 h is ~58 GB. Keep the window as short as redelivery can
// be late (Kafka redelivers within minutes; the relay's duplicates come within one batch), and
// rely on the inbox for anything older.
//
// Guarantee: Redis alone gives exactly-once only for idempotent or Redis-held effects. A lease
// that expires mid-effect, or Redis losing data (FLUSHALL, failover, restart without
// persistence), lets a second consumer apply the message again. See docs/guarantees.md.
//
// Lifecycle and threads: the constructor only parses options (no I/O); connections open lazily
// and are pooled, one per concurrent caller; a broken connection is dropped and reopened on the
// next call. Every method may be called from any thread.
//
// Errors: a URL that is not usable throws from the constructor,
// ferry::error(permanent, "dedup.redis_url") naming `url_field` and the cause (the same check
// and wording as configuration validation). An unreachable or lost Redis is
// ferry::error(retryable, "dedup.redis_unavailable"); credentials the server refuses are
// ferry::error(permanent, "dedup.redis_auth"), a db index it refuses "dedup.redis_db" (both
// need an operator, not a retry). No message carries the password.

#include <chrono>
#include <memory>
#include <string>

#include "ferry/dedup/store.hpp"

namespace ferry::dedup {

struct redis_options {
    /// redis://[user[:password]@]host[:port][/db] or unix://[user[:password]@]/path[?db=N].
    /// A user-info without ':' is a password (AUTH password); user:password authenticates an
    /// ACL user (AUTH user password). rediss:// is refused: this hiredis has no TLS.
    std::string url = "redis://127.0.0.1:6379/0";
    /// The configuration key that held `url`, named in errors.
    std::string url_field = "redis.url";
    /// Prefix of every key; lets several deployments share one Redis.
    std::string key_prefix = "ferry:dedup";
    /// How long "done" is remembered. Memory cost: ~134 B x messages in the window.
    std::chrono::milliseconds done_window{std::chrono::hours(1)};
    std::chrono::milliseconds connect_timeout{2000};
    /// Socket read/write timeout of each command.
    std::chrono::milliseconds command_timeout{2000};
};

class redis_store final : public store {
public:
    explicit redis_store(redis_options options);
    ~redis_store() override;
    redis_store(const redis_store&) = delete;
    redis_store& operator=(const redis_store&) = delete;

    [[nodiscard]] claim try_claim(std::string_view group, std::string_view message_id,
                                  std::chrono::milliseconds lease) override;
    [[nodiscard]] std::vector<claim> try_claim_batch(std::string_view group,
                                                     const std::vector<std::string>& message_ids,
                                                     std::chrono::milliseconds lease) override;
    [[nodiscard]] complete_status complete(const claim& c) override;
    /// Completes several claims in one round trip; one status per claim, in order.
    [[nodiscard]] std::vector<complete_status> complete_batch(const std::vector<claim>& claims);

    struct complete_and_claim_result {
        std::vector<complete_status> completed;  // one per `done` claim, in order
        std::vector<claim> claims;               // one per message id, in order
    };
    /// Writes the "done" marks of `done` and claims `message_ids` as one run, pipelined in one
    /// round trip and run by Redis in that order (a claim of a message marked in the same call
    /// sees "done"). A consumer lane marks what it applied and claims its next run together.
    /// The marks are plain `SET key done PX done_window`, not compare-and-set: the caller
    /// applied those effects, so "done" is true whoever holds the key now (a lease that expired
    /// and was claimed again is overwritten, and that owner then sees "done"); every status in
    /// `completed` is therefore `completed`. A claim is `SET key run-token NX PX window+lease`
    /// after the run's lease key; only keys that exist cost a second round trip (one resolve
    /// script call: done, in progress, or an abandoned run's key taken over = fresh).
    /// Throws like try_claim_batch; on a throw no outcome is known (marks and claims may or may
    /// not have been written; unknown claims are taken over once their run's lease expires).
    [[nodiscard]] complete_and_claim_result complete_and_claim(
        const std::vector<claim>& done, std::string_view group,
        const std::vector<std::string>& message_ids, std::chrono::milliseconds lease);
    /// complete_and_claim with run marks (ADR 0024). Every claim of one call shares one run
    /// token (claim::token) and one lease key `<key_prefix>:run:<token>`; each message key
    /// names its run. `done_runs` are tokens of runs whose every fresh claim was either applied
    /// or given back (release() returned, whatever it returned): one `SET run-key done` marks
    /// all of the run's messages done at once. A run with a claim that was neither (abandoned,
    /// a release that threw) must never be marked: its applied messages take per-message marks
    /// in `done`. Run tokens must come from this store's claims. A message key whose run's
    /// lease key is gone (the owner died or overran `lease`) is taken over by the next claim.
    [[nodiscard]] complete_and_claim_result complete_and_claim(
        const std::vector<claim>& done, const std::vector<std::string>& done_runs,
        std::string_view group, const std::vector<std::string>& message_ids,
        std::chrono::milliseconds lease);
    /// The marks of complete_and_claim alone: one pipelined round trip of plain SETs.
    std::vector<complete_status> mark_done(const std::vector<claim>& applied);
    bool release(const claim& c) override;
    [[nodiscard]] bool lease_expires() const noexcept override { return true; }

    /// The Redis key of a message (for tests and operators).
    [[nodiscard]] std::string key_of(std::string_view group, std::string_view message_id) const;
    /// PING; throws ferry::error(retryable) when Redis is unreachable (permanent when it refuses
    /// the credentials or the db).
    void ping();

private:
    struct impl;
    std::unique_ptr<impl> _impl;
};

}  // namespace ferry::dedup
