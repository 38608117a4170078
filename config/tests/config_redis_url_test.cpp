// Every Redis URL form, accepted or refused with its reason, through configuration loading:
// redis.url uses the same parser as the Redis clients (ferry::internal::parse_redis_url), so
// this table is also what the dedup store and reconciliation accept.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ferry/config/config.hpp"

namespace {

using testing::HasSubstr;
using testing::Not;

struct url_case {
    std::string url;
    std::string reason;  // empty: accepted; otherwise a substring of the diagnostic
};

// Secrets in the table; none may appear in any diagnostic.
constexpr const char* k_secret = "hunter2";

const std::vector<url_case>& cases() {
    static const std::vector<url_case> all = {
        // accepted
        {"redis://127.0.0.1:6379/0", ""},
        {"redis://cache", ""},
        {"redis://cache:6380", ""},
        {"redis://cache/", ""},
        {"redis://cache:6379/15", ""},
        {"redis://:hunter2@cache:6379/0", ""},
        {"redis://hunter2@cache", ""},
        {"redis://ferry:hunter2@cache:6379/1", ""},
        {"redis://ferry:hunter2%40x%3Ay@cache", ""},
        {"redis://:pa/ss?hunter2@cache:6379/0", ""},
        {"redis://[::1]:6379/0", ""},
        {"redis://[::1]", ""},
        {"REDIS://cache:6379", ""},
        {"unix:///run/redis/redis.sock", ""},
        {"unix:///run/redis/redis.sock?db=3", ""},
        {"unix://ferry:hunter2@/run/redis/redis.sock?db=1", ""},
        {"unix://:hunter2@/run/redis/redis.sock", ""},
        // refused: scheme
        {"", "must not be empty"},
        {"cache:6379", "missing scheme"},
        {"rediss://cache:6380/0", "no TLS"},
        {"rediss://:hunter2@cache:6380/0", "docs/operations.md"},
        {"http://cache:6379", "unsupported scheme \"http\""},
        {"redis+sentinel://cache:26379", "unsupported scheme \"redis+sentinel\""},
        {"redis-cluster://cache:7000", "Cluster"},
        // refused: host and port
        {"redis://", "empty host"},
        {"redis://:hunter2@", "empty host"},
        {"redis://:6379/0", "empty host"},
        {"redis://ca che:6379", "bad host"},
        {"redis://cache:/0", "empty port"},
        {"redis://cache:0", "bad port \"0\""},
        {"redis://cache:65536", "bad port \"65536\""},
        {"redis://cache:63a9", "bad port \"63a9\""},
        {"redis://cache:+6379", "bad port"},
        {"redis://::1:6379", "in brackets"},
        {"redis://[::1", "unclosed '['"},
        {"redis://[::1]x", "after the IPv6 address"},
        {"redis://[zz]:6379", "bad IPv6 address"},
        // refused: db
        {"redis://cache:6379/x", "bad db index \"x\""},
        {"redis://cache:6379/-1", "bad db index"},
        {"redis://cache:6379/ 1", "bad db index"},
        {"redis://cache:6379/99999999999", "bad db index"},
        {"redis://cache:6379/0/1", "bad db index"},
        // refused: other parts
        {"redis://cache:6379/0?timeout=1", "query parameters are not supported"},
        {"redis://cache#hunter2", "fragment"},
        {"redis://ferry:@cache", "user name without a password"},
        {"redis://ferry:hunter2%zz@cache", "percent-encoding"},
        // refused: unix sockets
        {"unix://", "empty socket path"},
        {"unix:///", "empty socket path"},
        {"unix://localhost/run/redis.sock", "must be absolute"},
        {"unix:///run/redis.sock?db=x", "bad db index \"x\""},
        {"unix:///run/redis.sock?db=", "bad db index"},
        {"unix:///run/redis.sock?password=hunter2", "unknown query parameter \"password\""},
        {"unix:///run/redis.sock?db=1&db=2", "db given twice"},
        {"unix:///run/" + std::string(120, 's') + ".sock", "longer than 107 bytes"},
        {"unix:///run/redis/", "names a directory"},
    };
    return all;
}

ferry::config::load_result load_url(const std::string& url) {
    // Quoted as a YAML string, so '#' and ':' reach the validator unchanged.
    std::string escaped;
    for (char c : url) {
        if (c == '"' || c == '\\') escaped += '\\';
        escaped += c;
    }
    return ferry::config::load_string("redis:\n  url: \"" + escaped + "\"\n", "t.yaml",
                                      [](const std::string&) { return std::nullopt; });
}

TEST(ConfigRedisUrlTest, EveryFormAcceptedOrRefusedWithItsReason) {
    for (const auto& c : cases()) {
        SCOPED_TRACE("url: " + c.url);
        const auto r = load_url(c.url);
        if (c.reason.empty()) {
            EXPECT_TRUE(r.errors.empty()) << (r.errors.empty() ? "" : r.errors[0].to_string());
            EXPECT_EQ(r.config.redis.url, c.url);
            continue;
        }
        ASSERT_EQ(r.errors.size(), 1u);
        const auto& d = r.errors.front();
        EXPECT_EQ(d.key, "redis.url");
        EXPECT_EQ(d.line, 2);
        EXPECT_THAT(d.message, HasSubstr(c.reason));
        EXPECT_THAT(d.to_string(), Not(HasSubstr(k_secret)));
    }
}

TEST(ConfigRedisUrlTest, ReconcileGroupRedisUrlUsesTheSameCheck) {
    const auto r = ferry::config::load_string(
        "reconcile:\n  groups:\n    g:\n      topics: [t]\n      dedup: redis\n"
        "      redis_url: \"rediss://:hunter2@cache:6380\"\n",
        "t.yaml", [](const std::string&) { return std::nullopt; });
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_THAT(r.errors[0].key, HasSubstr("redis_url"));
    EXPECT_THAT(r.errors[0].message, HasSubstr("no TLS"));
    EXPECT_THAT(r.errors[0].to_string(), Not(HasSubstr(k_secret)));
}

TEST(ConfigRedisUrlTest, RenderRedactedMasksEveryCredentialForm) {
    for (const std::string url :
         {"redis://hunter2@cache:6379/0", "redis://ferry:hunter2@cache:6379/0",
          "unix://ferry:hunter2@/run/redis.sock?db=1"}) {
        const auto r = load_url(url);
        ASSERT_TRUE(r.errors.empty()) << url;
        const auto text = ferry::config::render_redacted(r.config);
        EXPECT_THAT(text, Not(HasSubstr(k_secret))) << url;
        EXPECT_THAT(text, HasSubstr("***")) << url;
    }
}

}  // namespace
