#pragma once
// Options of the producer-side library. Filled by ferry::config from YAML, or set directly.

#include <chrono>
#include <cstddef>
#include <string>

namespace ferry::outbox {

/// Where the writer puts a message (ADR 0070).
enum class emit_mode {
    /// A row of the outbox table, published by a polling relay (relay.source: polling).
    table,
    /// A transactional logical decoding message (<schema>.emit_wal), published by a WAL-mode
    /// relay (relay.source: wal). No table row. Delayed delivery is refused; expiry is kept.
    /// The database refuses (SQLSTATE 55000) while no registered replication slot exists.
    wal,
};

struct writer_options {
    /// PostgreSQL schema that holds Ferry's tables and functions.
    std::string schema = "ferry";
    /// table (default) or wal; must match the relay's relay.source. YAML: outbox.mode.
    emit_mode mode = emit_mode::table;
    /// Largest payload accepted, in bytes (Kafka's default message.max.bytes is about 1 MiB).
    std::size_t max_payload_bytes = 1024 * 1024;
    /// Largest key accepted, in bytes.
    std::size_t max_key_bytes = 4096;
    /// Largest total size of header names and values, in bytes.
    std::size_t max_headers_bytes = 64 * 1024;

    /// Check-back schedule given to half messages that do not set their own (half_options):
    /// first check this long after prepare, then every check_interval, at most max_checks times.
    /// RocketMQ's defaults. Filled from the YAML section `checkback:`.
    std::chrono::milliseconds check_first_after{6000};
    std::chrono::milliseconds check_interval{30000};
    int max_checks = 15;
};

}  // namespace ferry::outbox
