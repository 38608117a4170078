#pragma once
// Removes secrets from connection strings before they reach a log line or an error message.

#include <string>
#include <string_view>

namespace ferry {

/// Redacts the password in a libpq connection string, either form:
/// "host=h password=s user=u" -> "host=h password=*** user=u";
/// "postgresql://u:s@h/db?password=s" -> "postgresql://u:***@h/db?password=***".
[[nodiscard]] std::string redact_dsn(std::string_view dsn);

/// Redacts the user-info password in a URL ("redis://:s@h:6379/0" -> "redis://:***@h:6379/0").
[[nodiscard]] std::string redact_url(std::string_view url);

/// True when a configuration or librdkafka property name holds a secret
/// (password, secret, token, key material: "sasl.password", "ssl.key.password", ...).
[[nodiscard]] bool is_secret_key(std::string_view key) noexcept;

}  // namespace ferry
