#pragma once
// Private helpers of Ferry's HTTP endpoints (the relay's and the consumer's), header-only and
// free of any HTTP library:
//  - bearer_token(): the token of an "Authorization: Bearer <token>" header value;
//  - constant_time_equal(): compares a presented token with the expected one in a time that
//    depends only on the expected token's length;
//  - json_string_body(): text made safe inside a JSON string (quotes and backslashes escaped,
//    control characters dropped).

#include <cctype>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::internal {

/// The token of an Authorization header value "Bearer <token>" (scheme case-insensitive,
/// surrounding spaces trimmed), or nullopt for another scheme or a value too short to hold one.
inline std::optional<std::string> bearer_token(std::string_view header_value) {
    if (header_value.size() < 7) return std::nullopt;
    std::string scheme(header_value.substr(0, 7));
    for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (scheme != "bearer ") return std::nullopt;
    std::string token(header_value.substr(7));
    while (!token.empty() && token.front() == ' ') token.erase(0, 1);
    while (!token.empty() && token.back() == ' ') token.pop_back();
    return token;
}

/// Every byte of `expected` is compared whatever `given` holds; a length mismatch is folded into
/// the result, not returned early.
inline bool constant_time_equal(std::string_view given, std::string_view expected) noexcept {
    unsigned char diff = given.size() == expected.size() ? 0 : 1;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        const auto g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
        diff |= static_cast<unsigned char>(g ^ static_cast<unsigned char>(expected[i]));
    }
    return diff == 0;
}

/// `text` as the inside of a JSON string: `"` and `\` escaped, control characters dropped.
inline std::string json_string_body(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) >= 0x20) out += c;
    }
    return out;
}

}  // namespace ferry::internal
