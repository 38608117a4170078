// The shared PostgreSQL helpers (common/internal) against a real server: array literals survive
// a round trip unchanged, connect_unique() applies its session settings, and a failed connect
// names the cause without the connection string.
#include <gtest/gtest.h>

#include "ferry/common/error.hpp"
#include "ferry/internal/pg_array.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/test/env.hpp"

using namespace std::chrono_literals;

TEST(PqHelpersTest, ArrayLiteralsRoundTrip) {
    auto conn = ferry::internal::connect_unique(ferry::test::pg_dsn(), {}, "test");
    const std::vector<std::string> nasty{
        "plain",    "",        "NULL",        "with space", "a,b",
        "{braces}", "quote\"", "back\\slash", "\\\"",       "\xc3\xa9t\xc3\xa9",
        "new\nline"};
    pqxx::work tx{*conn};
    const auto r = ferry::internal::exec(
        tx, "SELECT x, x IS NULL FROM unnest($1::text[]) WITH ORDINALITY AS t(x, n) ORDER BY n",
        ferry::internal::array_literal(nasty));
    ASSERT_EQ(r.size(), nasty.size());
    for (std::size_t i = 0; i < nasty.size(); ++i) {
        EXPECT_FALSE(r[i][1].as<bool>()) << i;
        EXPECT_EQ(r[i][0].as<std::string>(), nasty[i]) << i;
    }
    const auto n = ferry::internal::exec(
        tx, "SELECT count(*) FILTER (WHERE x IS NULL), count(*) FROM unnest($1::text[]) AS x",
        ferry::internal::array_literal(
            std::vector<std::optional<std::string>>{"a", std::nullopt, "NULL"}));
    EXPECT_EQ(n[0][0].as<int>(), 1);
    EXPECT_EQ(n[0][1].as<int>(), 3);
    const auto sum = ferry::internal::exec(
        tx, "SELECT sum(x) FROM unnest($1::bigint[]) AS x",
        ferry::internal::array_literal(std::vector<long long>{1, -2, 5000000000LL}));
    EXPECT_EQ(sum[0][0].as<long long>(), 4999999999LL);
}

TEST(PqHelpersTest, ConnectAppliesSessionSettings) {
    ferry::internal::session_settings s;
    s.statement_timeout = 1234ms;
    s.lock_timeout = 250ms;
    s.idle_in_transaction_timeout = 60s;
    s.application_name = "ferry-test's \"app\"";
    s.read_only = true;
    s.asynchronous_commit = true;
    auto conn = ferry::internal::connect_unique(ferry::test::pg_dsn(), s, "test");
    pqxx::nontransaction tx{*conn};
    const auto r = tx.exec(
        "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), "
        "current_setting('idle_in_transaction_session_timeout'), "
        "current_setting('application_name'), current_setting('default_transaction_read_only'), "
        "current_setting('synchronous_commit')");
    EXPECT_EQ(r[0][0].as<std::string>(), "1234ms");
    EXPECT_EQ(r[0][1].as<std::string>(), "250ms");
    EXPECT_EQ(r[0][2].as<std::string>(), "1min");
    EXPECT_EQ(r[0][3].as<std::string>(), "ferry-test's \"app\"");
    EXPECT_EQ(r[0][4].as<std::string>(), "on");
    EXPECT_EQ(r[0][5].as<std::string>(), "off");
    // The statement timeout is live: a longer statement is cancelled.
    EXPECT_THROW(tx.exec("SELECT pg_sleep(5)"), pqxx::sql_error);
}

TEST(PqHelpersTest, DefaultsLeaveTheServerSettingsAlone) {
    auto plain = ferry::internal::connect_unique(ferry::test::pg_dsn(), {}, "test");
    pqxx::nontransaction tx{*plain};
    EXPECT_EQ(tx.exec("SELECT current_setting('statement_timeout')")[0][0].as<std::string>(), "0");
    EXPECT_EQ(
        tx.exec("SELECT current_setting('default_transaction_read_only')")[0][0].as<std::string>(),
        "off");
    EXPECT_EQ(tx.exec("SELECT current_setting('synchronous_commit')")[0][0].as<std::string>(),
              "on");
}

TEST(PqHelpersTest, AFailedConnectNamesTheCauseNotTheDsn) {
    ferry::internal::session_settings s;
    s.connect_timeout = 2s;
    try {
        (void)ferry::internal::connect_unique(
            "host=127.0.0.1 port=1 user=nobody password=s3cret-pw dbname=x", s, "mymodule");
        FAIL() << "connected to port 1";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "mymodule.connect");
        EXPECT_EQ(e.kind(), ferry::error_kind::retryable);
        EXPECT_EQ(e.field(), "postgres.dsn");
        EXPECT_EQ(std::string(e.what()).find("s3cret-pw"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("cannot connect to PostgreSQL"), std::string::npos);
    }
}
