#pragma once
// Ferry's configuration: YAML (yaml-cpp) -> plain option structs. Only this module reads YAML;
// other modules take the structs.
//
// Loading never stops at the first problem: unknown keys, wrong types, out-of-range values,
// unset ${VAR} references and invalid identifiers are all collected, each with line:column.
// Order of precedence: defaults < YAML file < environment overrides (FERRY_POSTGRES_DSN,
// FERRY_KAFKA_BROKERS, FERRY_REDIS_URL, FERRY_HTTP_LISTEN).
//
// Thread-safety: free functions, no shared state; `env_lookup` must be safe to call.

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/outbox/options.hpp"

namespace ferry::config {

struct postgres_config {
    /// libpq connection string (key=value or URI). Secrets may come from ${ENV}.
    std::string dsn = "postgresql://127.0.0.1:5432/postgres";
    /// Schema holding Ferry's tables; also copied into outbox.schema.
    std::string schema = "ferry";
    /// Apply pending migrations when a process starts.
    bool migrate_on_start = false;
    std::chrono::milliseconds connect_timeout{5000};
};

struct kafka_config {
    std::string brokers = "127.0.0.1:9092";
    /// none | gzip | snappy | lz4 | zstd
    std::string compression = "lz4";
    /// Prepended to every topic name after topic_map is applied.
    std::string topic_prefix;
    /// Outbox topic -> Kafka topic renames.
    std::map<std::string, std::string> topic_map;
    /// librdkafka properties passed through verbatim (sasl.*, ssl.*, linger.ms, ...).
    std::map<std::string, std::string> properties;
};

struct redis_config {
    std::string url = "redis://127.0.0.1:6379/0";
    std::chrono::milliseconds connect_timeout{2000};
};

struct http_config {
    /// host:port for /metrics, /healthz, /readyz. Port 0 picks a free port (logged).
    std::string listen = "127.0.0.1:9464";
    /// Name of the environment variable holding the bearer token for /reports (and /metrics
    /// with token_for_metrics). Empty: no token. The token itself never goes in YAML.
    std::string token_env;
    bool token_for_metrics = false;
    /// Longest request body (413) and request target (414) the endpoints accept.
    std::size_t max_body_bytes = 16 * 1024;
    std::size_t max_uri_bytes = 4096;
    /// The largest `limit` a /reports request may ask for (and the default).
    std::size_t reports_max_limit = 1000;
    /// PostgreSQL connections /reports reuses, and how long a request waits for one (then 503).
    std::size_t report_connections = 2;
    std::chrono::milliseconds report_pool_wait{2000};
};

struct log_config {
    /// trace | debug | info | warn | error
    std::string level = "info";
    /// text | json
    std::string format = "text";
};

/// The relay daemon (ferry-relay); see relay/README.md.
struct relay_config {
    /// Name of this instance in relay_lease.owner; empty means "<hostname>-<pid>-<random>".
    std::string instance_id;
    /// Where messages come from: polling (the outbox table) or wal (logical decoding messages
    /// emitted by enqueue_wal / emit_wal; lease_groups must be 1). ADR 0070.
    std::string source = "polling";
    /// wal: the pgoutput replication slot (created with `ferryctl wal setup`; never created or
    /// recreated by the relay).
    std::string wal_slot = "ferry_relay";
    /// wal: the publication named in START_REPLICATION.
    std::string wal_publication = "ferry";
    /// Lease groups the 256 outbox shards are split into (group g owns shards s % n == g).
    /// Every instance sharing a schema must use the same value.
    std::size_t lease_groups = 1;
    /// A lease lasts this long unless renewed (renewed every lease_ttl / 3).
    std::chrono::milliseconds lease_ttl{10000};
    /// Outbox rows claimed, produced and marked together.
    std::size_t batch_size = 500;
    /// Idle polling backs off from poll_min to poll_max; a full batch polls again at once.
    std::chrono::milliseconds poll_min{1};
    std::chrono::milliseconds poll_max{100};
    /// How long Kafka may take to acknowledge a message (librdkafka message.timeout.ms).
    std::chrono::milliseconds delivery_timeout{30000};
    /// SIGTERM: time allowed to finish the in-flight batch and release leases.
    std::chrono::milliseconds shutdown_timeout{10000};
    /// Rows of the published ledger older than this are deleted (in bounded batches).
    std::chrono::milliseconds published_retention{7 * 24 * 3600 * 1000LL};
    /// The ledger keeps each published payload for reconciliation's re-drive (ADR 0011).
    bool ledger_payloads = true;
    /// Marks that may run at once (ADR 0002, fourteenth amendment).
    std::size_t mark_lanes = 1;
};

/// How one producer group's half messages are checked back (checkback.groups.<name>).
struct checkback_group_config {
    /// callback | http | sql
    std::string resolver = "callback";
    /// Per check, for every resolver kind.
    std::chrono::milliseconds timeout{5000};
    /// callback: an instance is live if it heartbeated this recently.
    std::chrono::milliseconds liveness{5000};
    /// http: the endpoint, extra headers (values are secrets: never logged), TLS files.
    std::string url;
    std::map<std::string, std::string> headers;
    std::string ca_file;
    std::string client_cert;
    std::string client_key;
    bool verify_tls = true;
    /// sql: the producer's database and a query taking tx_ref as $1.
    std::string dsn;
    std::string query;
};

/// Half-message check-back (ADR 0004): the schedule given to new half messages, and the
/// scheduler ferry-relay runs.
struct checkback_config {
    /// Run the check-back scheduler inside ferry-relay.
    bool enabled = true;
    /// Schedule for half messages that do not set their own (copied into outbox options).
    std::chrono::milliseconds first_after{6000};
    std::chrono::milliseconds interval{30000};
    std::size_t max_checks = 15;
    /// Scheduler: how often due checks are looked for, and how many per round.
    std::chrono::milliseconds tick{500};
    std::size_t batch_size = 64;
    std::map<std::string, checkback_group_config> groups;
};

/// One consumer group the reconciliation job checks (reconcile.groups.<group>).
struct reconcile_group_config {
    /// Outbox topics the group subscribes to; empty means every topic.
    std::vector<std::string> topics;
    /// The group's database (inbox, retry, dead_letter); empty = postgres.dsn / postgres.schema.
    std::string dsn;
    std::string schema;
    /// How the group dedups: inbox | redis | redis_and_inbox (as the consumer's dedup mode).
    /// `redis` means Redis-only: "processed" is a Redis "done" key.
    std::string dedup = "inbox";
    /// Redis of a redis / redis_and_inbox group; empty = redis.url.
    std::string redis_url;
    std::string redis_key_prefix = "ferry:dedup";
};

/// The reconciliation job (ADR 0005): ferry-relay runs it every `interval` when enabled;
/// `ferryctl reconcile run` runs it on demand.
struct reconcile_config {
    bool enabled = false;
    std::chrono::milliseconds interval{15 * 60 * 1000};
    /// Ledger window checked per run: [now - grace - window, now - grace).
    std::chrono::milliseconds window{3600 * 1000};
    std::chrono::milliseconds grace{5 * 60 * 1000};
    std::chrono::milliseconds stuck_unpublished{5 * 60 * 1000};
    bool redrive = true;
    std::size_t redrive_cap = 10000;
    std::size_t chunk_size = 10000;
    std::chrono::milliseconds retention{30LL * 24 * 3600 * 1000};
    std::map<std::string, reconcile_group_config> groups;
};

/// Retention of the tables that keep rows after a message's life ended (docs/operations.md,
/// "Retention"). ferry-relay runs the job every `interval`; `ferryctl retention run` runs it on
/// demand. Reconciliation runs and reports use reconcile.retention; parked rows are never
/// pruned (an unresolved parked message holds its key; discard and retry delete the row).
struct retention_config {
    /// How often ferry-relay runs the job; 0 turns it off there (run `ferryctl retention run`).
    std::chrono::milliseconds interval{60 * 1000};
    /// Rows deleted per statement (each its own transaction), repeated while batches are full.
    std::size_t batch = 5000;
    /// Committed or rolled-back half messages, by decided_at.
    std::chrono::milliseconds half_message{7LL * 24 * 3600 * 1000};
    /// Expired (TTL) messages, by expired_at.
    std::chrono::milliseconds expired{30LL * 24 * 3600 * 1000};
    /// Dead letters already replayed, by replayed_at (purged ones are deleted by the purge).
    std::chrono::milliseconds dead_letter{30LL * 24 * 3600 * 1000};
    /// Check-back mailbox requests (answered or past their deadline), by created_at.
    std::chrono::milliseconds check_request{3600 * 1000};
};

/// Retry policy and retry workers of one consumer group (consumers[i].retry). Maps onto
/// ferry::retry::retry_policy and consumer_options.retry_* (ferry::consumer::to_options).
struct consumer_retry_config {
    /// Handler calls in the lane before a message goes to the retry table.
    std::size_t immediate_tries = 3;
    std::chrono::milliseconds immediate_delay{20};
    /// First retry-table delay ceiling (doubles per attempt, full jitter), capped at max_delay.
    std::chrono::milliseconds base_delay{1000};
    std::chrono::milliseconds max_delay{5 * 60 * 1000};
    /// Total attempts (immediate + table) before a dead letter; at least immediate_tries.
    std::size_t max_attempts = 10;
    /// Threads draining the retry table, their idle poll, rows per claim, claim lifetime.
    std::size_t workers = 4;
    std::chrono::milliseconds poll{200};
    std::size_t batch = 50;
    std::chrono::milliseconds claim_ttl{60000};
};

/// Inbox retention of one consumer group (consumers[i].inbox).
struct consumer_inbox_config {
    /// Inbox rows older than this are deleted. Must exceed the longest possible redelivery
    /// (Kafka retention plus any replay window): an older duplicate is applied again.
    std::chrono::milliseconds retention{7LL * 24 * 3600 * 1000};
    /// How often the retention job runs; 0 turns it off (prune with `ferryctl inbox prune`).
    std::chrono::milliseconds prune_interval{60000};
    /// Rows deleted per statement (repeated while batches come back full).
    std::size_t prune_batch = 10000;
    /// How long an inbox insert waits for a concurrent owner of the same message.
    std::chrono::milliseconds lock_wait{5000};
};

/// One consumer group run by a consumer process (an entry of `consumers:`). Every field maps
/// onto ferry::consumer::consumer_options (ferry::consumer::to_options); empty dsn, schema and
/// redis_url mean postgres.dsn, postgres.schema and redis.url, and the brokers are kafka.brokers.
struct consumer_config {
    /// Kafka consumer group id. Required, unique within the file.
    std::string group;
    /// Outbox topics to consume (kafka.topic_prefix and kafka.topic_map apply, as for the
    /// relay: see kafka_topic()). Required, at least one.
    std::vector<std::string> topics;
    /// Later messages of a key wait behind one in retry (per-key order); false lets them pass.
    bool ordered_retry = true;
    /// Owner name in retry claims and logs; empty means "<hostname>-<pid>-<random>".
    std::string instance_id;
    /// The group's database (inbox, retry, dead_letter) and schema; empty = postgres.*.
    std::string dsn;
    std::string schema;
    /// none | redis | inbox | redis_and_inbox
    std::string dedup = "inbox";
    /// Worker lanes (parallel across keys, ordered within a key).
    std::size_t lanes = 4;
    /// Redis of the redis modes; empty = redis.url.
    std::string redis_url;
    std::string redis_key_prefix = "ferry:dedup";
    std::chrono::milliseconds done_window{3600 * 1000};
    std::chrono::milliseconds lease{30000};
    /// Batched effects: messages per PostgreSQL transaction (1 = off) and the time bound.
    std::size_t batch_max = 100;
    std::chrono::milliseconds batch_max_time{100};
    /// Records polled (and claimed in Redis) together, and the poll wait.
    std::size_t poll_batch = 500;
    std::chrono::milliseconds poll_timeout{100};
    std::chrono::milliseconds commit_interval{200};
    /// Back-pressure: queued messages and bytes above which partitions are paused.
    std::size_t max_queued = 10000;
    std::size_t max_queued_bytes = 64u << 20;
    /// Hostile-input limits on received records (beyond them: dead letter, not replayable).
    std::size_t max_headers = 64;
    std::size_t max_header_bytes = 16384;
    /// earliest | latest: where a new group starts.
    std::string auto_offset_reset = "earliest";
    std::chrono::milliseconds session_timeout{10000};
    std::chrono::milliseconds revoke_timeout{10000};
    std::chrono::milliseconds shutdown_timeout{10000};
    /// librdkafka consumer properties passed through (secret-looking values are redacted).
    std::map<std::string, std::string> kafka_properties;
    /// When set, every dead letter is also produced to this Kafka topic.
    std::string dead_letter_topic;
    consumer_retry_config retry;
    consumer_inbox_config inbox;
};

struct ferry_config {
    postgres_config postgres;
    ferry::outbox::writer_options outbox;
    kafka_config kafka;
    redis_config redis;
    http_config http;
    log_config log;
    relay_config relay;
    checkback_config checkback;
    reconcile_config reconcile;
    retention_config retention;
    /// Consumer groups of a consumer process (inventory-service, your service); ferry-relay
    /// ignores them. Empty unless the file has a `consumers:` list.
    std::vector<consumer_config> consumers;
};

/// The Kafka topic the relay publishes outbox topic `topic` to: kafka.topic_prefix +
/// kafka.topic_map[topic] (or the topic itself when unmapped).
[[nodiscard]] std::string kafka_topic(const kafka_config& kafka, const std::string& topic);
/// The entry of cfg.consumers for `group`, or nullptr.
[[nodiscard]] const consumer_config* find_consumer(const ferry_config& cfg, std::string_view group);

/// One problem found while loading. line and column are 1-based; 0 when not tied to a place
/// (an environment override, say).
struct diagnostic {
    std::string source;  // file name, "<string>" or "env"
    int line = 0;
    int column = 0;
    std::string key;  // dotted path: "kafka.compression"
    std::string message;

    /// "file.yaml:3:5: kafka.compression: must be one of none, gzip, snappy, lz4, zstd"
    [[nodiscard]] std::string to_string() const;
};

struct load_result {
    ferry_config config;
    std::vector<diagnostic> errors;
    [[nodiscard]] bool ok() const noexcept { return errors.empty(); }
};

/// Returns the value of an environment variable, or nullopt when unset.
using env_lookup = std::function<std::optional<std::string>(const std::string&)>;
/// Reads the process environment (getenv).
[[nodiscard]] env_lookup process_env();

/// Limits on the YAML text, checked before it is turned into nodes: a configuration is small,
/// and text far bigger or deeper than any real one is a mistake or hostile input (a parser's
/// recursion and memory grow with both). Each limit is named in its diagnostic.
struct load_limits {
    /// Largest accepted text, in bytes. load_file stops reading one byte past it.
    std::size_t max_bytes = 1024 * 1024;
    /// Deepest accepted nesting of maps and lists; the root map is level 1. Ferry's own
    /// configuration needs 5 (checkback.groups.<name>.headers.<header>).
    std::size_t max_depth = 32;
    /// Time limit on yaml-cpp's parse of the text. The parse first runs in a forked child
    /// process; only when it finished there does this process parse the same text (yaml-cpp 0.7
    /// never returns on some malformed input, ADR 0050). The limit is on the child's CPU time,
    /// so a busy machine that starves the child does not make a valid text fail, with 10 times
    /// it in wall time as a backstop. A parse that does not finish is one diagnostic naming
    /// this limit. Zero skips the child and parses in-process, for a
    /// host process that cannot fork (then a malformed text can hang the load).
    std::chrono::milliseconds parse_timeout{2000};
    /// Memory the child's parse may add to the process's address space (RLIMIT_AS); running
    /// out is one diagnostic naming this limit. Not enforced in ASan or TSan builds.
    std::size_t parse_memory = 512 * 1024 * 1024;
};

/// Defaults plus environment overrides; no file.
[[nodiscard]] load_result load_defaults(const env_lookup& env = process_env());
/// Parses and validates a YAML file. A missing or unreadable file is one diagnostic.
[[nodiscard]] load_result load_file(const std::string& path, const env_lookup& env = process_env(),
                                    const load_limits& limits = {});
/// Parses and validates YAML text; `source` names it in diagnostics.
[[nodiscard]] load_result load_string(std::string_view yaml, const std::string& source = "<string>",
                                      const env_lookup& env = process_env(),
                                      const load_limits& limits = {});

/// The effective configuration as YAML, with every secret replaced by "***"
/// (DSN and URL passwords, secret-looking kafka.properties).
[[nodiscard]] std::string render_redacted(const ferry_config& cfg);

/// Parses "250ms", "6s", "1m", "2h" (also "1.5s"). nullopt when malformed.
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
/// Parses a byte size: "1048576", "512KiB", "1MiB", "1GiB" (also KB/MB = 1000-based). nullopt when
/// malformed.
[[nodiscard]] std::optional<std::size_t> parse_size(std::string_view text);

}  // namespace ferry::config
