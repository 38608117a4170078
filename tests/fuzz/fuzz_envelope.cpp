// Fuzzes the consumer's envelope decoding (consumer/src/envelope.hpp): the headers of any
// Kafka record, from any producer, before anything else looks at it.
//
// Invariants, beyond "no crash":
//   1. Every header comes back whole and in order: same names, same bytes, null stays null;
//      header_bytes is the sum of name and value sizes.
//   2. A record is usable exactly when it breaks no header limit and has exactly one
//      ferry-message-id header whose value is a UUID; its message_id is then that value in
//      lower case.
//   3. A malformed record says why: a header-limit reason names max_headers or
//      max_header_bytes with the configured number (code consumer.header_limit); any other
//      reason starts "malformed envelope:" (code consumer.malformed); and message_id is only
//      set for a single valid id.
#include <fuzzer/FuzzedDataProvider.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "envelope.hpp"
#include "fuzz_check.hpp"

namespace {

using ferry::fuzz::check;
namespace d = ferry::consumer::detail;

bool is_uuid(const std::string& s) {
    if (s.size() != 36) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return false;
        } else if (!std::isxdigit(static_cast<unsigned char>(s[i]))) {
            return false;
        }
    }
    return true;
}

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    d::envelope_limits limits;
    limits.max_headers = in.ConsumeIntegralInRange<std::size_t>(0, 12);
    limits.max_header_bytes = in.ConsumeIntegralInRange<std::size_t>(0, 80);
    // Names and values live in these vectors; raw headers point into them.
    std::vector<std::string> names, values;
    std::vector<bool> nulls;
    const auto count = in.ConsumeIntegralInRange<std::size_t>(0, 16);
    for (std::size_t i = 0; i < count; ++i) {
        const auto kind = in.ConsumeIntegralInRange<int>(0, 3);
        names.push_back(kind == 0 ? std::string(d::id_header) : in.ConsumeRandomLengthString(24));
        nulls.push_back(in.ConsumeBool() && kind != 1);
        values.push_back(kind == 1
                             ? "0190A000-0000-7000-8000-0000000000" + in.ConsumeBytesAsString(2)
                             : in.ConsumeRandomLengthString(60));
    }
    std::vector<d::raw_header> raw;
    for (std::size_t i = 0; i < count; ++i) {
        raw.push_back({names[i], nulls[i] ? nullptr : values[i].data(), values[i].size()});
    }
    const auto e = d::parse_envelope(raw, limits);

    // 1. Whole and in order.
    check(e.headers.size() == count, "every header is kept");
    std::size_t bytes = 0, ids = 0;
    bool too_big = false;
    const std::string* id_value = nullptr;
    for (std::size_t i = 0; i < count; ++i) {
        check(e.headers[i].name == names[i], "header names are kept byte for byte", names[i]);
        check(e.headers[i].value.has_value() == !nulls[i], "null values stay null", names[i]);
        if (!nulls[i]) check(*e.headers[i].value == values[i], "values are kept", values[i]);
        const auto hb = names[i].size() + (nulls[i] ? 0 : values[i].size());
        bytes += hb;
        too_big = too_big || hb > limits.max_header_bytes;
        if (names[i] == d::id_header) {
            ++ids;
            if (!nulls[i]) id_value = &values[i];
            if (nulls[i]) id_value = nullptr;
        }
    }
    check(e.header_bytes == bytes, "header_bytes is the sum of names and values");

    // 2. Usable exactly when within limits with one valid id.
    const bool over = count > limits.max_headers || too_big;
    const bool one_valid_id = ids == 1 && id_value != nullptr && is_uuid(*id_value);
    check(e.malformed.empty() == (!over && one_valid_id), "usable iff within limits with one id",
          e.malformed);
    if (one_valid_id) {
        check(e.message_id == lower(*id_value), "the id is the header's value in lower case",
              e.message_id);
    } else {
        check(e.message_id.empty(), "no id unless exactly one valid id header", e.message_id);
    }

    // 3. Reasons.
    if (over) {
        check(e.malformed_code == "consumer.header_limit", "a broken limit has its code");
        const bool names_count =
            e.malformed.find("max_headers=" + std::to_string(limits.max_headers)) !=
            std::string::npos;
        const bool names_size =
            e.malformed.find("max_header_bytes=" + std::to_string(limits.max_header_bytes)) !=
            std::string::npos;
        check(names_count || names_size, "the reason names the limit and its value", e.malformed);
    } else if (!e.malformed.empty()) {
        check(e.malformed_code == "consumer.malformed", "a bad envelope has its code");
        check(e.malformed.rfind("malformed envelope: ", 0) == 0, "the reason says what",
              e.malformed);
    }
    return 0;
}
