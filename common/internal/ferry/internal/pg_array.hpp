#pragma once
// PostgreSQL array literals for binding a whole list as one parameter ("{1,2,3}",
// "{\"a\",\"b\"}"), used with `= ANY($1::bigint[])` and `unnest($1::text[])`. The one copy in
// Ferry (private, not installed). Text elements are always double-quoted with `"` and `\`
// escaped, so commas, braces, spaces, quotes, backslashes and the word NULL arrive unchanged;
// std::nullopt elements become SQL NULL.

#include <concepts>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::internal {

inline void append_array_element(std::string& out, std::string_view v) {
    out += '"';
    for (char c : v) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    out += '"';
}

/// text[] / uuid[] / timestamptz[] literal.
inline std::string array_literal(const std::vector<std::string>& values) {
    std::string out = "{";
    for (const auto& v : values) {
        if (out.size() > 1) out += ',';
        append_array_element(out, v);
    }
    return out + "}";
}

/// text[] literal with NULL elements.
inline std::string array_literal(const std::vector<std::optional<std::string>>& values) {
    std::string out = "{";
    for (const auto& v : values) {
        if (out.size() > 1) out += ',';
        if (v) {
            append_array_element(out, *v);
        } else {
            out += "NULL";
        }
    }
    return out + "}";
}

/// int[] / bigint[] literal.
template <std::integral T>
std::string array_literal(const std::vector<T>& values) {
    std::string out = "{";
    for (const auto& v : values) {
        if (out.size() > 1) out += ',';
        out += std::to_string(v);
    }
    return out + "}";
}

}  // namespace ferry::internal
