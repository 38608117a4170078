#pragma once
// Removes secrets from connection strings before they reach a log line or an error message.

#include <string>
#include <string_view>

namespace ferry {

/// Redacts the password in a libpq connection string, either form, tokenized as libpq does
/// (quotes, backslash escapes, percent-encoded URI keys; a dbname holding a connection string):
/// "host=h password=s user=u" -> "host=h password=*** user=u";
/// "postgresql://u:s@h/db?password=s" -> "postgresql://u:***@h/db?password=***".
[[nodiscard]] std::string redact_dsn(std::string_view dsn);

/// Redacts the user-info password in a URL ("redis://:s@h:6379/0" -> "redis://:***@h:6379/0").
/// The user-info runs to the last '@' (an unencoded password may hold '/', '?', '#' or '@'), and
/// one without ':' is masked whole ("redis://s@h" -> "redis://***@h"), except in a postgres URI
/// where it is the user name. Secret-looking query parameters are masked too.
[[nodiscard]] std::string redact_url(std::string_view url);

/// True when a configuration or librdkafka property name holds a secret
/// (password, secret, token, key material: "sasl.password", "ssl.key.password", ...).
[[nodiscard]] bool is_secret_key(std::string_view key) noexcept;

}  // namespace ferry
