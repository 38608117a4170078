#pragma once
// Options of the relay (ferry::relay). Plain values with defaults; ferry-relay fills them from
// the `postgres`, `kafka` and `relay` sections of ferry::config (see relay/README.md).

#include <chrono>
#include <cstddef>
#include <map>
#include <string>

namespace ferry::relay {

struct relay_options {
    // --- PostgreSQL
    /// libpq connection string. Never logged unredacted.
    std::string dsn;
    /// Schema holding the outbox and relay tables (migrations 0001 and 0002).
    std::string schema = "ferry";
    std::chrono::milliseconds connect_timeout{5000};

    // --- Kafka
    std::string brokers = "127.0.0.1:9092";
    /// none | gzip | snappy | lz4 | zstd
    std::string compression = "lz4";
    /// Kafka topic = topic_prefix + (topic_map[outbox topic] or the outbox topic).
    std::string topic_prefix;
    std::map<std::string, std::string> topic_map;
    /// librdkafka producer properties passed through (applied after Ferry's own settings,
    /// except enable.idempotence, acks and the delivery report callback, which Ferry owns).
    std::map<std::string, std::string> properties;

    // --- Source (ADR 0070)
    /// polling: claim rows of the outbox table. wal: stream the logical decoding messages that
    /// producers emit with <schema>.enqueue_wal / emit_wal (requires lease_groups = 1, a
    /// pgoutput slot and a publication, see `ferryctl wal setup`). snapshot: read the outbox
    /// table between snapshots, in id order, and keep published rows there until
    /// published_retention has passed (ADR 0080; a polling relay then refuses the schema).
    std::string source = "polling";
    /// wal: the replication slot ([a-z0-9_], at most 63 characters), created and registered
    /// beforehand; the relay never creates it (a lost slot is reported, never recreated).
    std::string wal_slot = "ferry_relay";
    /// wal: the publication passed to pgoutput (an empty one suffices for messages).
    std::string wal_publication = "ferry";

    // --- Relay
    /// relay_lease.owner of this instance; empty: "<hostname>-<pid>-<random>".
    std::string instance_id;
    /// Number of lease groups; group g owns outbox shards s with s % lease_groups == g.
    int lease_groups = 1;
    std::chrono::milliseconds lease_ttl{10000};
    std::size_t batch_size = 500;
    std::chrono::milliseconds poll_min{1};
    std::chrono::milliseconds poll_max{100};
    /// librdkafka message.timeout.ms: how long one batch may wait for acknowledgements.
    std::chrono::milliseconds delivery_timeout{30000};
    /// On stop(): the in-flight batch gets this long before it is abandoned (rows unmarked).
    std::chrono::milliseconds shutdown_timeout{10000};
    /// Published-ledger rows are kept at least this long and at most about this long plus one
    /// partition width (retention / 4, between 1 s and 1 day); see ADR 0010.
    std::chrono::milliseconds published_retention{std::chrono::hours(24 * 7)};
    /// The published ledger keeps a copy of every payload, so reconciliation can re-drive a
    /// message that Kafka lost. false: it keeps the rest (ids, topics, keys, partitions,
    /// offsets, created_at, headers) and reconciliation reports such a message as
    /// `no_payload_in_ledger` instead (ADR 0011).
    bool ledger_payloads = true;
    /// Marks of one lease group that may run at once, each on its own session (1 to 8). With 1,
    /// batch N+1 is handed over only after batch N's mark committed; with more, later batches
    /// are marked while an earlier mark is still running, and a crash can leave up to
    /// mark_lanes + 1 produced batches unmarked (republished). ADR 0002, fourteenth amendment.
    std::size_t mark_lanes = 1;
    /// statement_timeout of every relay session; 0: max(lease_ttl, 5 s).
    std::chrono::milliseconds statement_timeout{0};
};

/// The Kafka topic an outbox topic is published to: topic_map rename, then topic_prefix.
[[nodiscard]] std::string kafka_topic(const relay_options& options, const std::string& topic);

/// The outbox shards (0..255) that lease group `group` of `groups` owns.
[[nodiscard]] std::string shard_array_literal(int group, int groups);

}  // namespace ferry::relay
