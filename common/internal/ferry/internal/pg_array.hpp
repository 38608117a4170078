#pragma once
// PostgreSQL array literals for binding a whole list as one parameter ("{1,2,3}",
// "{\"a\",\"b\"}"), used with `= ANY($1::bigint[])` and `unnest($1::text[])`. The one copy in
// Ferry (private, not installed). Text elements are always double-quoted with `"` and `\`
// escaped, so commas, braces, spaces, quotes, backslashes and the word NULL arrive unchanged;
// std::nullopt elements become SQL NULL.

#include <charconv>
#include <concepts>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::internal {

inline void append_array_element(std::string& out, std::string_view v) {
    out += '"';
    // Copy the runs between characters that need a backslash, not one character at a time
    // (the relay builds literals of thousands of elements per batch).
    std::size_t from = 0;
    for (;;) {
        const auto at = v.find_first_of("\"\\", from);
        if (at == std::string_view::npos) {
            out.append(v.substr(from));
            break;
        }
        out.append(v.substr(from, at - from));
        out += '\\';
        out += v[at];
        from = at + 1;
    }
    out += '"';
}

/// Builds a text[] literal element by element, for callers that have the elements at hand
/// and no vector of them (the same quoting as array_literal).
class array_builder {
public:
    /// `bytes_hint`: the expected total size of the elements, to allocate once.
    explicit array_builder(std::size_t elements_hint = 0, std::size_t bytes_hint = 0) {
        _out.reserve(2 + bytes_hint + 3 * elements_hint);
        _out += '{';
    }
    void add(std::string_view v) {
        if (_out.size() > 1) _out += ',';
        append_array_element(_out, v);
    }
    void add_null() {
        if (_out.size() > 1) _out += ',';
        _out += "NULL";
    }
    /// The literal; the builder is spent.
    [[nodiscard]] std::string take() && {
        _out += '}';
        return std::move(_out);
    }

private:
    std::string _out;
};

/// text[] / uuid[] / timestamptz[] literal.
inline std::string array_literal(const std::vector<std::string>& values) {
    std::size_t bytes = 0;
    for (const auto& v : values) bytes += v.size();
    array_builder b(values.size(), bytes);
    for (const auto& v : values) b.add(v);
    return std::move(b).take();
}

/// text[] literal with NULL elements.
inline std::string array_literal(const std::vector<std::optional<std::string>>& values) {
    std::size_t bytes = 0;
    for (const auto& v : values) bytes += v ? v->size() : 4;
    array_builder b(values.size(), bytes);
    for (const auto& v : values) {
        if (v) {
            b.add(*v);
        } else {
            b.add_null();
        }
    }
    return std::move(b).take();
}

/// int[] / bigint[] literal.
template <std::integral T>
std::string array_literal(const std::vector<T>& values) {
    std::string out;
    out.reserve(2 + values.size() * 8);
    out += '{';
    char buf[24];
    for (const auto& v : values) {
        if (out.size() > 1) out += ',';
        const auto r = std::to_chars(buf, buf + sizeof buf, v);
        out.append(buf, r.ptr);
    }
    out += '}';
    return out;
}

}  // namespace ferry::internal
