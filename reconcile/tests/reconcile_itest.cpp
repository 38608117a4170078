// Reconciliation against a live pipeline (PostgreSQL, embedded Kafka, ferry::relay and
// ferry::consumer in-process): one of each anomaly is injected, the report must contain exactly
// those (no false positives, also for messages still in flight), and a re-driven message must be
// applied exactly once (witness table without a unique constraint).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "ferry/common/metrics.hpp"
#include "ferry/consumer/consumer.hpp"
#include "ferry/outbox/migrate.hpp"
#include "ferry/reconcile/periodic.hpp"
#include "ferry/reconcile/reconcile.hpp"
#include "ferry/reconcile/report.hpp"
#include "ferry/relay/relay.hpp"
#include "ferry/test/dev_kafka.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/scoped_schema.hpp"
#include "ferry/test/unique_name.hpp"

namespace {

using namespace std::chrono_literals;
namespace rc = ferry::reconcile;

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (cond()) return true;
        std::this_thread::sleep_for(50ms);
    }
    return cond();
}

class ReconcileTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        ferry::test::dev_kafka_options o;
        o.brokers = 1;
        kafka() = std::make_unique<ferry::test::dev_kafka>(o);
    }
    static void TearDownTestSuite() { kafka().reset(); }
    static std::unique_ptr<ferry::test::dev_kafka>& kafka() {
        static std::unique_ptr<ferry::test::dev_kafka> k;
        return k;
    }

    void SetUp() override {
        _schema = std::make_unique<ferry::test::scoped_schema>("recon");
        _conn = std::make_unique<pqxx::connection>(ferry::test::pg_dsn());
        (void)ferry::outbox::migrate(*_conn, s());
        pqxx::work tx{*_conn};
        tx.exec("CREATE TABLE " + q() +
                ".witness (n bigserial, message_id uuid NOT NULL, applied_at timestamptz NOT NULL "
                "DEFAULT clock_timestamp())");
        tx.commit();
        _topic = ferry::test::unique_name("rt");
        _group = ferry::test::unique_name("rg");
        kafka()->create_topic(_topic, 3);
    }

    const std::string& s() const { return _schema->name(); }
    std::string q() const { return "\"" + s() + "\""; }

    long count(const std::string& sql) {
        pqxx::nontransaction tx{*_conn};
        return tx.exec(sql)[0][0].as<long>();
    }

    /// The actions of a stored run's items.
    std::multiset<std::string> actions_of(std::int64_t run_id) const {
        rc::report_store store(ferry::test::pg_dsn(), s());
        std::multiset<std::string> actions;
        for (const auto& i : store.items(run_id)) actions.insert(i.action);
        return actions;
    }

    std::string enqueue(const std::string& key, long expires_after_ms = -1) {
        pqxx::work tx{*_conn};
        const auto id =
            tx.exec_params("SELECT " + q() +
                               ".enqueue($1, $2, convert_to($3, 'UTF8'), '{}'::jsonb, NULL, "
                               "CASE WHEN $4::bigint < 0 THEN NULL ELSE $4::bigint * "
                               "interval '1 millisecond' END)::text",
                           _topic, key, "payload-" + key, expires_after_ms)[0][0]
                .as<std::string>();
        tx.commit();
        return id;
    }

    ferry::relay::relay_options relay_options() const {
        ferry::relay::relay_options o;
        o.dsn = ferry::test::pg_dsn();
        o.schema = s();
        o.brokers = kafka()->bootstrap();
        o.lease_ttl = 2s;
        o.poll_max = 20ms;
        o.batch_size = 100;
        o.delivery_timeout = 10s;
        o.shutdown_timeout = 5s;
        return o;
    }

    std::unique_ptr<ferry::consumer::consumer> start_consumer(const std::string& poison) {
        ferry::consumer::consumer_options o;
        o.brokers = kafka()->bootstrap();
        o.group = _group;
        o.dsn = ferry::test::pg_dsn();
        o.schema = s();
        o.dedup = ferry::consumer::dedup_mode::inbox;
        o.session_timeout = 6000ms;
        o.retry.immediate_tries = 1;
        o.retry.max_attempts = 1;
        o.retry_poll = 50ms;
        o.revoke_timeout = 5000ms;
        auto c = std::make_unique<ferry::consumer::consumer>(o);
        const auto qs = q();
        c->subscribe(
            _topic, ferry::consumer::tx_handler([qs, poison](const ferry::consumer::message& m,
                                                             pqxx::work& tx) {
                if (m.message_id == poison) {
                    throw ferry::error(ferry::error_kind::permanent, "test.poison",
                                       "poison payload");
                }
                tx.exec_params("INSERT INTO " + qs + ".witness (message_id) VALUES ($1::uuid)",
                               m.message_id);
            }));
        c->start();
        return c;
    }

    rc::reconcile_options reconcile_options() const {
        rc::reconcile_options o;
        o.dsn = ferry::test::pg_dsn();
        o.schema = s();
        rc::group_options g;
        g.group = _group;
        g.topics = {_topic};
        g.dsn = ferry::test::pg_dsn();
        g.schema = s();
        o.groups.push_back(g);
        o.window = 1h;
        o.grace = 6s;  // margin for stopping the relay between in-flight and the run
        o.stuck_unpublished = 1s;
        o.chunk_size = 7;  // several chunks even for this small ledger
        return o;
    }

    long effects_of(const std::string& id) {
        pqxx::nontransaction tx{*_conn};
        return tx
            .exec_params("SELECT count(*) FROM " + q() + ".witness WHERE message_id = $1", id)[0][0]
            .as<long>();
    }

    std::unique_ptr<ferry::test::scoped_schema> _schema;
    std::unique_ptr<pqxx::connection> _conn;
    std::string _topic, _group;
};

std::map<std::string, std::set<std::string>> by_kind(const std::vector<rc::report_item>& items) {
    std::map<std::string, std::set<std::string>> m;
    for (const auto& i : items) m[i.kind].insert(i.message_id);
    return m;
}

TEST_F(ReconcileTest, ReportsExactlyTheInjectedAnomaliesAndRedriveAppliesOnce) {
    // Expired: its TTL passes before any relay runs.
    const auto expired = enqueue("e", 1);
    std::this_thread::sleep_for(20ms);

    std::vector<std::string> normal;
    const auto poison = enqueue("p");
    const auto dup = enqueue("d");
    for (int i = 0; i < 20; ++i) normal.push_back(enqueue("k" + std::to_string(i % 5)));

    auto relay = std::make_unique<ferry::relay::relay>(relay_options());
    relay->start();
    auto consumer = start_consumer(poison);
    ASSERT_TRUE(wait_until(
        [&] {
            return count("SELECT count(*) FROM " + q() + ".witness") >= 21 &&
                   count("SELECT count(*) FROM " + q() + ".dead_letter") >= 1;
        },
        60s))
        << consumer->render_prometheus();
    ASSERT_EQ(count("SELECT count(*) FROM " + q() + ".expired"), 1);

    // Duplicate delivery: the same message published a second time (as after a relay crash
    // between the Kafka ack and the mark); the inbox absorbs it.
    {
        pqxx::work tx{*_conn};
        tx.exec_params("INSERT INTO " + q() +
                           ".outbox (message_id, topic, key, payload) SELECT "
                           "message_id, topic, key, payload FROM " +
                           q() + ".ledger WHERE message_id = $1::uuid LIMIT 1",
                       dup);
        tx.commit();
    }
    ASSERT_TRUE(wait_until([&] { return consumer->metrics().duplicates_absorbed >= 1; }, 30s));

    // Lost: the consumer's processed record (and its effect) vanish.
    const auto lost = normal[3];
    {
        pqxx::work tx{*_conn};
        tx.exec_params("DELETE FROM " + q() + ".inbox WHERE group_id = $1 AND message_id = $2",
                       _group, lost);
        tx.exec_params("DELETE FROM " + q() + ".witness WHERE message_id = $1", lost);
        tx.commit();
    }
    // A half message whose responder never answers (nobody decides it).
    std::string half;
    {
        pqxx::work tx{*_conn};
        half = tx.exec_params("SELECT " + q() +
                                  ".prepare($1, 'h', 'x'::bytea, '{}'::jsonb, "
                                  "'tx-1', 'gone-group', 'gone-instance', "
                                  "interval '0')::text",
                              _topic)[0][0]
                   .as<std::string>();
        tx.commit();
    }
    std::this_thread::sleep_for(6500ms);  // everything above is now older than the grace

    // In flight: published, not yet consumed, within the grace. Must not be reported.
    consumer->stop();
    consumer.reset();
    std::vector<std::string> in_flight;
    for (int i = 0; i < 5; ++i) in_flight.push_back(enqueue("f" + std::to_string(i)));
    ASSERT_TRUE(
        wait_until([&] { return count("SELECT count(*) FROM " + q() + ".outbox") == 0; }, 20s));
    // A relay stopped with a backlog.
    relay->stop();
    relay.reset();
    std::vector<std::string> backlog;
    for (int i = 0; i < 3; ++i) backlog.push_back(enqueue("b" + std::to_string(i)));
    std::this_thread::sleep_for(1300ms);

    const auto result = rc::run(reconcile_options());
    ASSERT_EQ(result.status, rc::run_status::succeeded);
    EXPECT_EQ(result.redriven, 1);

    rc::report_store store(ferry::test::pg_dsn(), s());
    const auto items = store.items(result.run_id);
    const auto got = by_kind(items);
    std::map<std::string, std::set<std::string>> want{
        {"missing", {lost}},         {"stuck_unpublished", {backlog.begin(), backlog.end()}},
        {"stuck_half", {half}},      {"expired", {expired}},
        {"dead_lettered", {poison}}, {"duplicate_absorbed", {dup}},
    };
    EXPECT_EQ(got, want) << rc::render_report(*store.get(result.run_id), items,
                                              rc::report_format::table);
    for (const auto& i : items) {
        if (i.kind == "missing") {
            EXPECT_EQ(i.action, "redriven");
            EXPECT_EQ(i.group, _group);
            EXPECT_EQ(i.topic, _topic);
            EXPECT_EQ(i.key, "k3");
        }
    }
    const auto run = store.get(result.run_id);
    ASSERT_TRUE(run);
    EXPECT_EQ(run->status, "succeeded");
    EXPECT_EQ(run->counts.at("missing"), 1);
    EXPECT_EQ(run->counts.at("stuck_unpublished"), 3);
    EXPECT_EQ(run->counts.at("redriven"), 1);
    EXPECT_EQ(run->counts.at("parked"), 0);

    // The re-drive sits in the outbox with the original id; bring the pipeline back.
    EXPECT_EQ(count("SELECT count(*) FROM " + q() + ".outbox WHERE message_id = '" + lost + "'"),
              1);
    relay = std::make_unique<ferry::relay::relay>(relay_options());
    relay->start();
    consumer = start_consumer(poison);
    ASSERT_TRUE(wait_until(
        [&] {
            return effects_of(lost) >= 1 && effects_of(backlog.back()) >= 1 &&
                   effects_of(in_flight.back()) >= 1;
        },
        60s));
    std::this_thread::sleep_for(1s);
    consumer->stop();
    relay->stop();
    EXPECT_EQ(effects_of(lost), 1);
    for (const auto& id : normal) EXPECT_EQ(effects_of(id), 1) << id;
    for (const auto& id : in_flight) EXPECT_EQ(effects_of(id), 1) << id;
    for (const auto& id : backlog) EXPECT_EQ(effects_of(id), 1) << id;
    EXPECT_EQ(effects_of(dup), 1);
    EXPECT_EQ(effects_of(poison), 0);

    // Once everything settled past the grace: nothing missing or stuck any more.
    std::this_thread::sleep_for(6500ms);
    const auto again = rc::run(reconcile_options());
    ASSERT_EQ(again.status, rc::run_status::succeeded);
    EXPECT_EQ(again.counts.at("missing"), 0);
    EXPECT_EQ(again.counts.at("stuck_unpublished"), 0);
    EXPECT_EQ(again.redriven, 0);
}

TEST_F(ReconcileTest, ReportOnlyDoesNotRedriveAndCapLimitsRedrives) {
    // Ledger rows written directly: three published messages nobody processed.
    std::vector<std::string> ids;
    {
        pqxx::work tx{*_conn};
        for (int i = 0; i < 3; ++i) {
            ids.push_back(
                tx.exec_params("INSERT INTO " + q() +
                                   ".published (message_id, topic, "
                                   "key, partition, \"offset\", created_at, published_at, "
                                   "relay_epoch, lease_group, payload, headers) VALUES (" +
                                   q() +
                                   ".uuid_v7(), $1, 'k', 0, $2, now() - interval "
                                   "'10 min', now() - interval '10 min', 1, 0, "
                                   "'p'::bytea, '{}') RETURNING message_id::text",
                               _topic, i)[0][0]
                    .as<std::string>());
        }
        tx.commit();
    }
    auto o = reconcile_options();
    o.redrive = false;
    const auto r1 = rc::run(o);
    EXPECT_EQ(r1.counts.at("missing"), 3);
    EXPECT_EQ(r1.redriven, 0);
    EXPECT_EQ(count("SELECT count(*) FROM " + q() + ".outbox"), 0);

    o.redrive = true;
    o.redrive_cap = 2;
    const auto r2 = rc::run(o);
    EXPECT_EQ(r2.counts.at("missing"), 3);
    EXPECT_EQ(r2.redriven, 2);
    EXPECT_EQ(count("SELECT count(*) FROM " + q() + ".outbox"), 2);
    EXPECT_EQ(actions_of(r2.run_id),
              (std::multiset<std::string>{"redriven", "redriven", "cap_reached"}));

    // A third run sees the two re-drives still pending in the outbox: not re-driven twice.
    const auto r3 = rc::run(o);
    EXPECT_EQ(r3.redriven, 1);
    EXPECT_EQ(count("SELECT count(*) FROM " + q() + ".outbox"), 3);
}

// A relay with relay.ledger_payloads: false writes batch rows without payloads. A message of
// such a row that nobody processed is reported as missing and never re-driven: there is nothing
// to re-drive it with, so it is not sent again empty (action no_payload_in_ledger).
TEST_F(ReconcileTest, LedgerRowsWithoutPayloadsAreReportedNotRedriven) {
    {
        pqxx::work tx{*_conn};
        tx.exec_params("INSERT INTO " + q() +
                           ".published_batch (published_at, message_count, relay_epoch, "
                           "lease_group, message_ids, topics, keys, partitions, offsets, "
                           "created_ats, headers) SELECT now() - interval '10 min', 2, 1, 0, "
                           "ARRAY[" +
                           q() + ".uuid_v7(), " + q() +
                           ".uuid_v7()], ARRAY[$1, $1], ARRAY['k', 'k'], ARRAY[0, 0], "
                           "ARRAY[0, 1]::bigint[], ARRAY[now() - interval '10 min', now() - "
                           "interval '10 min'], ARRAY['{}', '{}']::jsonb[]",
                       _topic);
        tx.commit();
    }
    auto o = reconcile_options();
    o.redrive = true;
    const auto r = rc::run(o);
    EXPECT_EQ(r.counts.at("missing"), 2);
    EXPECT_EQ(r.redriven, 0);
    EXPECT_EQ(count("SELECT count(*) FROM " + q() + ".outbox"), 0);
    EXPECT_EQ(actions_of(r.run_id),
              (std::multiset<std::string>{"no_payload_in_ledger", "no_payload_in_ledger"}));
}

TEST_F(ReconcileTest, ConcurrentRunIsRefusedWhileTheLockIsHeld) {
    pqxx::connection holder{ferry::test::pg_dsn()};
    {
        pqxx::nontransaction tx{holder};
        tx.exec_params("SELECT pg_advisory_lock(hashtext('ferry.reconcile'), hashtext($1))", s());
    }
    const auto busy = rc::run(reconcile_options());
    EXPECT_EQ(busy.status, rc::run_status::busy);
    EXPECT_EQ(count("SELECT count(*) FROM " + q() + ".reconcile_run"), 0);
    {
        pqxx::nontransaction tx{holder};
        tx.exec_params("SELECT pg_advisory_unlock(hashtext('ferry.reconcile'), hashtext($1))", s());
    }
    // Two at once: exactly the ones that got the lock recorded a run; at least one did.
    std::atomic<int> ok{0}, refused{0};
    std::thread a(
        [&] { (rc::run(reconcile_options()).status == rc::run_status::busy ? refused : ok)++; });
    std::thread b(
        [&] { (rc::run(reconcile_options()).status == rc::run_status::busy ? refused : ok)++; });
    a.join();
    b.join();
    EXPECT_GE(ok.load(), 1);
    EXPECT_EQ(ok.load() + refused.load(), 2);
    EXPECT_EQ(count("SELECT count(*) FROM " + q() + ".reconcile_run"), ok.load());
}

// relay.source: snapshot keeps published rows in the outbox until retention trims them: only
// the rows no position calls finished are stuck (ADR 0080). The finished rows are as old as the
// others and still in the outbox, so a check that ignored the positions would report them too.
TEST_F(ReconcileTest, InSnapshotModeOnlyUnfinishedRowsAreReportedStuck) {
    std::vector<std::string> finished;
    for (int i = 0; i < 3; ++i) finished.push_back(enqueue("f" + std::to_string(i)));
    {
        pqxx::work tx{*_conn};
        // A position whose s0 sees the three rows' transactions: they are published.
        tx.exec("INSERT INTO " + q() +
                ".snapshot_position (lease_group, lease_groups, s0) VALUES (0, 1, "
                "pg_current_snapshot())");
        tx.commit();
    }
    std::set<std::string> unfinished;
    for (int i = 0; i < 2; ++i) unfinished.insert(enqueue("u" + std::to_string(i)));
    std::this_thread::sleep_for(1300ms);
    ASSERT_EQ(count("SELECT count(*) FROM " + q() +
                    ".outbox WHERE available_at < clock_timestamp() - interval '1 second'"),
              5);

    const auto result = rc::run(reconcile_options());
    ASSERT_EQ(result.status, rc::run_status::succeeded);
    rc::report_store store(ferry::test::pg_dsn(), s());
    const auto got = by_kind(store.items(result.run_id));
    EXPECT_EQ(
        got.count("stuck_unpublished") ? got.at("stuck_unpublished") : std::set<std::string>{},
        unfinished);
}

// The periodic runner registers its metrics in the registry it is given (no copying by the
// relay): a busy skip and then a finished run show up in serialize(), the age becomes >= 0.
TEST_F(ReconcileTest, PeriodicRunnerExportsItsMetricsToTheRegistry) {
    ferry::metrics::registry reg;
    (void)enqueue("never-published");  // stuck_unpublished after 1 s
    pqxx::connection holder{ferry::test::pg_dsn()};
    {
        pqxx::nontransaction tx{holder};
        tx.exec_params("SELECT pg_advisory_lock(hashtext('ferry.reconcile'), hashtext($1))", s());
    }
    rc::periodic p(reconcile_options(), 100ms, &reg);
    EXPECT_NE(reg.serialize().find("ferry_reconcile_last_run_age_seconds -1"), std::string::npos);
    p.start();
    const auto busy = reg.add_counter("ferry_reconcile_busy_total",
                                      "Reconciliation runs skipped because another instance held "
                                      "the lock.");
    ASSERT_TRUE(wait_until([&] { return busy.value() >= 1; }, 30s));
    {
        pqxx::nontransaction tx{holder};
        tx.exec_params("SELECT pg_advisory_unlock(hashtext('ferry.reconcile'), hashtext($1))", s());
    }
    std::this_thread::sleep_for(1100ms);  // the outbox row becomes "stuck" (1 s threshold)
    const auto runs =
        reg.add_counter("ferry_reconcile_runs_total", "Reconciliation runs finished.");
    ASSERT_TRUE(wait_until([&] { return runs.value() >= 1; }, 60s));
    p.stop();
    const auto text = reg.serialize();
    EXPECT_NE(text.find("ferry_reconcile_items{kind=\"stuck_unpublished\"} 1"), std::string::npos)
        << text;
    EXPECT_NE(text.find("ferry_reconcile_items{kind=\"missing\"} 0"), std::string::npos) << text;
    EXPECT_EQ(text.find("ferry_reconcile_last_run_age_seconds -1"), std::string::npos) << text;
    EXPECT_NE(text.find("ferry_reconcile_failures_total 0"), std::string::npos) << text;
    EXPECT_EQ(p.stats().runs, static_cast<std::uint64_t>(runs.value()));
}

}  // namespace
