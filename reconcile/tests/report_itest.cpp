// Stored reports read back three ways, all checked against the rows in reconcile_run /
// reconcile_item: `ferryctl reconcile run` / `report list|show` in table, JSON and CSV with
// filters, and ferry-relay's GET /reports and GET /reports/{id} (with reconcile.enabled, so the
// relay's own periodic run is what gets served). Also a Redis-only consumer group.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <httplib.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <set>
#include <sstream>
#include <thread>

#include "ferry/outbox/migrate.hpp"
#include "ferry/reconcile/reconcile.hpp"
#include "ferry/reconcile/report.hpp"
#include "ferry/test/child_process.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/run_command.hpp"
#include "ferry/test/scoped_schema.hpp"
#include "ferry/test/unique_name.hpp"
#include "ferry/wal/slot.hpp"

namespace {

using namespace std::chrono_literals;
namespace rc = ferry::reconcile;

using cmd_result = ferry::test::command_result;

cmd_result ferryctl(const std::string& args) {
    return ferry::test::run_command(std::string(FERRY_CTL_PATH) + " " + args + " 2>/dev/null");
}

std::vector<std::string> lines(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

class ReportTest : public ::testing::Test {
protected:
    void SetUp() override {
        _conn = std::make_unique<pqxx::connection>(ferry::test::pg_dsn());
        (void)ferry::outbox::migrate(*_conn, s());
        _topic = ferry::test::unique_name("rpt");
        _other_topic = ferry::test::unique_name("rpo");
        _group = ferry::test::unique_name("g");
        _config = "/tmp/" + ferry::test::unique_name("recon") + ".yaml";
    }
    void TearDown() override { std::remove(_config.c_str()); }

    const std::string& s() const { return _schema.name(); }
    std::string q() const { return "\"" + s() + "\""; }

    std::string publish(const std::string& topic, const std::string& key) {
        pqxx::work tx{*_conn};
        const auto id =
            tx.exec_params(
                  "INSERT INTO " + q() +
                      ".published (message_id, topic, key, partition, "
                      "\"offset\", created_at, published_at, relay_epoch, lease_group, "
                      "payload, headers) VALUES (" +
                      q() +
                      ".uuid_v7(), $1, $2, 0, 0, now() - "
                      "interval '10 min', now() - interval '10 min', 1, 0, 'p'::bytea, '{}') "
                      "RETURNING message_id::text",
                  topic, key)[0][0]
                .as<std::string>();
        tx.commit();
        return id;
    }
    void processed(const std::string& id) {
        pqxx::work tx{*_conn};
        tx.exec_params("INSERT INTO " + q() + ".inbox (group_id, message_id) VALUES ($1, $2)",
                       _group, id);
        tx.commit();
    }

    void write_config(const std::string& extra) {
        std::ofstream f(_config);
        f << "postgres:\n  dsn: \"" << ferry::test::pg_dsn() << "\"\n  schema: " << s()
          << "\nreconcile:\n  grace: 1s\n  window: 1h\n  redrive: false\n  groups:\n    " << _group
          << ":\n      topics: [" << _topic << "]\n"
          << extra;
    }

    ferry::test::scoped_schema _schema{"rpt"};
    std::unique_ptr<pqxx::connection> _conn;
    std::string _topic, _other_topic, _group, _config;
};

TEST_F(ReportTest, FerryctlRunsAndRendersTableJsonCsvWithFilters) {
    const auto a = publish(_topic, "a");
    const auto b = publish(_topic, "b,with \"comma\"");
    const auto ok = publish(_topic, "c");
    processed(ok);
    (void)publish(_other_topic, "z");  // another topic: not this group's business
    write_config("");

    auto r = ferryctl("--config " + _config + " reconcile run --format json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto j = nlohmann::json::parse(r.output);
    const auto run_id = j["run"]["id"].get<std::int64_t>();
    EXPECT_EQ(j["run"]["counts"]["missing"], 2);
    std::set<std::string> ids;
    for (const auto& i : j["items"]) {
        EXPECT_EQ(i["kind"], "missing");
        EXPECT_EQ(i["action"], "report_only");
        EXPECT_EQ(i["group"], _group);
        ids.insert(i["message_id"].get<std::string>());
    }
    EXPECT_EQ(ids, (std::set<std::string>{a, b}));

    // What the store holds is what every format shows.
    rc::report_store store(ferry::test::pg_dsn(), s());
    const auto run = store.get(run_id);
    ASSERT_TRUE(run);
    const auto items = store.items(run_id);
    ASSERT_EQ(items.size(), 2u);
    EXPECT_EQ(nlohmann::json::parse(rc::report_json(*run, items)), j);

    r = ferryctl("--config " + _config + " report show " + std::to_string(run_id) +
                 " --format csv");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto l = lines(r.output);
    ASSERT_EQ(l.size(), 3u) << r.output;
    EXPECT_EQ(l[0], "kind,group,message_id,topic,key,event_at,action,detail");
    for (const auto& it : items) {
        const auto want = "missing," + _group + "," + it.message_id + "," + _topic + ",";
        EXPECT_TRUE(l[1].rfind(want, 0) == 0 || l[2].rfind(want, 0) == 0) << r.output;
    }
    EXPECT_NE(r.output.find("\"b,with \"\"comma\"\"\""), std::string::npos) << r.output;

    r = ferryctl("--config " + _config + " report show " + std::to_string(run_id));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("run " + std::to_string(run_id)), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(a), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(b), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("missing=2"), std::string::npos) << r.output;

    // list: table, csv, json, and the filters.
    r = ferryctl("--config " + _config + " report list --format csv");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    l = lines(r.output);
    ASSERT_EQ(l.size(), 2u) << r.output;
    EXPECT_EQ(l[1].substr(0, l[1].find(',')), std::to_string(run_id));
    r = ferryctl("--config " + _config + " report list --format json --kind missing --group " +
                 _group + " --topic " + _topic);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(nlohmann::json::parse(r.output)["runs"].size(), 1u);
    r = ferryctl("--config " + _config + " report list --format json --kind expired");
    EXPECT_EQ(nlohmann::json::parse(r.output)["runs"].size(), 0u) << r.output;
    r = ferryctl("--config " + _config + " report list --format json --since 2999-01-01");
    EXPECT_EQ(nlohmann::json::parse(r.output)["runs"].size(), 0u) << r.output;
    r = ferryctl("--config " + _config + " report list");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(lines(r.output).size(), 2u) << r.output;
    r = ferryctl("--config " + _config + " report show " + std::to_string(run_id) +
                 " --format json --kind stuck_half");
    EXPECT_EQ(nlohmann::json::parse(r.output)["items"].size(), 0u) << r.output;
    r = ferryctl("--config " + _config + " report show 999999999");
    EXPECT_EQ(r.exit_code, 2);

    // Another run holds the lock: ferryctl says so and exits 3, nothing is recorded.
    {
        pqxx::connection holder{ferry::test::pg_dsn()};
        pqxx::nontransaction tx{holder};
        tx.exec_params("SELECT pg_advisory_lock(hashtext('ferry.reconcile'), hashtext($1))", s());
        const auto before = store.list().size();
        r = ferryctl("--config " + _config + " reconcile run");
        EXPECT_EQ(r.exit_code, 3) << r.output;
        EXPECT_EQ(store.list().size(), before);
    }

    // The demo's exact call.
    r = ferryctl("--config " + _config + " reconcile run --format table");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("missing=2"), std::string::npos) << r.output;
}

TEST_F(ReportTest, RelayServesReportsOverHttpAndExportsMetrics) {
    const auto a = publish(_topic, "a");
    write_config(
        "  enabled: true\n  interval: 1s\nhttp:\n  listen: 127.0.0.1:0\nkafka:\n  "
        "brokers: \"" +
        ferry::test::kafka_brokers() + "\"\n");
    ferry::test::child_options opts;
    opts.stderr_path = "/tmp/" + ferry::test::unique_name("relay") + ".log";
    ferry::test::child_process relay(FERRY_RELAY_PATH, {"--config", _config}, opts);
    const auto listen = relay.wait_for_prefix("http.listen=", 20s);
    ASSERT_TRUE(listen);
    const int port = std::stoi(listen->substr(listen->rfind(':') + 1));
    httplib::Client http("127.0.0.1", port);

    nlohmann::json runs;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
        auto res = http.Get("/reports");
        ASSERT_TRUE(res);
        ASSERT_EQ(res->status, 200);
        runs = nlohmann::json::parse(res->body)["runs"];
        // A run is listed from its start; compare it only once it has finished, or the store
        // read below may see it finish after the HTTP read (a flaky "running" vs "succeeded").
        if (!runs.empty() && runs[0]["status"] != "running") break;
        std::this_thread::sleep_for(200ms);
    }
    ASSERT_FALSE(runs.empty());
    ASSERT_NE(runs[0]["status"], "running") << runs.dump();
    const auto id = runs[0]["id"].get<std::int64_t>();

    rc::report_store store(ferry::test::pg_dsn(), s());
    EXPECT_EQ(nlohmann::json::parse(rc::runs_json(store.list()))["runs"].back(), runs.back());
    auto res = http.Get(("/reports/" + std::to_string(id)).c_str());
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200);
    const auto report = nlohmann::json::parse(res->body);
    EXPECT_EQ(report, nlohmann::json::parse(rc::report_json(*store.get(id), store.items(id))));
    ASSERT_EQ(report["items"].size(), 1u);
    EXPECT_EQ(report["items"][0]["message_id"], a);
    EXPECT_EQ(report["items"][0]["kind"], "missing");

    res = http.Get(("/reports/" + std::to_string(id) + "?kind=expired").c_str());
    ASSERT_TRUE(res);
    EXPECT_EQ(nlohmann::json::parse(res->body)["items"].size(), 0u);
    res = http.Get("/reports/999999999");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 404);

    res = http.Get("/metrics");
    ASSERT_TRUE(res);
    EXPECT_NE(res->body.find("ferry_reconcile_runs_total"), std::string::npos);
    EXPECT_NE(res->body.find("ferry_reconcile_items{kind=\"missing\"} 1"), std::string::npos)
        << res->body;
    EXPECT_NE(res->body.find("ferry_reconcile_last_run_age_seconds"), std::string::npos);
    EXPECT_NE(res->body.find("ferry_reconcile_redriven_total"), std::string::npos);
    relay.terminate();
}

TEST_F(ReportTest, RedisOnlyGroupUsesDoneKeys) {
    const auto prefix = ferry::test::unique_name("rk");
    std::vector<std::string> ids;
    for (int i = 0; i < 31; ++i) ids.push_back(publish(_topic, "k" + std::to_string(i)));
    const auto ep = ferry::test::redis_address();
    redisContext* c = redisConnect(ep.host.c_str(), ep.port);
    ASSERT_TRUE(c != nullptr && c->err == 0);
    if (!ep.password.empty()) freeReplyObject(redisCommand(c, "AUTH %s", ep.password.c_str()));
    if (ep.db != 0) freeReplyObject(redisCommand(c, "SELECT %d", ep.db));
    std::set<std::string> missing;
    for (int i = 0; i < 25; ++i) {
        const auto key = prefix + ":" + _group + ":" + ids[i];
        if (i % 5 == 0) {
            missing.insert(ids[i]);
            if (i == 10) {  // a lease held by a live consumer is not "done" either
                freeReplyObject(redisCommand(c, "SET %s owner-token PX 60000", key.c_str()));
            }
            continue;
        }
        freeReplyObject(redisCommand(c, "SET %s done PX 60000", key.c_str()));
    }
    // Keys that name a run (ADR 0024): done when the run key says so; a run still leased or
    // gone (abandoned) is not done.
    const std::string done_run = "r:reconcile-test:1", leased_run = "r:reconcile-test:2";
    freeReplyObject(
        redisCommand(c, "SET %s:run:%s done PX 60000", prefix.c_str(), done_run.c_str()));
    freeReplyObject(
        redisCommand(c, "SET %s:run:%s lease PX 60000", prefix.c_str(), leased_run.c_str()));
    for (int i = 25; i < 31; ++i) {
        const auto key = prefix + ":" + _group + ":" + ids[i];
        const std::string run = i < 28 ? done_run : i < 30 ? leased_run : "r:reconcile-test:gone";
        freeReplyObject(redisCommand(c, "SET %s %s PX 60000", key.c_str(), run.c_str()));
        if (i >= 28) missing.insert(ids[i]);
    }
    redisFree(c);
    rc::reconcile_options o;
    o.dsn = ferry::test::pg_dsn();
    o.schema = s();
    o.grace = 1s;
    o.redrive = false;
    o.chunk_size = 4;
    rc::group_options g;
    g.group = _group;
    g.topics = {_topic};
    g.redis_url = ferry::test::redis_url();
    g.redis_key_prefix = prefix;
    g.redis_only = true;
    o.groups.push_back(g);
    const auto r = rc::run(o);
    EXPECT_EQ(r.counts.at("missing"), 8);
    EXPECT_EQ(r.scanned, 31);
    rc::report_store store(ferry::test::pg_dsn(), s());
    std::set<std::string> got;
    for (const auto& i : store.items(r.run_id)) got.insert(i.message_id);
    EXPECT_EQ(got, missing);
}

// WAL mode (ADR 0070, rule 10): a committed message that is not published yet waits in the WAL
// behind its slot, not in a table. So every run records the state of each registered slot, and
// a registered slot that disappears is reported as `slot_lost` with the last confirmed position
// an earlier run recorded: the one way a committed message goes unpublished in WAL mode.
TEST_F(ReportTest, WalSlotStateIsRecordedAndALostSlotIsReportedWithItsLastConfirmedPosition) {
    rc::reconcile_options o;
    o.dsn = ferry::test::pg_dsn();
    o.schema = s();
    o.grace = 0ms;
    rc::report_store store(ferry::test::pg_dsn(), s());

    const auto polling = rc::run(o);  // no slot registered: nothing to record, nothing lost
    EXPECT_EQ(store.get(polling.run_id)->wal_slots, "[]");
    EXPECT_EQ(polling.counts.at("slot_lost"), 0);

    const auto slot = ferry::test::unique_name("report_slot");
    (void)ferry::wal::create_slot(*_conn, slot);
    ferry::wal::register_slot(*_conn, s(), slot);
    bool dropped = false;
    struct drop_at_exit {
        pqxx::connection& conn;
        const std::string& slot;
        bool& dropped;
        ~drop_at_exit() {
            if (!dropped) (void)ferry::wal::drop_slot(conn, slot);  // a leftover slot pins WAL
        }
    } guard{*_conn, slot, dropped};

    const auto healthy = rc::run(o);
    const auto healthy_run = store.get(healthy.run_id);
    auto slots = nlohmann::json::parse(healthy_run->wal_slots);
    ASSERT_EQ(slots.size(), 1u) << healthy_run->wal_slots;
    EXPECT_EQ(slots[0]["slot"], slot);
    EXPECT_EQ(slots[0]["state"], "ok");
    EXPECT_EQ(slots[0]["wal_status"], "reserved");
    ASSERT_TRUE(slots[0].contains("confirmed_flush_lsn")) << healthy_run->wal_slots;
    const std::string confirmed = slots[0]["confirmed_flush_lsn"];
    EXPECT_NE(confirmed.find('/'), std::string::npos) << confirmed;
    EXPECT_GE(slots[0]["lag_bytes"].get<long long>(), 0);
    EXPECT_EQ(healthy.counts.at("slot_lost"), 0);

    dropped = ferry::wal::drop_slot(*_conn, slot);  // lost: dropped while still registered
    ASSERT_TRUE(dropped);
    const auto lost = rc::run(o);
    EXPECT_EQ(lost.counts.at("slot_lost"), 1);
    const auto lost_run = store.get(lost.run_id);
    slots = nlohmann::json::parse(lost_run->wal_slots);
    ASSERT_EQ(slots.size(), 1u);
    EXPECT_EQ(slots[0]["state"], "missing");
    rc::report_filter f;
    f.kind = "slot_lost";
    const auto items = store.items(lost.run_id, f);
    ASSERT_EQ(items.size(), 1u);
    EXPECT_NE(items[0].detail.find("WAL slot " + slot + " is missing"), std::string::npos)
        << items[0].detail;
    EXPECT_NE(items[0].detail.find("after its last confirmed position " + confirmed +
                                   " may never be published"),
              std::string::npos)
        << items[0].detail;
    EXPECT_EQ(items[0].event_at, healthy_run->started_at);  // when that position was recorded
    const auto text = rc::render_report(*lost_run, items, rc::report_format::table);
    EXPECT_NE(text.find("WAL slot " + slot + ": missing"), std::string::npos) << text;
    EXPECT_NE(text.find("slot_lost=1"), std::string::npos) << text;
}

}  // namespace
