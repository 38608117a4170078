// ferryctl dlq list|show|replay|purge against a real PostgreSQL.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "ferry/outbox/migrate.hpp"
#include "ferry/retry/tables.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/run_command.hpp"
#include "ferry/test/scoped_schema.hpp"
#include "ferry/test/unique_name.hpp"

namespace {

using run_result = ferry::test::command_result;

run_result run(const std::string& args) {
    return ferry::test::run_command(std::string(FERRY_CTL_PATH) + " " + args + " 2>&1");
}

class DlqCliTest : public ::testing::Test {
protected:
    void SetUp() override {
        pqxx::connection c{ferry::test::pg_dsn()};
        (void)ferry::outbox::migrate(c, _schema.name());
        _config = "/tmp/" + ferry::test::unique_name("dlq") + ".yaml";
        std::ofstream f(_config);
        f << "postgres:\n  dsn: ${FERRY_TEST_PG_DSN}\n  schema: " << _schema.name() << "\n";
        ferry::retry::dead_letters dl(_schema.name());
        pqxx::work tx{c};
        for (int i = 0; i < 3; ++i) {
            ferry::retry::stored_message m;
            m.topic = i == 2 ? "payments" : "orders";
            m.partition = 1;
            m.offset = 10 + i;
            m.key = "k" + std::to_string(i);
            char id[40];
            std::snprintf(id, sizeof id, "0190a000-0000-7000-8000-%012d", i);
            m.message_id = id;
            m.payload = "{\"n\":" + std::to_string(i) + "}";
            m.headers = {{"traceparent", "00-x"}};
            dl.add(tx, i == 1 ? "other" : "g1", m, "retries exhausted after 5 attempts: boom", "x",
                   5, true, true);
        }
        tx.commit();
    }
    void TearDown() override { std::remove(_config.c_str()); }
    run_result ctl(const std::string& args) { return run("--config " + _config + " " + args); }
    long retry_rows() {
        pqxx::connection c{ferry::test::pg_dsn()};
        pqxx::read_transaction tx{c};
        return tx.exec("SELECT count(*) FROM \"" + _schema.name() + "\".retry")[0][0].as<long>();
    }

    ferry::test::scoped_schema _schema{"dlq"};
    std::string _config;
};

TEST_F(DlqCliTest, ListFiltersByGroupTopicAndKey) {
    auto r = ctl("dlq list");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("3 dead letter(s)"), std::string::npos) << r.output;
    r = ctl("dlq list --group g1 --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    int lines = 0;
    std::size_t pos = 0;
    while ((pos = r.output.find('\n', pos)) != std::string::npos) {
        ++lines;
        ++pos;
    }
    EXPECT_EQ(lines, 2) << r.output;
    EXPECT_NE(r.output.find("\"topic\":\"payments\""), std::string::npos);
    r = ctl("dlq list --topic orders --key k1");
    EXPECT_NE(r.output.find("1 dead letter(s)"), std::string::npos) << r.output;
    r = ctl("dlq list --since 2999-01-01T00:00:00Z");
    EXPECT_NE(r.output.find("0 dead letter(s)"), std::string::npos) << r.output;
}

TEST_F(DlqCliTest, ShowPrintsPayloadAndHeaders) {
    const auto list = ctl("dlq list --key k0 --json");
    const auto id =
        nlohmann::json::parse(list.output.substr(0, list.output.find('\n')))["id"].get<long long>();
    const auto r = ctl("dlq show " + std::to_string(id));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto j = nlohmann::json::parse(r.output);
    EXPECT_EQ(j["payload"], "{\"n\":0}");
    EXPECT_EQ(j["headers"]["traceparent"], "00-x");
    EXPECT_EQ(j["attempts"], 5);
    EXPECT_NE(ctl("dlq show 999999").exit_code, 0);
}

TEST_F(DlqCliTest, ReplayMovesIntoRetryOnceAndPurgeDeletes) {
    EXPECT_NE(ctl("dlq replay").exit_code, 0);  // needs an id or --all
    auto r = ctl("dlq replay --all --group g1 --topic orders");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("replayed 1 "), std::string::npos) << r.output;
    EXPECT_EQ(retry_rows(), 1);
    r = ctl("dlq replay --all --group g1 --topic orders");
    EXPECT_NE(r.output.find("replayed 0 "), std::string::npos) << r.output;
    r = ctl("dlq list");
    EXPECT_NE(r.output.find("2 dead letter(s)"), std::string::npos) << r.output;  // replayed hidden
    EXPECT_NE(ctl("dlq purge --all").exit_code, 0);                               // needs --yes
    r = ctl("dlq purge --all --yes --group other");
    EXPECT_NE(r.output.find("purged 1 "), std::string::npos) << r.output;
    r = ctl("dlq list --include-replayed");
    EXPECT_NE(r.output.find("2 dead letter(s)"), std::string::npos) << r.output;
}

}  // namespace
