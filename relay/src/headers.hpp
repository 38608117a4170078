#pragma once
// Private: decoding an outbox row's headers (jsonb rendered as text) into Kafka headers.
//
// The row's headers are a JSON object. Each member becomes one Kafka header: a string value is
// passed as its characters; any other value (number, boolean, null, object, array) as its JSON
// text, with numbers exactly as PostgreSQL rendered them (never rounded through a double).
// Text that cannot be decoded (not an object, or a number beyond a double's range, which jsonb
// accepts but a JSON parser refuses) yields an error: the relay parks such a row and never
// publishes it with its headers changed (issue 10, hole 9).

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::relay::detail {

using header_list = std::vector<std::pair<std::string, std::string>>;

/// Appends the decoded headers to `out`. Returns an empty string on success, else the reason
/// (starting with "headers: "); `out` is then unspecified.
[[nodiscard]] std::string decode_headers(std::string_view json, header_list& out);

}  // namespace ferry::relay::detail
