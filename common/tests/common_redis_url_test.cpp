// What parse_redis_url reads from each accepted form: the fields the Redis clients connect with.
// (Refusals and their reasons are tabled in config/tests/config_redis_url_test.cpp.)

#include <gtest/gtest.h>

#include "ferry/common/redact.hpp"
#include "ferry/internal/redis_url.hpp"

namespace {

using ferry::internal::parse_redis_url;
using ferry::internal::redis_target;

redis_target parsed(std::string_view url) {
    auto r = parse_redis_url(url);
    EXPECT_TRUE(r.ok()) << url << ": " << r.problem;
    return r.ok() ? *r.target : redis_target{};
}

TEST(RedisUrlTest, TcpDefaultsAndExplicitParts) {
    const auto d = parsed("redis://cache");
    EXPECT_FALSE(d.unix_socket);
    EXPECT_EQ(d.host, "cache");
    EXPECT_EQ(d.port, 6379);
    EXPECT_EQ(d.db, 0);
    EXPECT_TRUE(d.user.empty());
    EXPECT_TRUE(d.password.empty());
    EXPECT_EQ(d.where(), "cache:6379");

    const auto e = parsed("redis://10.0.0.7:6380/12");
    EXPECT_EQ(e.host, "10.0.0.7");
    EXPECT_EQ(e.port, 6380);
    EXPECT_EQ(e.db, 12);

    const auto v6 = parsed("redis://[::1]:7000/1");
    EXPECT_EQ(v6.host, "::1");
    EXPECT_EQ(v6.port, 7000);
    EXPECT_EQ(v6.where(), "[::1]:7000");
}

TEST(RedisUrlTest, UserInfoForms) {
    // Password only, both spellings: AUTH password.
    for (auto url : {"redis://:s3cret@cache", "redis://s3cret@cache"}) {
        const auto t = parsed(url);
        EXPECT_TRUE(t.user.empty()) << url;
        EXPECT_EQ(t.password, "s3cret") << url;
    }
    // ACL user: AUTH user password; the password may hold ':' and percent-escapes.
    const auto acl = parsed("redis://ferry:pa:ss%40x@cache:6379/2");
    EXPECT_EQ(acl.user, "ferry");
    EXPECT_EQ(acl.password, "pa:ss@x");
    EXPECT_EQ(acl.db, 2);
    // An unencoded '@' or '/' in the password: the user-info runs to the last '@'.
    const auto raw = parsed("redis://:p@s/s@cache:6379/3");
    EXPECT_EQ(raw.password, "p@s/s");
    EXPECT_EQ(raw.host, "cache");
    EXPECT_EQ(raw.db, 3);
    // No secret in where(); what redaction hides is exactly what the parser reads as a secret.
    EXPECT_EQ(raw.where().find("p@s"), std::string::npos);
    for (auto url :
         {"redis://:p@s/s@cache:6379/3", "redis://s3cret@cache",
          "redis://ferry:pa:ss%40x@cache:6379/2", "unix://ferry:s3cret@/run/redis.sock?db=1"}) {
        const auto t = parsed(url);
        EXPECT_EQ(ferry::redact_url(url).find(t.password), std::string::npos) << url;
    }
}

TEST(RedisUrlTest, UnixSocket) {
    const auto t = parsed("unix:///run/redis/redis.sock");
    EXPECT_TRUE(t.unix_socket);
    EXPECT_EQ(t.socket_path, "/run/redis/redis.sock");
    EXPECT_EQ(t.db, 0);
    EXPECT_EQ(t.where(), "unix:/run/redis/redis.sock");

    const auto u = parsed("unix://ferry:pw@/tmp/r.sock?db=4");
    EXPECT_EQ(u.socket_path, "/tmp/r.sock");
    EXPECT_EQ(u.user, "ferry");
    EXPECT_EQ(u.password, "pw");
    EXPECT_EQ(u.db, 4);
}

TEST(RedisUrlTest, RefusalsNeverQuoteTheUserInfo) {
    for (auto url :
         {"rediss://:s3cret@cache", "redis://:s3cret@", "redis://u:s3cret%z@cache",
          "redis://:s3cret@cache:port", "ftp://:s3cret@cache", "unix://:s3cret@relative/path"}) {
        const auto r = parse_redis_url(url);
        EXPECT_FALSE(r.ok()) << url;
        EXPECT_FALSE(r.problem.empty()) << url;
        EXPECT_EQ(r.problem.find("s3cret"), std::string::npos) << url << ": " << r.problem;
    }
}

}  // namespace
