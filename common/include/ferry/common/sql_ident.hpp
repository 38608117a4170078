#pragma once
// Validation and quoting of SQL identifiers that come from configuration (schema, table names).
// Values are never spliced into SQL; identifiers are, so they are checked against a strict
// pattern first and then quoted.

#include <string>
#include <string_view>

namespace ferry {

/// True for a lower-case PostgreSQL identifier: [a-z_][a-z0-9_]*, at most 63 bytes.
[[nodiscard]] bool is_valid_identifier(std::string_view name) noexcept;

/// Throws ferry::error(permanent, "config.invalid_identifier", field = `field`) unless valid.
void require_identifier(std::string_view name, std::string_view field);

/// Double-quotes a valid identifier. Throws like require_identifier for an invalid one.
[[nodiscard]] std::string quote_identifier(std::string_view name,
                                           std::string_view field = "identifier");

}  // namespace ferry
