#pragma once
// Redis dedup store: the fast filter and the lease against concurrent processing.
//
// Keys are `<key_prefix>:<group>:<message_id>`. A key holds the owner token while a consumer
// processes the message (expiring after the lease) and the string "done" for `done_window`
// afterwards. A claim is one `SET key token NX PX lease` (atomic on the server; a key that
// exists is read back to tell "done" from "in progress"); complete and release are Lua
// compare-and-set scripts on the owner token; mark_done and complete_and_claim write "done"
// with a plain SET. try_claim_batch pipelines the claims of a polled batch
// (redisAppendCommandArgv + redisGetReply: one round trip), and complete_and_claim the "done"
// marks of one run with the claims of the next.
//
// Memory: about 134 B per "done" key (key ~70 B + value + dict entry + expiry entry), so the
// window costs rate x window x 134 B: 1k msg/s for 1 h is ~0.5 GB; 5k msg/s for 24 h is ~58 GB.
// Keep the window as short as redelivery can be late (Kafka redelivers within minutes; the
// relay's duplicates come within one batch), and rely on the inbox for anything older.
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
    /// Writes the "done" marks of `done` and claims `message_ids`, pipelined in one round trip
    /// and run by Redis in that order (a claim of a message marked in the same call sees
    /// "done"). A consumer lane marks the run it applied and claims the next one together.
    /// The marks are plain `SET key done PX done_window`, not compare-and-set: the caller
    /// applied those effects, so "done" is true whoever holds the key now (a lease that expired
    /// and was claimed again is overwritten, and that owner then sees "done"); every status in
    /// `completed` is therefore `completed`. A claim is `SET key token NX PX lease`; only keys
    /// that exist cost a second round trip (GET: "done" -> done, else in_progress).
    /// Throws like try_claim_batch; on a throw no outcome is known (marks and claims may or may
    /// not have been written; unknown claims expire after `lease`).
    [[nodiscard]] complete_and_claim_result complete_and_claim(
        const std::vector<claim>& done, std::string_view group,
        const std::vector<std::string>& message_ids, std::chrono::milliseconds lease);
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
