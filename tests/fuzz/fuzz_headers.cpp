// Fuzzes the outbox writer's header path: validate_message() (what enqueue() checks before any
// SQL) and headers_json() (the jsonb text sent to PostgreSQL for the headers column).
//
// Invariants, beyond "no crash":
//   1. validate_message either accepts or throws ferry::error, permanent, with an "outbox.*"
//      code, a field, and a message without control characters; nothing else escapes.
//   2. Accepted headers encode to JSON that a strict parser (nlohmann::json, which rejects
//      invalid UTF-8) reads back as an object of strings equal to the input, byte for byte.
//   3. Accepted headers respect the rules the SQL side enforces too: non-empty names, no
//      "ferry-" prefix, no NUL, total size within max_headers_bytes.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "encode.hpp"
#include "ferry/common/error.hpp"
#include "ferry/outbox/message.hpp"
#include "ferry/outbox/options.hpp"
#include "fuzz_check.hpp"
#include "validate.hpp"

namespace {

using ferry::fuzz::check;
using ferry::fuzz::fail;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    ferry::outbox::writer_options options;
    options.max_headers_bytes = in.ConsumeIntegralInRange<std::size_t>(0, 512);
    options.max_key_bytes = 64;
    options.max_payload_bytes = 64;

    ferry::outbox::message m;
    m.topic = in.ConsumeBool() ? "orders" : in.ConsumeRandomLengthString(16);
    m.key = in.ConsumeRandomLengthString(16);
    m.payload = in.ConsumeRandomLengthString(16);
    const auto count = in.ConsumeIntegralInRange<int>(0, 8);
    for (int i = 0; i < count && in.remaining_bytes() > 0; ++i) {
        auto name = in.ConsumeRandomLengthString(24);
        m.headers[std::move(name)] = in.ConsumeRandomLengthString(48);
    }

    try {
        ferry::outbox::detail::validate_message(m, options);
    } catch (const ferry::error& e) {
        const std::string what = e.what();
        check(e.kind() == ferry::error_kind::permanent, "a validation error is permanent", what);
        check(e.code().rfind("outbox.", 0) == 0, "a validation code starts with outbox.", e.code());
        check(!e.field().empty(), "a validation error names its field", what);
        for (unsigned char c : what) {
            check(c >= 0x20 && c != 0x7f, "an error message has no control characters", what);
        }
        return 0;
    } catch (const std::exception& e) {
        fail("validate_message threw something else than ferry::error", e.what());
    }

    std::size_t bytes = 0;
    for (const auto& [name, value] : m.headers) {
        check(!name.empty(), "accepted header names are not empty");
        check(name.rfind("ferry-", 0) != 0, "accepted header names are not reserved", name);
        check(name.find('\0') == std::string::npos && value.find('\0') == std::string::npos,
              "accepted headers have no NUL", name);
        bytes += name.size() + value.size();
    }
    check(bytes <= options.max_headers_bytes, "accepted headers fit max_headers_bytes");

    const auto text = ferry::outbox::detail::headers_json(m.headers);
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
        fail("headers_json of accepted headers is valid JSON", text + "\n" + e.what());
    }
    check(j.is_object(), "headers_json is an object", text);
    std::map<std::string, std::string> back;
    for (auto it = j.begin(); it != j.end(); ++it) {
        check(it->is_string(), "every header value is a JSON string", text);
        back[it.key()] = it->get<std::string>();
    }
    check(back == m.headers, "headers_json round-trips byte for byte", text);
    return 0;
}
