#pragma once
// Invariant checks for the libFuzzer targets in this folder. A broken invariant prints what
// broke and aborts; libFuzzer then saves the input as crash-<sha1> (scripts/fuzz prints how to
// replay it). Used instead of assert() so the checks stay on in every build type.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace ferry::fuzz {

/// `detail` with bytes outside printable ASCII (and backslashes) written as \xHH, newlines kept.
inline std::string printable(std::string_view detail) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : detail) {
        if (c == '\n' || (c >= 0x20 && c < 0x7f && c != '\\')) {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0x0f];
        }
    }
    return out;
}

[[noreturn]] inline void fail(const char* invariant, std::string_view detail) {
    std::fprintf(stderr, "\nINVARIANT BROKEN: %s\n  %s\n", invariant, printable(detail).c_str());
    std::abort();
}

inline void check(bool ok, const char* invariant, std::string_view detail = {}) {
    if (!ok) fail(invariant, detail);
}

}  // namespace ferry::fuzz
