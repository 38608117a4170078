#include "ferry/common/redact.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace ferry {
namespace {

constexpr std::string_view k_mask = "***";

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

// Masks "password=value" in the query string of a URL.
std::string redact_query_passwords(std::string url) {
    const auto q = url.find('?');
    if (q == std::string::npos) return url;
    std::size_t pos = q + 1;
    while (pos < url.size()) {
        auto end = url.find('&', pos);
        if (end == std::string::npos) end = url.size();
        const auto eq = url.find('=', pos);
        if (eq != std::string::npos && eq < end) {
            if (is_secret_key(std::string_view(url).substr(pos, eq - pos))) {
                url.replace(eq + 1, end - eq - 1, k_mask);
                end = eq + 1 + k_mask.size();
            }
        }
        pos = end + 1;
    }
    return url;
}

}  // namespace

bool is_secret_key(std::string_view key) noexcept {
    static constexpr std::array<std::string_view, 7> needles = {
        "password",   "passwd", "secret", "token", "credential", "sasl.oauthbearer.config",
        "ssl.key.pem"};
    std::string k;
    try {
        k = lower(key);
    } catch (...) {
        return true;
    }
    for (auto n : needles) {
        if (k.find(n) != std::string::npos) return true;
    }
    return false;
}

std::string redact_url(std::string_view url_in) {
    std::string url(url_in);
    const auto scheme = url.find("://");
    if (scheme == std::string::npos) return url;
    const auto auth_start = scheme + 3;
    // The user-info ends at the last '@' before the query: a password may itself contain '/'
    // or '@' when the user forgot to percent-encode it, and must still disappear.
    auto auth_end = url.find_first_of("?#", auth_start);
    if (auth_end == std::string::npos) auth_end = url.size();
    const auto at = url.rfind('@', auth_end);
    if (at != std::string::npos && at >= auth_start) {
        const auto colon = url.find(':', auth_start);
        if (colon != std::string::npos && colon < at) {
            url.replace(colon + 1, at - colon - 1, k_mask);
        }
    }
    return redact_query_passwords(std::move(url));
}

std::string redact_dsn(std::string_view dsn) {
    if (dsn.find("://") != std::string_view::npos) return redact_url(dsn);
    // key=value form; values may be single-quoted with backslash escapes.
    std::string out;
    out.reserve(dsn.size());
    std::size_t i = 0;
    while (i < dsn.size()) {
        while (i < dsn.size() && std::isspace(static_cast<unsigned char>(dsn[i]))) out += dsn[i++];
        const auto key_start = i;
        while (i < dsn.size() && dsn[i] != '=' && !std::isspace(static_cast<unsigned char>(dsn[i])))
            ++i;
        const auto key = dsn.substr(key_start, i - key_start);
        out += key;
        while (i < dsn.size() && std::isspace(static_cast<unsigned char>(dsn[i]))) out += dsn[i++];
        if (i >= dsn.size() || dsn[i] != '=') continue;
        out += dsn[i++];
        while (i < dsn.size() && std::isspace(static_cast<unsigned char>(dsn[i]))) out += dsn[i++];
        const auto value_start = i;
        if (i < dsn.size() && dsn[i] == '\'') {
            ++i;
            while (i < dsn.size() && dsn[i] != '\'')
                i += (dsn[i] == '\\' && i + 1 < dsn.size()) ? 2 : 1;
            if (i < dsn.size()) ++i;
        } else {
            while (i < dsn.size() && !std::isspace(static_cast<unsigned char>(dsn[i]))) ++i;
        }
        if (is_secret_key(key)) {
            out += k_mask;
        } else {
            out += dsn.substr(value_start, i - value_start);
        }
    }
    return out;
}

}  // namespace ferry
