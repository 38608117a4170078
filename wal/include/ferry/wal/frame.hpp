#pragma once
// The framing of a Ferry message inside a PostgreSQL logical decoding message (ADR 0070).
//
// A producer in WAL mode calls pg_logical_emit_message(true, 'ferry', frame) in its own
// transaction (SQL: <schema>.enqueue_wal, migration 0070). The frame is versioned binary,
// big-endian, every variable field length-prefixed:
//
//   offset  size  field
//   0       1     version (1)
//   1       1     flags: bit 0 = expires_at present; other bits must be 0
//   2       16    message_id (UUIDv7 bytes)
//   18      8     created_at: int64 microseconds since the Unix epoch (database clock)
//   26      8     expires_at: int64 microseconds since the Unix epoch (0 when flag bit 0 clear)
//   34      4+n   schema   (uint32 length, UTF-8 bytes): the Ferry schema that emitted it
//   ..      4+n   topic
//   ..      4+n   key      (may be empty)
//   ..      4+n   headers  (a JSON object of string values, UTF-8)
//   ..      4+n   payload  (opaque bytes)
//   end           no trailing bytes
//
// encode_frame and decode_frame are pure and thread-safe. decode_frame never throws on bad
// input: it returns the cause (which field, what was wrong), so the relay can park the message
// with its reason instead of crashing or skipping it.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ferry/outbox/message_id.hpp"

namespace ferry::wal {

/// The prefix of every Ferry logical message.
inline constexpr std::string_view message_prefix = "ferry";
/// The frame version this build writes and reads.
inline constexpr std::uint8_t frame_version = 1;
/// Size of the fixed part (version .. expires_at) plus the five length words.
inline constexpr std::size_t frame_fixed_size = 34;

using micros_time = std::chrono::sys_time<std::chrono::microseconds>;

/// One committed Ferry message as it travels through the WAL.
struct wal_message {
    outbox::message_id id;
    std::string schema;
    std::string topic;
    std::string key;
    /// JSON object of string values, exactly as the producer's database rendered it.
    std::string headers_json = "{}";
    std::string payload;
    micros_time created_at{};
    std::optional<micros_time> expires_at;

    friend bool operator==(const wal_message&, const wal_message&) = default;
};

/// Encodes a message. Throws ferry::error(permanent, "wal.frame_too_large") when a field does
/// not fit its 32-bit length.
[[nodiscard]] std::string encode_frame(const wal_message& m);

/// The outcome of decoding one frame: a message, or the reason it is malformed.
struct decoded_frame {
    std::optional<wal_message> message;
    /// Which part is wrong ("version", "flags", "topic", "payload", "trailing bytes", ...).
    std::string field;
    /// A sentence naming the cause, e.g. "frame truncated: payload needs 200 bytes, 12 left".
    std::string error;

    [[nodiscard]] bool ok() const noexcept { return message.has_value(); }
};

[[nodiscard]] decoded_frame decode_frame(std::string_view frame);

}  // namespace ferry::wal
