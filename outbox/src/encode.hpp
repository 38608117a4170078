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

}  // namespace ferry::outbox::detail
