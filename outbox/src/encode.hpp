#pragma once
// Text encodings the producer API sends to PostgreSQL (shared by writer and half messages).

#include <map>
#include <string>
#include <string_view>

namespace ferry::outbox::detail {

/// Appends the lower-case hex digits of `bytes`.
void append_hex(std::string& out, std::string_view bytes);
/// bytea input in hex format: "\x0102...".
[[nodiscard]] std::string bytea_literal(std::string_view bytes);
/// A JSON object of string values. Names and values must already be valid UTF-8.
[[nodiscard]] std::string headers_json(const std::map<std::string, std::string>& headers);
/// The variable part of a WAL-mode frame (wal/include/ferry/wal/frame.hpp, from offset 34):
/// schema, topic, key, headers and payload, each a big-endian uint32 length and its bytes. The
/// statement prepends version, flags, id, created_at and expires_at on the database clock.
[[nodiscard]] std::string wal_frame_tail(std::string_view schema, std::string_view topic,
                                         std::string_view key, std::string_view headers_json,
                                         std::string_view payload);

}  // namespace ferry::outbox::detail
