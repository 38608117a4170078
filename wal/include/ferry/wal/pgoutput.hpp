#pragma once
// Pure parsers for what a logical replication connection receives (no server, no I/O):
//  - the CopyBoth framing of the streaming replication protocol: XLogData ('w') and the
//    primary keepalive ('k'), and the encoder of the standby status update ('r') we send back;
//  - the messages of the pgoutput plugin, proto_version 1 (PostgreSQL 10+; Message since 14):
//    Begin, Commit, Message, Relation, Insert, and the ones Ferry recognises but does not use
//    (Origin, Type, Update, Delete, Truncate). Streaming-transaction messages (proto 2+) are
//    refused: Ferry asks for proto_version '1', so seeing one is a protocol error.
//
// Malformed or truncated input throws ferry::error(permanent, "wal.protocol") naming the message
// and the field that did not fit; nothing here reads past the input. string_views in the
// results point into the caller's buffer and live as long as it does.
// Thread-safety: free functions without state.

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ferry/wal/lsn.hpp"

namespace ferry::wal {

/// Microseconds since 2000-01-01 00:00:00 UTC (PostgreSQL's epoch).
using pg_timestamp = std::int64_t;
/// Seconds between the Unix epoch and PostgreSQL's epoch.
inline constexpr std::int64_t pg_epoch_unix_seconds = 946684800;

// ---- CopyBoth framing --------------------------------------------------------------------

struct xlog_data {
    lsn wal_start = 0;
    lsn wal_end = 0;
    pg_timestamp send_time = 0;
    std::string_view data;  // one pgoutput message: a view into the bytes parsed
};

struct primary_keepalive {
    lsn wal_end = 0;
    pg_timestamp send_time = 0;
    bool reply_requested = false;
};

using copy_message = std::variant<xlog_data, primary_keepalive>;

[[nodiscard]] copy_message parse_copy_data(std::string_view bytes);

/// The 34-byte standby status update ('r'): written, flushed and applied positions.
[[nodiscard]] std::string encode_standby_status(lsn written, lsn flushed, lsn applied,
                                                pg_timestamp now, bool reply_requested);

// ---- pgoutput proto_version 1 ------------------------------------------------------------

struct begin_message {
    lsn final_lsn = 0;  // the commit record's LSN
    pg_timestamp commit_time = 0;
    std::uint32_t xid = 0;
};

struct commit_message {
    std::uint8_t flags = 0;
    lsn commit_lsn = 0;
    lsn end_lsn = 0;  // end of the commit record: the position to confirm
    pg_timestamp commit_time = 0;
};

/// pg_logical_emit_message output.
struct logical_message {
    bool transactional = false;
    lsn message_lsn = 0;
    std::string_view prefix;
    std::string_view content;
};

struct relation_column {
    bool part_of_key = false;
    std::string name;
    std::uint32_t type_oid = 0;
    std::int32_t type_modifier = 0;
};

struct relation_message {
    std::uint32_t relation_id = 0;
    std::string nspname;
    std::string relname;
    char replica_identity = 'd';
    std::vector<relation_column> columns;
};

struct tuple_value {
    enum class kind { null, unchanged_toast, text, binary };
    kind type = kind::null;
    std::string_view data;
};
using tuple_data = std::vector<tuple_value>;

struct insert_message {
    std::uint32_t relation_id = 0;
    tuple_data values;
};

struct update_message {
    std::uint32_t relation_id = 0;
    char old_kind = 0;  // 'K' (key), 'O' (old row) or 0 (none sent)
    tuple_data old_values;
    tuple_data new_values;
};

struct delete_message {
    std::uint32_t relation_id = 0;
    char old_kind = 'K';
    tuple_data old_values;
};

struct truncate_message {
    std::uint8_t options = 0;  // bit 0 CASCADE, bit 1 RESTART IDENTITY
    std::vector<std::uint32_t> relation_ids;
};

struct origin_message {
    lsn origin_lsn = 0;
    std::string name;
};

struct type_message {
    std::uint32_t type_oid = 0;
    std::string nspname;
    std::string name;
};

using pgoutput_message =
    std::variant<begin_message, commit_message, logical_message, relation_message, insert_message,
                 update_message, delete_message, truncate_message, origin_message, type_message>;

[[nodiscard]] pgoutput_message parse_pgoutput(std::string_view bytes);

/// The message's name for logs and errors ("Begin", "Message", ...).
[[nodiscard]] std::string_view message_name(const pgoutput_message& m) noexcept;

}  // namespace ferry::wal
