#pragma once
// The envelope of a received Kafka record, decoded without librdkafka: headers (with the
// record's header limits), the ferry-message-id, and the bytes it holds in memory. Pure, so it
// is unit-tested (envelope_test) and fuzzed (tests/fuzz/fuzz_envelope.cpp).
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/consumer/consumer.hpp"

namespace ferry::consumer::detail {

inline constexpr std::string_view id_header = "ferry-message-id";

/// A lower-cased canonical UUID (8-4-4-4-12 hex digits), or empty when `s` is not one.
[[nodiscard]] std::string canonical_uuid(std::string_view s);

struct envelope_limits {
    std::size_t max_headers = 64;
    std::size_t max_header_bytes = 16384;  // name + value of one header
};

/// One header as librdkafka hands it over; `value == nullptr` is a null value.
struct raw_header {
    std::string_view name;
    const char* value = nullptr;
    std::size_t size = 0;
};

/// Why a record cannot be handled (control flow uses this, never the code text).
enum class envelope_problem { none, malformed, header_limit };

struct envelope {
    std::vector<header> headers;   // every header, in order, byte for byte
    std::string message_id;        // canonical, or empty when malformed
    std::size_t header_bytes = 0;  // sum of name + value sizes
    std::string malformed;         // empty when the envelope is usable; else why not
    envelope_problem problem = envelope_problem::none;
    std::string malformed_code;  // stored with the dead letter: "consumer.header_limit" or
                                 // "consumer.malformed"
};

/// Decodes the headers of one record. A record breaking a header limit, without exactly one
/// ferry-message-id header, or whose id is not a UUID is malformed: the reason names the limit
/// or the header, and the caller dead-letters it (never drops or trims it). Headers are always
/// kept whole, also when malformed.
[[nodiscard]] envelope parse_envelope(const std::vector<raw_header>& headers,
                                      const envelope_limits& limits);

}  // namespace ferry::consumer::detail
