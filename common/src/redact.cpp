#include "ferry/common/redact.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>
#include <vector>

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

using span = std::pair<std::size_t, std::size_t>;  // [begin, end) of text to mask

// The value of every secret-looking "key=value" in the query string of a URL.
void query_secret_spans(std::string_view url, std::size_t from, std::vector<span>& out) {
    const auto q = url.find('?', from);
    if (q == std::string_view::npos) return;
    std::size_t pos = q + 1;
    while (pos < url.size()) {
        auto end = url.find('&', pos);
        if (end == std::string_view::npos) end = url.size();
        const auto eq = url.find('=', pos);
        if (eq != std::string_view::npos && eq < end &&
            is_secret_key(percent_decoded(url.substr(pos, eq - pos)))) {
            out.emplace_back(eq + 1, end);
        }
        pos = end + 1;
    }
}

// Replaces every span (merged where they overlap or touch) with the mask.
std::string masked(std::string_view text, std::vector<span> spans) {
    std::sort(spans.begin(), spans.end());
    std::string out;
    std::size_t pos = 0;
    for (std::size_t i = 0; i < spans.size();) {
        auto [begin, end] = spans[i++];
        while (i < spans.size() && spans[i].first <= end) end = std::max(end, spans[i++].second);
        out += text.substr(pos, begin - pos);
        out += k_mask;
        pos = end;
    }
    out += text.substr(pos);
    return out;
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

namespace {

// One pass over a URL; redact_url repeats it until nothing changes.
std::string redact_url_once(std::string_view url) {
    const auto scheme = url.find("://");
    if (scheme == std::string_view::npos) return std::string(url);
    const auto auth_start = scheme + 3;
    const bool postgres = is_postgres_uri(url);
    // Every reading of the URL is masked at once, on the original text, so that what one mask
    // removes (an '@', a '?') cannot change what another finds, and redacting again is a no-op.
    std::vector<span> spans;
    std::vector<std::size_t> ats;
    if (postgres) {
        // libpq's rule: there is a user-info when an '@' comes before any '/'.
        const auto stop = url.find_first_of("@/", auth_start);
        if (stop != std::string_view::npos && url[stop] == '@') ats.push_back(stop);
    } else {
        // Ferry's Redis client reads the user-info up to the last '@' of the URL (a password
        // that was not percent-encoded may hold '/', '?', '#' or '@'); a URL parser stops at
        // the first. Both readings are masked; an '@' in a query over-masks, the safe side.
        for (const auto at : {url.find('@', auth_start), url.rfind('@')}) {
            if (at != std::string_view::npos && at >= auth_start) ats.push_back(at);
        }
    }
    // libpq looks for the query after the user-info; for other URLs a '?' in an unencoded
    // password may be read as one, which only masks more.
    query_secret_spans(url, postgres && !ats.empty() ? ats.front() + 1 : auth_start, spans);
    for (const auto at : ats) {
        const auto colon = url.find(':', auth_start);
        if (colon != std::string_view::npos && colon < at) {
            if (at > colon + 1) spans.emplace_back(colon + 1, at);
        } else if (!postgres && at > auth_start) {
            // A user-info without ':' is the password for Redis (redis://secret@host) and
            // often a token for HTTP (https://token@host); only libpq reads it as a user name.
            spans.emplace_back(auth_start, at);
        }
    }
    return masked(url, std::move(spans));
}

}  // namespace

std::string redact_url(std::string_view url) {
    // A mask can remove an '@' or ':' that decided where another reading ended, so one pass over
    // a URL with several of them may leave text the next pass would mask. Repeating until
    // nothing changes makes redaction idempotent; masks only ever hide more, so it settles fast.
    std::string current = redact_url_once(url);
    for (int pass = 0; pass < 16; ++pass) {
        auto next = redact_url_once(current);
        if (next == current) break;
        current = std::move(next);
    }
    return current;
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
