#pragma once
// ferry::consumer::consumer: the consumer runtime. Wraps librdkafka's high-level consumer (one
// group, a handler per topic) and applies each message exactly once in effect, per key in order.
//
// Flow of one message (docs/adr/0003-consumer-dedup-and-retry.md):
//   poll a batch -> check the envelope (ferry-message-id) -> keyed lane (hash of topic+key: one
//   key, one lane, in order) -> Redis claims for the lane's next run (up to 512 messages, one
//   pipelined round trip that also writes the "done" marks of the run before) -> [key held by
//   an earlier retry? park it behind] -> handler, with the inbox row in the same transaction
//   when the inbox is on -> Redis "done" -> the offset becomes complete -> the per-partition
//   commit position (lowest incomplete offset) is committed.
// Failures: immediate tries in the lane, then the retry table (durable, so the offset may move
// on; later messages of the key wait behind it), then a dead letter. A malformed envelope or a
// `permanent` error goes straight to dead letters with its reason.
// Offsets: auto-commit is off; a commit never passes an offset whose effect (or retry/dead
// letter record) is not durable. Rebalance (eager or cooperative): queued work of revoked
// partitions is abandoned, running work gets `revoke_timeout` to finish, then completed
// offsets are committed synchronously before the partitions are given up.
//
// Lifecycle: construct with options, subscribe() every topic, start(), later stop() (or the
// destructor). start() spawns the poll thread, `lanes` worker threads and the retry worker.
// stop() is graceful: no new polls, lanes drain for up to shutdown_timeout, offsets are
// committed synchronously, the group is left. Not restartable.
// Threads: subscribe/start/stop from one thread; metrics(), render_prometheus(), options() and
// running() from any.
// Handlers run on lane threads and on the retry-worker thread (for messages in retry): a handler
// must be safe to call concurrently for different keys; calls for one key never overlap.
// Errors: start() throws ferry::error for bad options or unreachable servers at start-up;
// after that, failures are logged, counted and retried, never thrown.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/common/error.hpp"
#include "ferry/retry/policy.hpp"

namespace ferry::consumer {

struct header {
    std::string name;
    std::optional<std::string> value;  // nullopt for a null value
};

/// What a handler sees. `attempt` is 1 on first delivery and counts every handler call.
struct message {
    std::string message_id;          // ferry-message-id (UUIDv7 text, lower case)
    std::optional<std::string> key;  // nullopt for a null key
    std::vector<header> headers;     // all record headers, ferry-* included
    std::string payload;
    std::string topic;
    std::int32_t partition = -1;
    std::int64_t offset = -1;
    int attempt = 1;

    /// The last header named `name`, or nullopt.
    [[nodiscard]] std::optional<std::string> header_value(std::string_view name) const;
};

/// A handler returns on success, or throws ferry::error: retryable / retry_transaction /
/// in_doubt are retried, permanent goes to dead letters. Any other exception counts as
/// retryable.
using handler = std::function<void(const message&)>;
/// A handler whose effect is in PostgreSQL: it writes through `tx` and must not commit it; the
/// runtime inserts the inbox row (when the inbox is on) and commits both together.
using tx_handler = std::function<void(const message&, pqxx::work& tx)>;

enum class dedup_mode {
    none,             // at-least-once effects
    redis,            // Redis filter + lease only: exactly-once only for idempotent/Redis effects
    inbox,            // PostgreSQL inbox in the effect's transaction: exactly-once (tx_handler)
    redis_and_inbox,  // Redis fast filter in front of the authoritative inbox
};

[[nodiscard]] std::string_view to_string(dedup_mode m) noexcept;

struct topic_options {
    /// Ordered retry: while a key has a message in retry (or a blocking dead letter), later
    /// messages of that key wait behind it. Off: later messages overtake failed ones.
    bool ordered_retry = true;
};

struct consumer_options {
    std::string brokers = "127.0.0.1:9092";
    std::string group;
    /// Owner name in retry claims and logs; empty means "<hostname>-<pid>-<random>".
    std::string instance_id;
    /// librdkafka properties passed through (override the runtime's defaults, except that
    /// enable.auto.commit and enable.auto.offset.store always stay false).
    std::map<std::string, std::string> kafka_properties;
    /// Where new groups start: earliest | latest.
    std::string auto_offset_reset = "earliest";
    std::chrono::milliseconds session_timeout{10000};

    /// The consumer database (inbox, retry, dead_letter; `ferryctl migrate`). Required.
    std::string dsn;
    std::string schema = "ferry";
    std::chrono::milliseconds connect_timeout{5000};

    dedup_mode dedup = dedup_mode::inbox;
    /// redis://[:password@]host:port[/db]; used by the redis modes.
    std::string redis_url = "redis://127.0.0.1:6379/0";
    std::string redis_key_prefix = "ferry:dedup";
    /// How long Redis remembers "done" (~134 B per message in the window).
    std::chrono::milliseconds done_window{std::chrono::hours(1)};
    /// Redis lease while a message is processed; queue time in the lane counts too.
    std::chrono::milliseconds lease{30000};
    /// How long an inbox insert waits for a concurrent owner of the same message.
    std::chrono::milliseconds inbox_lock_wait{5000};

    /// Worker lanes (parallel across keys, ordered within a key).
    std::size_t lanes = 4;
    /// Messages polled (and claimed in Redis) together.
    std::size_t max_batch = 500;
    /// At this many queued messages polling stops taking records until the lanes make room;
    /// when the queue stays full for 500 ms (a stalled handler) the partitions are paused so
    /// rebalances are served again (resumed below half).
    std::size_t max_queued = 10000;
    /// Above this many queued bytes (payload + key + headers of records polled and not yet
    /// started by a lane) polling stops taking records, and after 500 ms without room every
    /// assigned partition is paused, also partitions assigned while paused; polling stops
    /// taking records once the budget is used, so the queue overshoots it
    /// by at most one record. librdkafka's own prefetch is capped too (queued.max.messages.kbytes
    /// and fetch.max.bytes default to a quarter of this, at least 1 MiB, unless set in
    /// kafka_properties). Resident memory of the runtime's queues is bounded by about
    /// max_queued_bytes * 1.5 plus one record (docs/operations.md, consumer memory).
    std::size_t max_queued_bytes = 64u << 20;
    /// Hostile-input limits on received records: more headers than max_headers, or one header
    /// (name + value) longer than max_header_bytes, sends the record to dead letters (not
    /// replayable) with a reason naming the limit. Never silently dropped.
    std::size_t max_headers = 64;
    std::size_t max_header_bytes = 16384;
    /// Batched effects (topics with a tx_handler, every dedup mode): a lane applies up to
    /// tx_batch_max consecutive messages of its queue in one PostgreSQL transaction (handler per
    /// message, the inbox rows inserted set-based in the same transaction, one commit). The
    /// batch commits early once its handlers have run for tx_batch_max_time. Any failure rolls
    /// the batch back and its messages run one transaction each (so a poison message is
    /// isolated and routed alone). A message that cannot join (key held by a retry, Redis claim
    /// not fresh, plain handler) ends the batch first, so per-key order holds. 1 turns it off.
    std::size_t tx_batch_max = 100;
    std::chrono::milliseconds tx_batch_max_time{100};
    std::chrono::milliseconds poll_timeout{100};
    std::chrono::milliseconds commit_interval{200};
    /// Rebalance: how long running work of revoked partitions may take to finish.
    std::chrono::milliseconds revoke_timeout{10000};
    /// stop(): how long lanes may take to drain.
    std::chrono::milliseconds shutdown_timeout{10000};

    retry::retry_policy retry;
    /// Retry workers: threads draining the retry table, idle poll interval, rows per claim
    /// (also the most rows of one key a worker drains in a row once its head succeeded),
    /// claim lifetime.
    std::size_t retry_workers = 4;
    std::chrono::milliseconds retry_poll{200};
    int retry_batch = 50;
    std::chrono::milliseconds retry_claim_ttl{60000};

    /// Inbox retention (inbox modes): rows older than inbox_retention are deleted every
    /// inbox_prune_interval, inbox_prune_batch rows per statement, repeated while batches come
    /// back full (so pruning keeps up with the consume rate). Retention must exceed the longest
    /// possible redelivery: Kafka retention plus any replay window; a duplicate older than it is
    /// applied again. Zero interval turns the job off (prune by other means then).
    std::chrono::milliseconds inbox_retention{std::chrono::hours(24 * 7)};
    std::chrono::milliseconds inbox_prune_interval{std::chrono::minutes(1)};
    long long inbox_prune_batch = 10000;

    /// When set, every dead letter is also produced to this Kafka topic (best effort; the table
    /// stays the record), with header ferry-dlq-reason.
    std::string dead_letter_topic;
};

/// Lag of one assigned partition: high watermark minus commit position.
struct partition_lag {
    std::string topic;
    std::int32_t partition = -1;
    std::int64_t lag = 0;
};

/// Counters since start (monotonic) and gauges (now).
struct metrics_snapshot {
    std::uint64_t consumed = 0;             // records polled
    std::uint64_t processed = 0;            // effects applied (handler succeeded and committed)
    std::uint64_t duplicates_absorbed = 0;  // by Redis or the inbox
    std::uint64_t retries = 0;              // failed attempts that will be tried again
    std::uint64_t retry_scheduled = 0;      // messages written to the retry table
    std::uint64_t retry_chained = 0;      // retry rows drained right after their key's previous row
    std::uint64_t parked_behind_key = 0;  // messages that waited behind their key
    std::uint64_t dead_letters = 0;
    std::uint64_t malformed = 0;     // envelopes without a valid ferry-message-id
    std::uint64_t redis_errors = 0;  // Redis calls that failed (then backed off/bypassed)
    std::uint64_t commits = 0;       // offset commits sent
    std::uint64_t rebalances = 0;
    std::int64_t lag = 0;                       // sum over assigned partitions: high watermark -
                                                // commit position
    std::vector<partition_lag> partition_lags;  // per assigned partition (refreshed every 1 s)
    std::vector<std::size_t> lane_queue_depth;
    std::size_t assigned_partitions = 0;
    std::size_t queued_bytes = 0;        // bytes of records polled and not yet started by a lane
    std::size_t queued_bytes_peak = 0;   // highest queued_bytes since start
    std::uint64_t fenced_writes = 0;     // retry/dead-letter writes refused: partition moved on
    std::uint64_t header_limit = 0;      // records dead-lettered for too many / too large headers
    std::uint64_t abandoned = 0;         // failed attempts not routed: partition moved / stopping
    std::uint64_t batches = 0;           // batched effect transactions committed
    std::uint64_t batched_messages = 0;  // messages in them (applied or absorbed)
    std::uint64_t batch_fallbacks = 0;   // batches rolled back and run one message at a time
    std::size_t last_batch_size = 0;
    std::uint64_t inbox_pruned = 0;  // inbox rows deleted by the retention job
    std::uint64_t pauses = 0;        // times every partition was paused (memory / queue bound)
};

class consumer {
public:
    explicit consumer(consumer_options options);
    ~consumer();
    consumer(const consumer&) = delete;
    consumer& operator=(const consumer&) = delete;

    void subscribe(std::string topic, handler h, topic_options options = {});
    void subscribe(std::string topic, tx_handler h, topic_options options = {});

    /// Validates options, connects (PostgreSQL, Redis when used), joins the group.
    void start();
    /// Graceful stop; idempotent.
    void stop();

    [[nodiscard]] metrics_snapshot metrics() const;
    /// Prometheus text exposition of metrics(), labelled with the group.
    [[nodiscard]] std::string render_prometheus() const;
    [[nodiscard]] const std::string& instance_id() const;
    /// The options as validated by start() (instance_id filled in). For readiness checks and
    /// metrics labels (ferry/consumer/http.hpp).
    [[nodiscard]] const consumer_options& options() const;
    /// True between a successful start() and stop(): the poll thread runs.
    [[nodiscard]] bool running() const;

private:
    struct impl;
    std::unique_ptr<impl> _impl;
};

}  // namespace ferry::consumer
