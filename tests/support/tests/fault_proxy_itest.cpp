// fault_proxy (integration): real PostgreSQL and Redis sessions through the proxy, so the faults
// scripts/chaos injects are shown to do what they claim to real clients.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <chrono>
#include <future>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "ferry/test/env.hpp"
#include "ferry/test/fault_proxy.hpp"

using namespace std::chrono_literals;
using ferry::test::fault_proxy;

namespace {

// host and port of a postgresql://user@host:port/db DSN.
std::pair<std::string, std::uint16_t> pg_endpoint(const std::string& dsn) {
    pqxx::connection c{dsn};
    return {c.hostname(), static_cast<std::uint16_t>(std::stoi(c.port()))};
}

std::string proxied_dsn(std::uint16_t port) {
    pqxx::connection c{ferry::test::pg_dsn()};
    return "host=127.0.0.1 port=" + std::to_string(port) + " dbname=" + c.dbname() +
           " user=" + c.username() + " connect_timeout=5";
}

}  // namespace

TEST(FaultProxyITest, PostgresSessionSurvivesLatencyStallsInBlackholeAndBreaksOnReset) {
    const auto [host, port] = pg_endpoint(ferry::test::pg_dsn());
    fault_proxy proxy({{"pg", host == "localhost" ? "127.0.0.1" : host, port, 0}}, -1);
    proxy.start();
    const auto dsn = proxied_dsn(proxy.port("pg"));
    pqxx::connection conn{dsn};
    EXPECT_EQ(pqxx::nontransaction{conn}.exec1("SELECT 41 + 1")[0].as<int>(), 42);

    ASSERT_EQ(proxy.command("latency pg 200"), "ok");
    auto t0 = std::chrono::steady_clock::now();
    (void)pqxx::nontransaction{conn}.exec1("SELECT 1");
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 400ms);
    ASSERT_EQ(proxy.command("heal pg"), "ok");

    // Blackhole: the query neither fails nor answers until the partition heals.
    ASSERT_EQ(proxy.command("blackhole pg"), "ok");
    auto answer = std::async(std::launch::async, [&] {
        return pqxx::nontransaction{conn}.exec1("SELECT 7")[0].as<int>();
    });
    EXPECT_EQ(answer.wait_for(1500ms), std::future_status::timeout);
    ASSERT_EQ(proxy.command("heal pg"), "ok");
    ASSERT_EQ(answer.wait_for(20s), std::future_status::ready);
    EXPECT_EQ(answer.get(), 7);

    // Reset: the session is gone (the client sees a broken connection); a new one works.
    ASSERT_EQ(proxy.command("reset pg"), "ok");
    EXPECT_THROW((void)pqxx::nontransaction{conn}.exec1("SELECT 1"), pqxx::broken_connection);
    pqxx::connection again{dsn};
    EXPECT_EQ(pqxx::nontransaction{again}.exec1("SELECT 2")[0].as<int>(), 2);

    // Refuse: new sessions fail at once; heal lets them through.
    ASSERT_EQ(proxy.command("refuse pg"), "ok");
    EXPECT_THROW(pqxx::connection{dsn}, pqxx::broken_connection);
    ASSERT_EQ(proxy.command("heal pg"), "ok");
    pqxx::connection third{dsn};
    EXPECT_TRUE(third.is_open());
}

TEST(FaultProxyITest, RedisThroughTheProxyWithLatencyAndReset) {
    const auto ep = ferry::test::redis_address();
    fault_proxy proxy({{"redis", ep.host == "localhost" ? "127.0.0.1" : ep.host,
                        static_cast<std::uint16_t>(ep.port), 0}},
                      -1);
    proxy.start();
    timeval tv{5, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", proxy.port("redis"), tv);
    ASSERT_TRUE(c != nullptr && c->err == 0);
    auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
    ASSERT_NE(r, nullptr);
    EXPECT_STREQ(r->str, "PONG");
    freeReplyObject(r);

    ASSERT_EQ(proxy.command("latency redis 250"), "ok");
    const auto t0 = std::chrono::steady_clock::now();
    r = static_cast<redisReply*>(redisCommand(c, "PING"));
    ASSERT_NE(r, nullptr);
    freeReplyObject(r);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 500ms);

    ASSERT_EQ(proxy.command("reset redis"), "ok");
    r = static_cast<redisReply*>(redisCommand(c, "PING"));
    EXPECT_EQ(r, nullptr) << "a reset connection still answered";
    if (r != nullptr) freeReplyObject(r);
    redisFree(c);
}
