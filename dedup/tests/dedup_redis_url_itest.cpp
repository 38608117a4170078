// Redis URLs against the real Redis 7 of tests/support/servers: an ACL user (AUTH user password)
// claims through redis_store, refused credentials and db indexes are permanent errors without
// the password, and a unix socket URL reaches the same server.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <cstdio>
#include <string>

#include "ferry/common/error.hpp"
#include "ferry/dedup/redis_store.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/unique_name.hpp"

using namespace std::chrono_literals;
using ferry::dedup::claim_status;
using ferry::dedup::complete_status;

namespace {

const char* k_id = "0190a000-0000-7000-8000-000000000001";

// A raw admin connection to the test Redis (the default user, as the harness starts it).
struct admin {
    ferry::test::redis_endpoint ep = ferry::test::redis_address();
    redisContext* c = redisConnect(ep.host.c_str(), ep.port);
    admin() {
        if (c == nullptr || c->err != 0) throw std::runtime_error("cannot reach the test Redis");
        if (!ep.password.empty()) (void)command("AUTH %s", ep.password.c_str());
    }
    ~admin() { redisFree(c); }
    admin(const admin&) = delete;
    admin& operator=(const admin&) = delete;

    // The reply as text ("OK", an error's text, a string, an integer), or "(nil)".
    template <typename... A>
    std::string command(const char* format, A... args) {
        auto* r = static_cast<redisReply*>(redisCommand(c, format, args...));
        if (r == nullptr) throw std::runtime_error(std::string("redis: ") + c->errstr);
        std::string out;
        if (r->type == REDIS_REPLY_INTEGER) {
            out = std::to_string(r->integer);
        } else if (r->type == REDIS_REPLY_ARRAY) {
            for (std::size_t i = 0; i < r->elements; ++i) {
                if (r->element[i]->str != nullptr) out += std::string(r->element[i]->str) + "\n";
            }
        } else if (r->str != nullptr) {
            out.assign(r->str, r->len);
        } else {
            out = "(nil)";
        }
        freeReplyObject(r);
        return out;
    }
    std::string tcp(const std::string& userinfo, int db) const {
        return "redis://" + userinfo + ep.host + ":" + std::to_string(ep.port) + "/" +
               std::to_string(db);
    }
};

// An ACL user that exists for one test.
struct acl_user {
    admin& a;
    std::string name = ferry::test::unique_name("ferrytest");
    std::string password = "pw-" + ferry::test::unique_name("s");
    explicit acl_user(admin& ad) : a(ad) {
        const auto r = a.command("ACL SETUSER %s on >%s ~* +@all", name.c_str(), password.c_str());
        if (r != "OK") throw std::runtime_error("ACL SETUSER: " + r);
    }
    ~acl_user() { (void)a.command("ACL DELUSER %s", name.c_str()); }
    acl_user(const acl_user&) = delete;
    acl_user& operator=(const acl_user&) = delete;
};

ferry::dedup::redis_store store_for(const std::string& url, const std::string& prefix) {
    ferry::dedup::redis_options o;
    o.url = url;
    o.key_prefix = prefix;
    o.connect_timeout = 5s;
    o.command_timeout = 10s;
    return ferry::dedup::redis_store(o);
}

// The error a first command raises, or a failure when there is none.
ferry::error first_error(ferry::dedup::redis_store& s) {
    try {
        (void)s.try_claim("g", k_id, 5s);
    } catch (const ferry::error& e) {
        return e;
    }
    ADD_FAILURE() << "expected ferry::error";
    return ferry::error(ferry::error_kind::retryable, "none", "none");
}

TEST(RedisUrlIntegrationTest, AclUserClaimsWithUserAndPassword) {
    admin a;
    acl_user u(a);
    const auto prefix = ferry::test::unique_name("acl");
    auto s = store_for(a.tcp(u.name + ":" + u.password + "@", 0), prefix);
    auto c = s.try_claim("g", k_id, 30s);
    ASSERT_EQ(c.status, claim_status::fresh);
    EXPECT_EQ(s.try_claim("g", k_id, 30s).status, claim_status::in_progress);
    ASSERT_EQ(s.complete(c), complete_status::completed);
    EXPECT_EQ(a.command("GET %s", s.key_of("g", k_id).c_str()), "done");
    // The connection really is the ACL user's, not the default user's.
    const auto clients = a.command("CLIENT LIST");
    EXPECT_NE(clients.find("user=" + u.name), std::string::npos) << clients;
}

TEST(RedisUrlIntegrationTest, WrongPasswordIsPermanentAndNeverEchoed) {
    admin a;
    acl_user u(a);
    const std::string wrong = "wr0ng-" + ferry::test::unique_name("pw");
    auto s = store_for(a.tcp(u.name + ":" + wrong + "@", 0), ferry::test::unique_name("bad"));
    const auto e = first_error(s);
    EXPECT_EQ(e.kind(), ferry::error_kind::permanent) << e.what();
    EXPECT_EQ(e.code(), "dedup.redis_auth");
    EXPECT_EQ(e.field(), "redis.url");
    const std::string what = e.what();
    EXPECT_NE(what.find("WRONGPASS"), std::string::npos) << what;
    EXPECT_NE(what.find(u.name), std::string::npos) << what;
    EXPECT_EQ(what.find(wrong), std::string::npos) << what;
    EXPECT_EQ(what.find(u.password), std::string::npos) << what;

    // A password alone for a default user that has none: refused, permanent, not echoed.
    auto p = store_for(a.tcp(wrong + "@", 0), ferry::test::unique_name("bad"));
    const auto e2 = first_error(p);
    EXPECT_EQ(e2.kind(), ferry::error_kind::permanent) << e2.what();
    EXPECT_EQ(e2.code(), "dedup.redis_auth");
    EXPECT_EQ(std::string(e2.what()).find(wrong), std::string::npos) << e2.what();
}

TEST(RedisUrlIntegrationTest, DbIndexBeyondTheServerIsPermanent) {
    admin a;
    auto s = store_for(a.tcp("", 4000), ferry::test::unique_name("db"));
    const auto e = first_error(s);
    EXPECT_EQ(e.kind(), ferry::error_kind::permanent) << e.what();
    EXPECT_EQ(e.code(), "dedup.redis_db");
}

TEST(RedisUrlIntegrationTest, MalformedUrlIsRefusedAtConstructionNamingTheField) {
    ferry::dedup::redis_options o;
    o.url = "rediss://:hunter2@cache:6380/0";
    o.url_field = "consumer.redis_url";
    try {
        ferry::dedup::redis_store s(o);
        FAIL() << "expected ferry::error";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.kind(), ferry::error_kind::permanent);
        EXPECT_EQ(e.code(), "dedup.redis_url");
        EXPECT_EQ(e.field(), "consumer.redis_url");
        const std::string what = e.what();
        EXPECT_NE(what.find("no TLS"), std::string::npos) << what;
        EXPECT_EQ(what.find("hunter2"), std::string::npos) << what;
    }
}

TEST(RedisUrlIntegrationTest, UnixSocketWithAclUserAndDb) {
    admin a;
    const auto conf = a.command("CONFIG GET unixsocket");  // "unixsocket\n<path>\n"
    const auto nl = conf.find('\n');
    const auto path = nl == std::string::npos ? "" : conf.substr(nl + 1, conf.size() - nl - 2);
    if (path.empty()) {
        GTEST_SKIP() << "this Redis has no unixsocket (tests/support/servers configures one; an "
                        "external FERRY_TEST_REDIS_URL server may not)";
    }
    acl_user u(a);
    const auto prefix = ferry::test::unique_name("sock");
    auto s = store_for("unix://" + u.name + ":" + u.password + "@" + path + "?db=3", prefix);
    auto c = s.try_claim("g", k_id, 30s);
    ASSERT_EQ(c.status, claim_status::fresh);
    ASSERT_EQ(s.complete(c), complete_status::completed);
    // The mark is in db 3 of the same server, not in db 0.
    EXPECT_EQ(a.command("EXISTS %s", s.key_of("g", k_id).c_str()), "0");
    ASSERT_EQ(a.command("SELECT 3"), "OK");
    EXPECT_EQ(a.command("GET %s", s.key_of("g", k_id).c_str()), "done");
    (void)a.command("SELECT 0");
}

}  // namespace
