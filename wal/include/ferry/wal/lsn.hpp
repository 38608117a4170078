#pragma once
// PostgreSQL write-ahead-log positions (pg_lsn): a 64-bit byte position, written "X/Y" in hex
// (the high and low 32 bits). Value type; thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::wal {

using lsn = std::uint64_t;

/// "16/B374D848" form, upper-case hex as PostgreSQL prints it.
[[nodiscard]] std::string format_lsn(lsn value);
/// Parses "X/Y" (1-8 hex digits each side). nullopt when malformed.
[[nodiscard]] std::optional<lsn> parse_lsn(std::string_view text) noexcept;

}  // namespace ferry::wal
