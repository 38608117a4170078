// ferryctl against a real PostgreSQL: migrate (also two at once), status --json, and the
// errors an operator sees.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "ferry/test/env.hpp"
#include "ferry/test/run_command.hpp"
#include "ferry/test/scoped_schema.hpp"
#include "ferry/test/unique_name.hpp"

namespace {

using run_result = ferry::test::command_result;

run_result run(const std::string& args, const std::string& env = "") {
    return ferry::test::run_command(env + " " FERRY_CTL_PATH " " + args + " 2>&1");
}

class FerryctlTest : public ::testing::Test {
protected:
    void SetUp() override {
        _config = "/tmp/" + ferry::test::unique_name("ferryctl") + ".yaml";
        std::ofstream f(_config);
        f << "postgres:\n  dsn: ${FERRY_TEST_PG_DSN}\n  schema: " << _schema.name() << "\n";
    }
    void TearDown() override { std::remove(_config.c_str()); }

    run_result ctl(const std::string& args) { return run("--config " + _config + " " + args); }

    ferry::test::scoped_schema _schema{"ctl"};
    std::string _config;
};

}  // namespace

TEST_F(FerryctlTest, MigrateIsIdempotent) {
    auto r = ctl("migrate");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("applied 1"), std::string::npos) << r.output;
    r = ctl("migrate");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("up to date"), std::string::npos) << r.output;
}

TEST_F(FerryctlTest, MigrateOnlyRefusesAnUnknownModuleAndNamesTheKnownOnes) {
    auto r = ctl("migrate --only consumer,inboxes");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("unknown module \"inboxes\""), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("outbox, relay, wal, reconcile, consumer"), std::string::npos)
        << r.output;
    pqxx::connection conn{ferry::test::pg_dsn()};
    pqxx::nontransaction tx{conn};
    EXPECT_FALSE(tx.exec_params("SELECT count(*) > 0 FROM pg_namespace WHERE nspname = $1",
                                _schema.name())[0][0]
                     .as<bool>());
    r = ctl("migrate --only consumer");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("modules: consumer)"), std::string::npos) << r.output;
}

TEST_F(FerryctlTest, TwoMigratesAtOnceBothSucceedAndApplyOnce) {
    auto a = std::async(std::launch::async, [&] { return ctl("migrate"); });
    auto b = std::async(std::launch::async, [&] { return ctl("migrate"); });
    const auto ra = a.get(), rb = b.get();
    ASSERT_EQ(ra.exit_code, 0) << ra.output;
    ASSERT_EQ(rb.exit_code, 0) << rb.output;
    const int applied = (ra.output.find("applied") != std::string::npos) +
                        (rb.output.find("applied") != std::string::npos);
    EXPECT_EQ(applied, 1) << ra.output << rb.output;
}

TEST_F(FerryctlTest, StatusJsonCountsPendingMessages) {
    ASSERT_EQ(ctl("migrate").exit_code, 0);
    auto r = ctl("status --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(r.output);
    EXPECT_EQ(j.at("pending").get<long>(), 0);
    EXPECT_EQ(j.at("oldest_pending_age_s").get<double>(), 0.0);

    pqxx::connection conn{ferry::test::pg_dsn()};
    {
        pqxx::work tx{conn};
        for (int i = 0; i < 3; ++i) {
            tx.exec("SELECT \"" + _schema.name() + "\".enqueue('orders', 'k" + std::to_string(i) +
                    "', 'x'::bytea)");
        }
        tx.exec("UPDATE \"" + _schema.name() +
                "\".outbox SET created_at = created_at - interval '5 seconds'");
        tx.commit();
    }
    r = ctl("status --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    j = nlohmann::json::parse(r.output);
    EXPECT_EQ(j.at("pending").get<long>(), 3);
    EXPECT_GE(j.at("oldest_pending_age_s").get<double>(), 5.0);
    EXPECT_LT(j.at("oldest_pending_age_s").get<double>(), 60.0);
    EXPECT_EQ(j.at("schema").get<std::string>(), _schema.name());
}

TEST_F(FerryctlTest, StatusOnAnUnmigratedSchemaSaysToMigrate) {
    const auto r = ctl("status --json");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("ferryctl migrate"), std::string::npos) << r.output;
}

TEST(FerryctlErrorsTest, UnreachableDatabaseIsAClearErrorWithoutThePassword) {
    const auto r =
        run("migrate", "FERRY_POSTGRES_DSN='postgresql://app:hunter2secret@127.0.0.1:1/x'");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("cannot connect to PostgreSQL"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("hunter2secret"), std::string::npos) << r.output;
}

TEST(FerryctlErrorsTest, InvalidConfigExitsTwoWithEveryError) {
    const auto path = "/tmp/" + ferry::test::unique_name("badcfg") + ".yaml";
    {
        std::ofstream f(path);
        f << "postgres:\n  schema: Bad-Name\n  dns: x\nkafka:\n  compression: brotli\n";
    }
    const auto r = run("--config " + path + " migrate");
    std::remove(path.c_str());
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(":2:"), std::string::npos) << r.output;  // schema, line 2
    EXPECT_NE(r.output.find(":3:"), std::string::npos) << r.output;  // unknown key, line 3
    EXPECT_NE(r.output.find(":5:"), std::string::npos) << r.output;  // compression, line 5
}

TEST_F(FerryctlTest, HalfListShowsParkedMessagesAndOperatorsResolveThem) {
    ASSERT_EQ(ctl("migrate").exit_code, 0);
    pqxx::connection conn{ferry::test::pg_dsn()};
    std::string id;
    {
        pqxx::work tx{conn};
        const auto s = "\"" + _schema.name() + "\"";
        id =
            tx.exec(
                  "SELECT " + s +
                  ".prepare('payments', 'pay-1', 'x'::bytea, '{}', 'tx-1', 'payments')::text")[0][0]
                .as<std::string>();
        tx.exec("UPDATE " + s +
                ".half_message SET state = 'parked', check_count = 15, "
                "last_check_result = 'unknown: no live instance' WHERE message_id = '" +
                id + "'");
        tx.commit();
    }
    auto r = ctl("half list --state parked --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(r.output);
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(j[0].at("message_id"), id);
    EXPECT_EQ(j[0].at("state"), "parked");
    EXPECT_EQ(j[0].at("check_count"), 15);
    EXPECT_EQ(j[0].at("last_check_result"), "unknown: no live instance");
    EXPECT_EQ(nlohmann::json::parse(ctl("half list --state pending --json").output).size(), 0u);

    r = ctl("half commit " + id);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("committed"), std::string::npos) << r.output;
    pqxx::nontransaction tx{conn};
    EXPECT_EQ(tx.exec("SELECT decided_by FROM \"" + _schema.name() +
                      "\".half_message WHERE message_id = '" + id + "'")[0][0]
                  .as<std::string>(),
              "operator");
    EXPECT_EQ(tx.exec("SELECT count(*) FROM \"" + _schema.name() +
                      "\".outbox WHERE message_id = '" + id + "'")[0][0]
                  .as<int>(),
              1);

    r = ctl("half rollback " + id);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("already committed"), std::string::npos) << r.output;
    r = ctl("half commit not-a-uuid");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("is not a UUID"), std::string::npos) << r.output;
}

// Parks a message by hand the way the relay does (moves the outbox row, keeping its id).
static long long park_one(pqxx::connection& conn, const std::string& schema,
                          const std::string& key) {
    pqxx::work tx{conn};
    const auto s = "\"" + schema + "\"";
    tx.exec("SELECT " + s + ".enqueue('orders', '" + key + "', 'x'::bytea)");
    const auto id =
        tx.exec("WITH moved AS (DELETE FROM " + s + ".outbox WHERE key = '" + key +
                "' RETURNING *) INSERT INTO " + s +
                ".parked (id, message_id, topic, key, payload, headers, created_at, available_at, "
                "expires_at, reason, error_code) SELECT id, message_id, topic, key, payload, "
                "headers, "
                "created_at, available_at, expires_at, 'Broker: Message size too large', "
                "'MSG_SIZE_TOO_LARGE' FROM moved RETURNING id")[0][0]
            .as<long long>();
    tx.exec("SELECT " + s + ".enqueue('orders', '" + key + "', 'later'::bytea)");  // held behind it
    tx.commit();
    return id;
}

TEST_F(FerryctlTest, ParkedListRetryDiscardAndStatusCounts) {
    ASSERT_EQ(ctl("migrate").exit_code, 0);
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto a = park_one(conn, _schema.name(), "big-1");
    const auto b = park_one(conn, _schema.name(), "big-2");
    {
        pqxx::work tx{conn};
        tx.exec("INSERT INTO \"" + _schema.name() +
                "\".expired (id, message_id, topic, key, payload, headers, "
                "created_at, available_at) VALUES (999999, gen_random_uuid(), 'orders', 'old', "
                "'x', '{}', now(), now())");
        tx.commit();
    }
    auto status = nlohmann::json::parse(ctl("status --json").output);
    EXPECT_EQ(status.at("parked"), 2);
    EXPECT_EQ(status.at("expired"), 1);
    EXPECT_EQ(status.at("pending"), 2);  // the two held-back messages

    auto r = ctl("parked list --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(r.output);
    ASSERT_EQ(j.size(), 2u);
    EXPECT_EQ(j[0].at("id"), a);
    EXPECT_EQ(j[0].at("error_code"), "MSG_SIZE_TOO_LARGE");
    EXPECT_EQ(j[0].at("held_back"), 1);

    r = ctl("parked retry " + std::to_string(a));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    pqxx::nontransaction tx{conn};
    // Back in the outbox under its original id, ahead of the message that waited behind it.
    EXPECT_EQ(
        tx.exec("SELECT min(id) FROM \"" + _schema.name() + "\".outbox WHERE key = 'big-1'")[0][0]
            .as<long long>(),
        a);
    r = ctl("parked discard " + std::to_string(b));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    status = nlohmann::json::parse(ctl("status --json").output);
    EXPECT_EQ(status.at("parked"), 0);
    r = ctl("parked discard " + std::to_string(b));
    EXPECT_EQ(r.exit_code, 4) << r.output;  // no such message
    EXPECT_NE(r.output.find("no parked message has id"), std::string::npos) << r.output;
}

// expired list|show|redrive through ferry::reconcile::held_store: list and show in JSON, a
// redrive puts the message back into the outbox under its original message id without a TTL,
// and the errors name the cause with documented exit codes (2 bad input, 4 not found).
TEST_F(FerryctlTest, ExpiredListShowAndRedriveWithOriginalMessageId) {
    ASSERT_EQ(ctl("migrate").exit_code, 0);
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto s = "\"" + _schema.name() + "\"";
    std::string id, other;
    {
        pqxx::work tx{conn};
        // Expire two messages the way the relay does: move the outbox row into `expired`.
        for (const char* key : {"k-1", "k-2"}) {
            tx.exec("SELECT " + s + ".enqueue('orders', '" + key +
                    "', convert_to('{\"n\":1}', 'UTF8'), '{\"trace\":\"t-1\"}'::jsonb, NULL, "
                    "interval '1 millisecond')");
        }
        const auto moved =
            tx.exec("WITH gone AS (DELETE FROM " + s + ".outbox RETURNING *) INSERT INTO " + s +
                    ".expired (id, message_id, topic, key, payload, headers, created_at, "
                    "available_at, expires_at) SELECT id, message_id, topic, key, payload, "
                    "headers, created_at, available_at, expires_at FROM gone "
                    "RETURNING message_id::text, key");
        ASSERT_EQ(moved.size(), 2u);
        for (const auto& row : moved) {
            (row[1].as<std::string>() == "k-1" ? id : other) = row[0].as<std::string>();
        }
        tx.commit();
    }

    auto r = ctl("expired list --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(r.output);
    ASSERT_EQ(j.size(), 2u);
    EXPECT_EQ(j[0].at("topic"), "orders");
    EXPECT_FALSE(j[0].at("expires_at").is_null());
    r = ctl("expired list --key k-2 --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    j = nlohmann::json::parse(r.output);
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(j[0].at("message_id"), other);
    r = ctl("expired list");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("2 expired message(s)"), std::string::npos) << r.output;

    r = ctl("expired show " + id);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    j = nlohmann::json::parse(r.output);
    EXPECT_EQ(j.at("message_id"), id);
    EXPECT_EQ(j.at("key"), "k-1");
    EXPECT_EQ(j.at("payload"), "{\"n\":1}");
    EXPECT_EQ(j.at("payload_encoding"), "utf8");
    EXPECT_EQ(j.at("headers").at("trace"), "t-1");

    r = ctl("expired redrive " + id);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    {
        pqxx::nontransaction tx{conn};
        const auto row = tx.exec(
            "SELECT key, expires_at IS NULL, convert_from(payload, 'UTF8'), "
            "headers->>'trace' FROM " +
            s + ".outbox WHERE message_id = '" + id + "'");
        ASSERT_EQ(row.size(), 1u) << "not back in the outbox under its message id";
        EXPECT_EQ(row[0][0].as<std::string>(), "k-1");
        EXPECT_TRUE(row[0][1].as<bool>()) << "the TTL must be cleared or it expires again";
        EXPECT_EQ(row[0][2].as<std::string>(), "{\"n\":1}");
        EXPECT_EQ(row[0][3].as<std::string>(), "t-1");
        EXPECT_EQ(
            tx.exec("SELECT count(*) FROM " + s + ".expired WHERE message_id = '" + id + "'")[0][0]
                .as<int>(),
            0);
    }
    // Again: no longer expired -> exit 4 with the cause; the other one is untouched.
    r = ctl("expired redrive " + id);
    EXPECT_EQ(r.exit_code, 4) << r.output;
    EXPECT_NE(r.output.find("no expired message " + id), std::string::npos) << r.output;
    r = ctl("expired show 00000000-0000-0000-0000-000000000000");
    EXPECT_EQ(r.exit_code, 4) << r.output;
    r = ctl("expired redrive not-a-uuid");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("is not a message id"), std::string::npos) << r.output;
    j = nlohmann::json::parse(ctl("expired list --json").output);
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(j[0].at("message_id"), other);
}

TEST_F(FerryctlTest, ParkedShowAndHalfShow) {
    ASSERT_EQ(ctl("migrate").exit_code, 0);
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto parked = park_one(conn, _schema.name(), "big-1");
    auto r = ctl("parked show " + std::to_string(parked));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(r.output);
    EXPECT_EQ(j.at("id"), parked);
    EXPECT_EQ(j.at("error_code"), "MSG_SIZE_TOO_LARGE");
    EXPECT_EQ(j.at("held_back"), 1);
    EXPECT_EQ(j.at("payload"), "x");
    const std::string mid = j.at("message_id");
    r = ctl("parked show " + mid);  // by message id too
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(nlohmann::json::parse(r.output).at("id"), parked);
    r = ctl("parked show 424242");
    EXPECT_EQ(r.exit_code, 4) << r.output;
    EXPECT_NE(r.output.find("no parked message 424242"), std::string::npos) << r.output;
    r = ctl("parked show nonsense");
    EXPECT_EQ(r.exit_code, 2) << r.output;

    std::string id;
    {
        pqxx::work tx{conn};
        const auto s = "\"" + _schema.name() + "\"";
        id = tx.exec("SELECT " + s +
                     ".prepare('payments', 'pay-1', '\\xff00'::bytea, '{}', 'tx-9', "
                     "'payments')::text")[0][0]
                 .as<std::string>();
        tx.exec("UPDATE " + s +
                ".half_message SET check_count = 2, last_check_result = 'unknown: timeout' "
                "WHERE message_id = '" +
                id + "'");
        tx.commit();
    }
    r = ctl("half show " + id);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    j = nlohmann::json::parse(r.output);
    EXPECT_EQ(j.at("state"), "pending");
    EXPECT_EQ(j.at("tx_ref"), "tx-9");
    EXPECT_EQ(j.at("check_count"), 2);
    EXPECT_EQ(j.at("last_check_result"), "unknown: timeout");
    EXPECT_EQ(j.at("payload_encoding"), "base64");  // 0xff 0x00 is not UTF-8
    EXPECT_EQ(j.at("payload"), "/wA=");
    EXPECT_EQ(j.at("waiting_in_outbox"), false);
    r = ctl("half show 00000000-0000-0000-0000-000000000000");
    EXPECT_EQ(r.exit_code, 4) << r.output;
}

// ferryctl inbox prune runs the consumer's retention by hand: defaults from the consumers: entry
// (retention 2h, 10 rows per batch), batches repeated while full, flags override both.
TEST_F(FerryctlTest, InboxPruneDeletesOnlyRowsOlderThanTheRetentionInBatches) {
    ASSERT_EQ(ctl("migrate").exit_code, 0);
    {
        std::ofstream f(_config, std::ios::app);
        f << "consumers:\n  - group: inventory\n    topics: [orders]\n"
             "    inbox:\n      retention: 2h\n      prune_batch: 10\n";
    }
    const auto table = "\"" + _schema.name() + "\".inbox";
    pqxx::connection conn{ferry::test::pg_dsn()};
    auto count = [&] {
        pqxx::read_transaction tx{conn};
        return tx.exec("SELECT count(*) FROM " + table)[0][0].as<long>();
    };
    {
        pqxx::work tx{conn};
        // 25 rows ten days old, 5 one hour old, 3 fresh.
        tx.exec("INSERT INTO " + table +
                " (group_id, message_id, processed_at) SELECT 'inventory', gen_random_uuid(), "
                "now() - interval '10 days' FROM generate_series(1, 25)");
        tx.exec("INSERT INTO " + table +
                " (group_id, message_id, processed_at) SELECT 'inventory', gen_random_uuid(), "
                "now() - interval '1 hour' FROM generate_series(1, 5)");
        tx.exec("INSERT INTO " + table +
                " (group_id, message_id) SELECT 'inventory', gen_random_uuid() "
                "FROM generate_series(1, 3)");
        tx.commit();
    }
    ASSERT_EQ(count(), 33);

    auto r = ctl("inbox prune --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(r.output);
    EXPECT_EQ(j.at("deleted").get<long>(), 25);
    EXPECT_EQ(j.at("batches").get<long>(), 3);  // 10 + 10 + 5: repeated while full
    EXPECT_EQ(j.at("older_than").get<std::string>(), "2h");
    EXPECT_EQ(j.at("batch").get<long>(), 10);
    EXPECT_EQ(j.at("schema").get<std::string>(), _schema.name());
    EXPECT_EQ(count(), 8);

    // Nothing older than 2h is left: a second run deletes nothing.
    r = ctl("inbox prune --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(nlohmann::json::parse(r.output).at("deleted").get<long>(), 0);

    // Flags override the configuration; the text output says what was done.
    r = ctl("inbox prune --group inventory --older-than 30m --batch 100");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("deleted 5 row(s) older than 30m"), std::string::npos) << r.output;
    EXPECT_EQ(count(), 3);

    // Mistakes are exit 2 and name the flag; nothing is deleted.
    r = ctl("inbox prune --older-than 10s");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--older-than"), std::string::npos) << r.output;
    r = ctl("inbox prune --group nobody");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("nobody"), std::string::npos) << r.output;
    EXPECT_EQ(count(), 3);
}

// An unreachable database is exit 1 (try again), as for the other verbs.
TEST(FerryctlErrorsTest, InboxPruneWithoutDatabaseExitsOne) {
    const auto r =
        run("inbox prune", "FERRY_POSTGRES_DSN='postgresql://app:hunter2secret@127.0.0.1:1/x'");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_EQ(r.output.find("hunter2secret"), std::string::npos) << r.output;
}

// Every list command takes --json and prints what is stored (issue 14): half, parked and
// expired list print one JSON array, dlq list one object per line, report list the same JSON as
// --format json, retention run one array.
TEST_F(FerryctlTest, EveryListCommandPrintsJson) {
    ASSERT_EQ(ctl("migrate").exit_code, 0);
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto parked = park_one(conn, _schema.name(), "json-1");
    const std::string s = "\"" + _schema.name() + "\"";
    {
        pqxx::work tx{conn};
        tx.exec("SELECT " + s + ".prepare('orders', 'h', 'x'::bytea, '{}', 'tx-json')");
        tx.exec("INSERT INTO " + s +
                ".expired (id, message_id, topic, key, payload, headers, created_at, "
                "available_at) VALUES (424242, gen_random_uuid(), 'orders', 'e', 'x', '{}', now(), "
                "now())");
        tx.exec("INSERT INTO " + s +
                ".dead_letter (group_id, topic, partition, \"offset\", message_id, payload, "
                "reason) VALUES ('g-json', 'orders', 0, 7, gen_random_uuid(), 'x', 'handler')");
        tx.exec("INSERT INTO " + s +
                ".reconcile_run (scope, window_start, window_end, status, redrive, finished_at) "
                "VALUES ('g-json', now() - interval '1 hour', now(), 'succeeded', false, now())");
        tx.commit();
    }
    auto r = ctl("half list --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(r.output);
    ASSERT_EQ(j.size(), 1u) << r.output;
    EXPECT_EQ(j[0].at("tx_ref"), "tx-json");

    r = ctl("parked list --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    j = nlohmann::json::parse(r.output);
    ASSERT_EQ(j.size(), 1u) << r.output;
    EXPECT_EQ(j[0].at("id"), parked);

    r = ctl("expired list --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    j = nlohmann::json::parse(r.output);
    ASSERT_EQ(j.size(), 1u) << r.output;
    EXPECT_EQ(j[0].at("key"), "e");

    r = ctl("dlq list --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    j = nlohmann::json::parse(r.output.substr(0, r.output.find('\n')));
    EXPECT_EQ(j.at("group"), "g-json") << r.output;

    r = ctl("report list --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    j = nlohmann::json::parse(r.output);
    EXPECT_EQ(j, nlohmann::json::parse(ctl("report list --format json").output));
    ASSERT_EQ(j.at("runs").size(), 1u) << r.output;
    EXPECT_EQ(j["runs"][0].at("scope"), "g-json");

    r = ctl("retention run --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    j = nlohmann::json::parse(r.output);
    ASSERT_TRUE(j.is_array()) << r.output;
    EXPECT_EQ(j.size(), 7u) << r.output;
}
