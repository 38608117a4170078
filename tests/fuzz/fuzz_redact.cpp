// Fuzzes secret redaction (ferry::redact_dsn, ferry::redact_url), which stands between every
// connection string and the logs, error messages and `ferryctl config show`.
//
// Invariants, beyond "no crash":
//   1. Idempotent: redacting twice gives what redacting once gave.
//   2. DSNs, judged by libpq itself (PQconninfoParse): when libpq reads a non-empty secret
//      option (password, sslpassword) from the input, it reads the redacted text too, and every
//      secret option there is "***". So the redactor cannot disagree with libpq about where a
//      value starts and ends (quotes, backslash escapes, percent-encoding, URIs).
//   3. URLs (redis, http, ...), built from parts so the secret is known: scheme://[user:]SECRET@
//      rest, where only the rest holds no '@' (so every parser agrees where the user-info ends).
//      When the secret occurs nowhere else in the URL, the redacted URL does not contain it. A
//      user-info without ':' counts as a secret too: Ferry's Redis client sends it as the password,
//      and tokens travel as http user names.
#include <fuzzer/FuzzedDataProvider.h>
#include <libpq-fe.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "ferry/common/redact.hpp"
#include "fuzz_check.hpp"

namespace {

using ferry::fuzz::check;
using ferry::fuzz::fail;

// The options libpq parses from `conninfo`, or nullopt when libpq rejects it.
std::optional<std::map<std::string, std::string>> libpq_options(const std::string& conninfo) {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
    if (err != nullptr) PQfreemem(err);
    if (opts == nullptr) return std::nullopt;
    std::map<std::string, std::string> out;
    for (auto* o = opts; o->keyword != nullptr; ++o) {
        if (o->val != nullptr) out[o->keyword] = o->val;
    }
    PQconninfoFree(opts);
    return out;
}

std::size_t occurrences(std::string_view hay, std::string_view needle) {
    std::size_t n = 0;
    for (auto pos = hay.find(needle); pos != std::string_view::npos;
         pos = hay.find(needle, pos + 1)) {
        ++n;
    }
    return n;
}

void check_dsn(const std::string& dsn) {
    const auto once = ferry::redact_dsn(dsn);
    check(ferry::redact_dsn(once) == once, "redact_dsn is idempotent", dsn + "\n-> " + once);
    if (dsn.find('\0') != std::string::npos) return;  // libpq reads C strings
    const auto in = libpq_options(dsn);
    if (!in) return;
    bool has_secret = false;
    for (const auto& [k, v] : *in) has_secret |= ferry::is_secret_key(k) && !v.empty();
    if (!has_secret) return;
    const auto out = libpq_options(once);
    if (!out) fail("libpq reads the redacted DSN when it read the original", dsn + "\n-> " + once);
    for (const auto& [k, v] : *out) {
        if (ferry::is_secret_key(k) && !v.empty() && v != "***") {
            fail("libpq finds no secret in the redacted DSN",
                 dsn + "\n-> " + once + "\nlibpq " + k + "=" + v);
        }
    }
}

void check_url(FuzzedDataProvider& in) {
    static const char* const schemes[] = {"redis", "rediss", "unix", "https", "http", "kafka"};
    const std::string scheme = in.PickValueInArray(schemes);
    const bool with_user = in.ConsumeBool();
    std::string user;
    for (char c : in.ConsumeRandomLengthString(32)) {
        if (c != ':' && c != '@' && c != '/' && c != '?' && c != '#') user += c;
    }
    std::string secret;
    for (char c : in.ConsumeRandomLengthString(64)) {
        // Without a user, a ':' would make the part before it a user name, not the secret.
        if (c != '@' && (with_user || c != ':')) secret += c;
    }
    std::string rest;
    for (char c : in.ConsumeRemainingBytesAsString()) {
        if (c != '@') rest += c;
    }
    const std::string userinfo = with_user ? user + ":" + secret : secret;
    const std::string url = scheme + "://" + userinfo + "@" + rest;

    const auto once = ferry::redact_url(url);
    check(ferry::redact_url(once) == once, "redact_url is idempotent", url + "\n-> " + once);
    // A secret holding '*' can match the mask plus its neighbours in a correct output.
    if (secret.size() < 3 || secret.find('*') != std::string::npos ||
        occurrences(url, secret) != 1) {
        return;
    }
    if (once.find(secret) != std::string::npos) {
        fail("redact_url removes the secret", url + "\n-> " + once + "\nsecret: " + secret);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    // The first byte picks the mode, so one corpus serves both.
    if (data[0] % 2 == 0) {
        const std::string dsn(reinterpret_cast<const char*>(data) + 1, size - 1);
        check_dsn(dsn);
        const auto u = ferry::redact_url(dsn);
        check(ferry::redact_url(u) == u, "redact_url is idempotent", dsn + "\n-> " + u);
    } else {
        FuzzedDataProvider in(data + 1, size - 1);
        check_url(in);
    }
    return 0;
}
