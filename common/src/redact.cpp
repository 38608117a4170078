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

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// "%70assword" -> "password": libpq decodes URI query keywords before it looks them up, so the
// secret-key check must see the decoded name.
std::string percent_decoded(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
            hex_value(s[i + 2]) >= 0) {
            out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

// Masks the value of every secret-looking "key=value" in the query string of a URL.
std::string redact_query_passwords(std::string url) {
    const auto q = url.find('?');
    if (q == std::string::npos) return url;
    std::size_t pos = q + 1;
    while (pos < url.size()) {
        auto end = url.find('&', pos);
        if (end == std::string::npos) end = url.size();
        const auto eq = url.find('=', pos);
        if (eq != std::string::npos && eq < end) {
            if (is_secret_key(percent_decoded(std::string_view(url).substr(pos, eq - pos)))) {
                url.replace(eq + 1, end - eq - 1, k_mask);
                end = eq + 1 + k_mask.size();
            }
        }
        pos = end + 1;
    }
    return url;
}

bool is_postgres_uri(std::string_view s) {
    return s.rfind("postgresql://", 0) == 0 || s.rfind("postgres://", 0) == 0;
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
    const auto scheme = url_in.find("://");
    if (scheme == std::string::npos) return std::string(url_in);
    // The query first: masking a query value may remove an '@' that would otherwise decide
    // where the user-info ends, and doing it last made a second redaction differ from the first.
    std::string url = redact_query_passwords(std::string(url_in));
    const auto auth_start = scheme + 3;
    const bool postgres = is_postgres_uri(url);
    auto at = std::string::npos;
    if (postgres) {
        // libpq's rule: there is a user-info when an '@' comes before any '/'.
        const auto stop = url.find_first_of("@/", auth_start);
        if (stop != std::string::npos && url[stop] == '@') at = stop;
    } else {
        // Ferry's Redis client reads the user-info up to the last '@' of the URL: a password
        // that was not percent-encoded may hold '/', '?', '#' or '@' and must still disappear.
        // An '@' later in a query over-masks, which is the safe side.
        at = url.rfind('@');
        if (at != std::string::npos && at < auth_start) at = std::string::npos;
    }
    if (at != std::string::npos) {
        const auto colon = url.find(':', auth_start);
        if (colon != std::string::npos && colon < at) {
            url.replace(colon + 1, at - colon - 1, k_mask);
        } else if (!postgres && at > auth_start) {
            // A user-info without ':' is the password for Redis (redis://secret@host) and
            // often a token for HTTP (https://token@host); only libpq reads it as a user name.
            url.replace(auth_start, at - auth_start, k_mask);
        }
    }
    return url;
}

std::string redact_dsn(std::string_view dsn) {
    if (is_postgres_uri(dsn)) return redact_url(dsn);
    // key=value form, tokenized exactly as libpq does (conninfo_parse): whitespace around '=',
    // single-quoted values, and a backslash escaping the next character, inside quotes or not.
    const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
    std::string out;
    out.reserve(dsn.size());
    std::size_t i = 0;
    while (i < dsn.size()) {
        while (i < dsn.size() && space(dsn[i])) out += dsn[i++];
        const auto key_start = i;
        while (i < dsn.size() && dsn[i] != '=' && !space(dsn[i])) ++i;
        const auto key = dsn.substr(key_start, i - key_start);
        out += key;
        while (i < dsn.size() && space(dsn[i])) out += dsn[i++];
        if (i >= dsn.size() || dsn[i] != '=') continue;
        out += dsn[i++];
        while (i < dsn.size() && space(dsn[i])) out += dsn[i++];
        const auto value_start = i;
        std::string value;  // as libpq reads it
        const bool quoted = i < dsn.size() && dsn[i] == '\'';
        if (quoted) {
            ++i;
            while (i < dsn.size() && dsn[i] != '\'') {
                if (dsn[i] == '\\' && i + 1 < dsn.size()) ++i;
                value += dsn[i++];
            }
            if (i < dsn.size()) ++i;
        } else {
            while (i < dsn.size() && !space(dsn[i])) {
                if (dsn[i] == '\\' && i + 1 < dsn.size()) ++i;
                value += dsn[i++];
            }
        }
        // libpq expands a dbname that is itself a connection string (PQconnectdb), so one
        // holding a secret is masked whole.
        const bool embedded_secret =
            key == "dbname" && (value.find('=') != std::string::npos || is_postgres_uri(value)) &&
            redact_dsn(value) != value;
        if (is_secret_key(key) || embedded_secret) {
            // A quoted value stays quoted, so text glued to its closing quote stays apart from
            // the mask (and redacting again changes nothing).
            if (quoted) out += '\'';
            out += k_mask;
            if (quoted) out += '\'';
        } else {
            out += dsn.substr(value_start, i - value_start);
        }
    }
    return out;
}

}  // namespace ferry
