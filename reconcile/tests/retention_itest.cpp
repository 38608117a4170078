// Retention of every table that keeps rows after a message's life ended (issue 14), on the real
// PostgreSQL: each table is filled past its window, the job runs (in process, through ferryctl,
// and inside ferry-relay on its schedule), and what is left is exactly the rows inside the
// window plus the rows retention must never touch (pending/parked half messages, unreplayed
// dead letters, open check-back requests, the latest report of each scope, parked messages).
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <regex>
#include <thread>

#include "ferry/config/config.hpp"
#include "ferry/outbox/migrate.hpp"
#include "ferry/reconcile/retention_from_config.hpp"
#include "ferry/test/child_process.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/run_command.hpp"
#include "ferry/test/scoped_schema.hpp"
#include "ferry/test/unique_name.hpp"

namespace {

using namespace std::chrono_literals;

// Rows past the window and inside it, per pruned table; the batch is small so a run takes
// several batches (23 = 3 full batches of 7 and a short one of 2).
constexpr int k_old = 23;
constexpr int k_fresh = 5;
constexpr long long k_batch = 7;

const std::vector<std::string> k_tables{"half_message", "expired",       "parked",
                                        "dead_letter",  "check_request", "reconcile_item",
                                        "reconcile_run"};

// What expect_bounded() counts per table once every window is applied.
const std::map<std::string, long long> k_bounded{
    {"half_message", k_fresh + 2}, {"expired", k_fresh},           {"parked", 1},
    {"dead_letter", k_fresh + 1},  {"check_request", k_fresh + 1}, {"reconcile_item", k_fresh + 1},
    {"reconcile_run", k_fresh + 1}};

class RetentionTest : public ::testing::Test {
protected:
    void SetUp() override {
        _conn = std::make_unique<pqxx::connection>(ferry::test::pg_dsn());
        (void)ferry::outbox::migrate(*_conn, s());
        _config = "/tmp/" + ferry::test::unique_name("retention") + ".yaml";
    }
    void TearDown() override { std::remove(_config.c_str()); }

    const std::string& s() const { return _schema.name(); }
    std::string q() const { return "\"" + s() + "\""; }

    void sql(const std::string& statement) {
        pqxx::work tx{*_conn};
        tx.exec(statement);
        tx.commit();
    }
    long long count(const std::string& table, const std::string& where = "true") {
        pqxx::read_transaction tx{*_conn};
        return tx.exec("SELECT count(*) FROM " + q() + "." + table + " WHERE " + where)[0][0]
            .as<long long>();
    }

    // `n` rows per table aged `age` (a PostgreSQL interval), plus the rows that must stay.
    void fill(int n, const std::string& age) {
        const std::string t = "now() - interval '" + age + "'";
        const std::string gen = " FROM generate_series(1, " + std::to_string(n) + ") g";
        sql("INSERT INTO " + q() +
            ".half_message (message_id, topic, key, payload, tx_ref, producer_group, state, "
            "prepared_at, decided_at, decided_by) SELECT gen_random_uuid(), 't', 'k', 'p', 'tx', "
            "'pg', CASE WHEN g % 2 = 0 THEN 'committed' ELSE 'rolled_back' END, " +
            t + ", " + t + ", 'producer'" + gen);
        sql("INSERT INTO " + q() +
            ".expired (id, message_id, topic, key, payload, headers, created_at, available_at, "
            "expired_at) SELECT nextval('" +
            q() +
            ".retention_ids'), gen_random_uuid(), 't', 'k', "
            "'p', '{}', " +
            t + ", " + t + ", " + t + gen);
        sql("INSERT INTO " + q() +
            ".dead_letter (group_id, topic, partition, \"offset\", message_id, payload, reason, "
            "dead_at, replayed_at) SELECT 'g', 't', 0, g, gen_random_uuid(), 'p', 'handler', " +
            t + ", " + t + gen);
        sql("INSERT INTO " + q() +
            ".check_request (message_id, producer_group, created_at, deadline, answered_at, "
            "answer) SELECT gen_random_uuid(), 'pg', " +
            t + ", " + t + " + interval '5 s', " + t + " + interval '1 s', 'commit'" + gen);
        // One run per row, each with one item, in a scope whose later run is the latest.
        sql("WITH r AS (INSERT INTO " + q() +
            ".reconcile_run (scope, window_start, window_end, started_at, finished_at, status, "
            "redrive) SELECT 'scope-a', " +
            t + ", " + t + ", " + t + ", " + t + ", 'succeeded', false" + gen +
            " RETURNING id) INSERT INTO " + q() +
            ".reconcile_item (run_id, kind, message_id) SELECT id, 'missing', "
            "gen_random_uuid() FROM r");
    }

    // Old rows retention must keep, whatever their age.
    void fill_kept() {
        const std::string t = "now() - interval '30 days'";
        sql("INSERT INTO " + q() +
            ".half_message (message_id, topic, key, payload, tx_ref, producer_group, state, "
            "prepared_at) VALUES (gen_random_uuid(), 't', 'k', 'p', 'tx', 'pg', 'pending', " +
            t + "), (gen_random_uuid(), 't', 'k', 'p', 'tx', 'pg', 'parked', " + t + ")");
        sql("INSERT INTO " + q() +
            ".dead_letter (group_id, topic, partition, \"offset\", message_id, payload, reason, "
            "dead_at, blocks_key) VALUES ('g', 't', 0, 1, gen_random_uuid(), 'p', 'poison', " +
            t + ", true)");
        sql("INSERT INTO " + q() +
            ".check_request (message_id, producer_group, created_at, deadline) VALUES "
            "(gen_random_uuid(), 'pg', " +
            t + ", now() + interval '1 hour')");
        sql("INSERT INTO " + q() +
            ".parked (id, message_id, topic, key, payload, headers, created_at, available_at, "
            "parked_at, reason, error_code) VALUES (nextval('" +
            q() + ".retention_ids'), gen_random_uuid(), 't', 'k', 'p', '{}', " + t + ", " + t +
            ", " + t + ", 'refused', 'MSG_SIZE_TOO_LARGE')");
        // The only (hence latest) succeeded run of scope-b, with an item: kept with its item.
        sql("WITH r AS (INSERT INTO " + q() +
            ".reconcile_run (scope, window_start, window_end, started_at, finished_at, status, "
            "redrive) VALUES ('scope-b', " +
            t + ", " + t + ", " + t + ", " + t +
            ", 'succeeded', false) RETURNING id) INSERT INTO " + q() +
            ".reconcile_item (run_id, kind, message_id) SELECT id, 'parked', gen_random_uuid() "
            "FROM r");
    }

    void prepare_rows() {
        sql("CREATE SEQUENCE " + q() + ".retention_ids");
        fill(k_old, "2 hours");
        fill_kept();
        fill(k_fresh, "10 minutes");
    }

    void write_config(const std::string& extra) {
        std::ofstream f(_config);
        f << "postgres:\n  dsn: \"" << ferry::test::pg_dsn() << "\"\n  schema: " << s()
          << "\nretention:\n  batch: " << k_batch
          << "\n  half_message: 1h\n  expired: 1h\n  dead_letter: 1h\n  check_request: 1h\n"
          << extra << "reconcile:\n  retention: 1h\n";
    }

    ferry::config::ferry_config config() {
        write_config("");
        auto loaded = ferry::config::load_file(_config);
        EXPECT_TRUE(loaded.ok()) << (loaded.ok() ? "" : loaded.errors[0].to_string());
        return loaded.config;
    }

    // Every table holds only rows inside its window, plus the ones retention keeps.
    void expect_bounded() {
        EXPECT_EQ(count("half_message"), k_fresh + 2);  // + pending + parked
        EXPECT_EQ(count("half_message", "state IN ('pending', 'parked')"), 2);
        EXPECT_EQ(count("expired"), k_fresh);
        EXPECT_EQ(count("dead_letter"), k_fresh + 1);  // + the unreplayed blocking one
        EXPECT_EQ(count("dead_letter", "replayed_at IS NULL"), 1);
        EXPECT_EQ(count("check_request"), k_fresh + 1);  // + the open one
        EXPECT_EQ(count("check_request", "answered_at IS NULL"), 1);
        // scope-a: its fresh runs; scope-b: its only run, 30 days old, with its item.
        EXPECT_EQ(count("reconcile_run"), k_fresh + 1);
        EXPECT_EQ(count("reconcile_run", "scope = 'scope-b'"), 1);
        EXPECT_EQ(count("reconcile_item"), k_fresh + 1);
        EXPECT_EQ(count("parked"), 1);
        // Nothing pruned is older than its window (1 h); the kept rows are older on purpose.
        EXPECT_EQ(count("expired", "expired_at < now() - interval '1 hour'"), 0);
        EXPECT_EQ(count("half_message", "decided_at < now() - interval '1 hour'"), 0);
        EXPECT_EQ(count("dead_letter", "replayed_at < now() - interval '1 hour'"), 0);
    }

    ferry::test::scoped_schema _schema{"ret"};
    std::unique_ptr<pqxx::connection> _conn;
    std::string _config;
};

TEST_F(RetentionTest, EveryTableIsBoundedByItsWindowInBatches) {
    prepare_rows();
    const auto cfg = config();
    ferry::metrics::registry metrics;
    auto o = ferry::reconcile::retention_options(cfg);
    o.metrics = &metrics;
    ferry::outbox::retention_runner runner(ferry::reconcile::retained_tables(cfg), o);

    const auto results = runner.run_once(*_conn);
    ASSERT_EQ(results.size(), k_tables.size());
    std::map<std::string, ferry::outbox::retention_result> by_table;
    for (const auto& r : results) by_table[r.table] = r;
    for (const auto& name : {"half_message", "expired", "dead_letter", "check_request",
                             "reconcile_item", "reconcile_run"}) {
        SCOPED_TRACE(name);
        const auto& r = by_table.at(name);
        EXPECT_TRUE(r.pruned);
        EXPECT_EQ(r.deleted, k_old);
        // Bounded statements: 3 full batches of 7 and a short one.
        EXPECT_EQ(r.batches, 4);
        EXPECT_EQ(r.window, 1h);
    }
    EXPECT_FALSE(by_table.at("parked").pruned);
    EXPECT_EQ(by_table.at("parked").deleted, 0);
    expect_bounded();
    // The measurements are the tables' own.
    EXPECT_EQ(by_table.at("expired").after.rows, k_fresh);
    EXPECT_LT(by_table.at("expired").after.oldest_age_seconds, 3600);
    EXPECT_GT(by_table.at("expired").after.oldest_age_seconds, 500);
    EXPECT_GT(by_table.at("parked").after.oldest_age_seconds, 29 * 24 * 3600.0);

    // A second run finds nothing more to delete.
    for (const auto& r : runner.run_once(*_conn)) EXPECT_EQ(r.deleted, 0) << r.table;
    expect_bounded();
}

TEST_F(RetentionTest, ParkedRowsEndWhenRetriedOrDiscardedAndAreNeverPruned) {
    sql("INSERT INTO " + q() +
        ".parked (id, message_id, topic, key, payload, headers, created_at, available_at, "
        "parked_at, reason, error_code) SELECT g, gen_random_uuid(), 't', 'k' || g, 'p', '{}', "
        "now() - interval '90 days', now() - interval '90 days', now() - interval '90 days', "
        "'refused', 'MSG_SIZE_TOO_LARGE' FROM generate_series(1, 3) g");
    {
        pqxx::work tx{*_conn};
        EXPECT_TRUE(tx.exec("SELECT " + q() + ".retry_parked(1)")[0][0].as<bool>());
        EXPECT_TRUE(tx.exec("SELECT " + q() + ".discard_parked(2)")[0][0].as<bool>());
        tx.commit();
    }
    // Retry and discard leave no row behind: nothing accumulates for retention to delete.
    EXPECT_EQ(count("parked"), 1);
    EXPECT_EQ(count("outbox"), 1);  // the retried one, back in the outbox

    // The unresolved one, 90 days old, stays: it holds its key until an operator decides.
    const auto cfg = config();
    ferry::metrics::registry metrics;
    auto o = ferry::reconcile::retention_options(cfg);
    o.metrics = &metrics;
    ferry::outbox::retention_runner runner(ferry::reconcile::retained_tables(cfg), o);
    const auto r = runner.run_once(*_conn, "parked");
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].deleted, 0);
    EXPECT_EQ(r[0].after.rows, 1);
    EXPECT_EQ(count("parked"), 1);
}

TEST_F(RetentionTest, RunnerRefusesAnUnknownTableAndABadWindow) {
    const auto cfg = config();
    ferry::metrics::registry metrics;
    auto o = ferry::reconcile::retention_options(cfg);
    o.metrics = &metrics;
    ferry::outbox::retention_runner runner(ferry::reconcile::retained_tables(cfg), o);
    try {
        (void)runner.run_once(*_conn, "outbox");
        FAIL() << "no error for an unknown table";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "retention.unknown_table");
        EXPECT_NE(std::string(e.what()).find("dead_letter"), std::string::npos) << e.what();
    }
    auto tables = ferry::reconcile::retained_tables(cfg);
    tables[0].window = 0ms;
    try {
        ferry::outbox::retention_runner bad(tables, o);
        FAIL() << "no error for a zero window";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.field(), "retention.half_message");
    }
}

TEST_F(RetentionTest, FerryctlRetentionRunPrunesAndReportsEveryTable) {
    prepare_rows();
    write_config("");
    const std::string ctl = std::string(FERRY_CTL_PATH) + " --config " + _config;

    // One table only.
    auto r = ferry::test::run_command(ctl + " retention run --table expired --json 2>&1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(r.output);
    ASSERT_EQ(j.size(), 1u) << r.output;
    EXPECT_EQ(j[0]["table"], "expired");
    EXPECT_EQ(j[0]["deleted"], k_old);
    EXPECT_EQ(j[0]["batches"], 4);
    EXPECT_EQ(j[0]["rows"], k_fresh);
    EXPECT_EQ(count("half_message"), k_old + k_fresh + 2);  // untouched

    r = ferry::test::run_command(ctl + " retention run --json 2>&1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    j = nlohmann::json::parse(r.output);
    ASSERT_EQ(j.size(), k_tables.size()) << r.output;
    for (std::size_t i = 0; i < k_tables.size(); ++i) {
        EXPECT_EQ(j[i]["table"], k_tables[i]);
        const long long want = k_tables[i] == "expired" || k_tables[i] == "parked" ? 0 : k_old;
        EXPECT_EQ(j[i]["deleted"], want) << k_tables[i];
        EXPECT_TRUE(j[i].contains("oldest_age_seconds"));
    }
    expect_bounded();

    // Table output, and the errors: an unknown table names the known ones (exit 2).
    r = ferry::test::run_command(ctl + " retention run 2>&1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("reconcile_run"), std::string::npos) << r.output;
    r = ferry::test::run_command(ctl + " retention run --table outbox 2>&1");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("no retained table named \"outbox\""), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("check_request"), std::string::npos) << r.output;
}

// ferry-relay runs the job every retention.interval and exports, for every table, its rows and
// its oldest age on /metrics (the process registry).
TEST_F(RetentionTest, RelayRunsTheJobOnItsScheduleAndExportsEveryTable) {
    prepare_rows();
    write_config("  interval: 1s\nhttp:\n  listen: 127.0.0.1:0\nkafka:\n  brokers: \"" +
                 ferry::test::kafka_brokers() + "\"\n");
    ferry::test::child_options opts;
    opts.stderr_path = "/tmp/" + ferry::test::unique_name("relay") + ".log";
    ferry::test::child_process relay(FERRY_RELAY_PATH, {"--config", _config}, opts);
    const auto listen = relay.wait_for_prefix("http.listen=", 30s);
    ASSERT_TRUE(listen) << "see " << opts.stderr_path;
    const int port = std::stoi(listen->substr(listen->rfind(':') + 1));
    httplib::Client http("127.0.0.1", port);

    // Wait until every table has been pruned and measured after the prune.
    std::string body;
    std::map<std::string, double> rows, oldest;
    const std::regex series(
        R"re((ferry_retention_rows|ferry_retention_oldest_age_seconds)\{table="([a-z_]+)"\} ([0-9.e+-]+))re");
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline) {
        auto res = http.Get("/metrics");
        ASSERT_TRUE(res);
        ASSERT_EQ(res->status, 200);
        body = res->body;
        rows.clear();
        oldest.clear();
        for (std::sregex_iterator it(body.begin(), body.end(), series), end; it != end; ++it) {
            ((*it)[1] == "ferry_retention_rows" ? rows : oldest)[(*it)[2]] = std::stod((*it)[3]);
        }
        // Every table's gauge, not only a few: the relay's check-back scheduler prunes
        // check_request too, and a run whose SKIP LOCKED batch met the scheduler's open delete
        // measures the rows that delete has not committed yet. The next run (1 s) corrects it.
        if (std::all_of(k_tables.begin(), k_tables.end(), [&](const std::string& t) {
                return rows.count(t) && rows[t] == static_cast<double>(k_bounded.at(t));
            })) {
            break;
        }
        std::this_thread::sleep_for(250ms);
    }
    for (const auto& t : k_tables) {
        SCOPED_TRACE(t);
        ASSERT_TRUE(rows.count(t)) << body;
        ASSERT_TRUE(oldest.count(t)) << body;
        EXPECT_EQ(rows[t], static_cast<double>(count(t)));
    }
    expect_bounded();
    // Oldest ages: under the window where the kept rows are younger, 30 days where they are not.
    EXPECT_LT(oldest["expired"], 3600);
    EXPECT_GT(oldest["expired"], 500);
    EXPECT_GT(oldest["parked"], 29 * 24 * 3600.0);
    EXPECT_GT(oldest["dead_letter"], 29 * 24 * 3600.0);  // the unreplayed one
    EXPECT_NE(body.find("ferry_retention_deleted_total{table=\"half_message\"} 23"),
              std::string::npos)
        << body;
    EXPECT_TRUE(relay.shutdown(20s).success());
}

}  // namespace
