// Fuzzes the YAML configuration loader (ferry::config::load_string): every section, ${ENV}
// substitution, the size and depth limits, and render_redacted().
//
// Invariants, beyond "no crash":
//   1. load_string never throws; hostile text becomes diagnostics.
//   2. Every diagnostic names the source and carries a 1-based line and column inside the text
//      (the fake environment sets no FERRY_* override, so nothing is tied to "env"); the
//      exceptions are about the whole text and name their limit: the size limit, and a yaml-cpp
//      parse that did not finish in time or ran out of memory in the child process that parses
//      first (load_limits.parse_timeout, parse_memory). A parser crash in that child is a
//      finding: it is reported as "the YAML parser crashed", and ASan prints its report there.
//   3. A text that loads without errors renders (render_redacted) to YAML that loads without
//      errors and renders to the same text again: the effective configuration round-trips.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "ferry/config/config.hpp"
#include "fuzz_check.hpp"

namespace {

using ferry::fuzz::check;

// What ${VAR} may refer to: an empty one (":-" applies), a secret, one holding "${" (never
// substituted again) and one with YAML syntax in it.
std::optional<std::string> fake_env(const std::string& name) {
    if (name == "HOST") return "db.internal";
    if (name == "EMPTY") return "";
    if (name == "SECRET") return "s3cr3t-Pw";
    if (name == "DOLLAR") return "${HOST}";
    if (name == "NUM") return "42";
    if (name == "DUR") return "250ms";
    if (name == "YAML") return "a: [b, {c: d}]\n- e";
    return std::nullopt;
}

std::size_t line_count(std::string_view text) {
    std::size_t lines = 1;
    for (char c : text) lines += (c == '\n' || c == '\r') ? 1 : 0;
    return lines;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    ferry::config::load_limits limits;
    limits.max_bytes = 8192;  // below -max_len's reach in scripts/fuzz, so the limit is hit too
    limits.max_depth = 8;
    // An 8 KiB text parses in milliseconds even here; a known yaml-cpp hang costs this much.
    limits.parse_timeout = std::chrono::seconds(1);

    ferry::config::load_result r;
    try {
        r = ferry::config::load_string(text, "fuzz.yaml", fake_env, limits);
    } catch (const std::exception& e) {
        ferry::fuzz::fail("load_string threw", e.what());
    } catch (...) {
        ferry::fuzz::fail("load_string threw a non-std exception", "");
    }

    if (size > limits.max_bytes) {
        check(r.errors.size() == 1 && r.errors[0].line == 0 &&
                  r.errors[0].message.find("(load_limits.max_bytes)") != std::string::npos,
              "text over the size limit is one error naming the limit");
        return 0;
    }
    const auto lines = line_count(text);
    for (const auto& d : r.errors) {
        const auto shown = d.to_string();
        check(d.source == "fuzz.yaml", "diagnostic names its source", shown);
        check(!d.message.empty(), "diagnostic has a message", shown);
        // The parse child's verdicts are about the whole text: no place, and the only error.
        // (Matched by prefix and place: a key may quote any of these words.)
        if (d.line == 0) {
            const auto starts = [&](std::string_view p) { return d.message.rfind(p, 0) == 0; };
            check(!starts("the YAML parser crashed"), "yaml-cpp does not crash in the parse child",
                  shown);
            if (starts("YAML parse did not finish within ") || starts("YAML parse needed more")) {
                check(r.errors.size() == 1, "a parse refused whole is its only error", shown);
                continue;
            }
        }
        check(d.line >= 1 && d.column >= 1, "diagnostic has a line and column", shown);
        check(static_cast<std::size_t>(d.line) <= lines + 1, "diagnostic line is in the text",
              shown);
    }
    if (!r.ok()) return 0;

    const auto rendered = ferry::config::render_redacted(r.config);
    const auto again = ferry::config::load_string(rendered, "fuzz.yaml", fake_env);
    if (!again.ok()) {
        ferry::fuzz::fail("render_redacted output loads",
                          rendered + "\n--- first error: " + again.errors.front().to_string());
    }
    check(ferry::config::render_redacted(again.config) == rendered, "render_redacted round-trips",
          rendered);
    return 0;
}
