// Integration tests of the snapshot source (relay.source: snapshot, ADR 0080) against the
// harness's PostgreSQL and embedded Kafka. Every test checks what arrived in Kafka, and what
// the database recorded: the rows stay in the outbox, the ledger points at them, and the
// group's position says what is finished.

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "ack_time_check.hpp"
#include "ferry/common/error.hpp"
#include "ferry/relay/relay.hpp"
#include "maintenance.hpp"
#include "marker.hpp"
#include "per_key_order.hpp"
#include "relay_fixture.hpp"
#include "snapshot_source.hpp"

namespace {

using namespace ferry::relay_test;
using ferry::test::kafka_reader;
using ferry::test::kafka_record;

ferry::relay::relay_options snapshot_options(const relay_env& env) {
    ferry::relay::relay_options o;
    o.dsn = ferry::test::pg_dsn();
    o.schema = env.schema.name();
    o.brokers = ferry::test::kafka_brokers();
    o.source = "snapshot";
    o.lease_ttl = 2s;
    o.poll_max = 20ms;
    o.batch_size = 100;
    o.delivery_timeout = 10s;
    o.shutdown_timeout = 5s;
    return o;
}

// Rows the group's position calls finished (migration 0109's snapshot_finished).
long finished_rows(const relay_env& env) {
    return count_rows("SELECT count(*) FROM " + env.q() + ".outbox o WHERE " + env.q() +
                      ".snapshot_finished(o.txid, o.id, o.shard)");
}

// 8 producers on 50 keys serialize on a per-key aggregate row, each taking its txid before it
// waits for the key (a txid-ordered reader would send its row first; ADR 0080, sixteenth
// amendment). Per key, Kafka's order is the commit order, each message once; the rows stay in
// the outbox, each in the ledger once.
void per_key_order(int lease_groups) {
    relay_env env;
    auto opts = snapshot_options(env);
    opts.batch_size = 50;
    opts.lease_groups = lease_groups;
    long committed = 0;
    expect_per_key_order(env, opts, 8, 50, 100, true, [&](ferry::relay::relay&, std::size_t n) {
        committed = static_cast<long>(n);
        EXPECT_TRUE(eventually([&] { return finished_rows(env) == committed; }, 20s))
            << finished_rows(env) << " of " << committed << " rows finished";
    });
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".outbox"), committed)
        << "the snapshot source deletes nothing";
    EXPECT_EQ(count_rows("SELECT count(DISTINCT message_id) FROM " + env.q() + ".ledger"),
              committed);
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".ledger"), committed);
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".snapshot_position"), lease_groups);
}

TEST(RelaySnapshotTest, PerKeyOrderWithConcurrentProducers) { per_key_order(1); }
TEST(RelaySnapshotTest, PerKeyOrderWithConcurrentProducersAndFourGroups) { per_key_order(4); }

TEST(RelaySnapshotTest, PublishesHeadersKeysAndEveryByteValueUnchanged) {
    relay_env env;
    ferry::relay::relay relay(snapshot_options(env));
    relay.start();
    std::string all_bytes;
    for (int c = 0; c < 256; ++c) all_bytes += static_cast<char>(c);
    pqxx::connection conn{ferry::test::pg_dsn()};
    std::string id_all;
    {
        pqxx::work tx{conn};
        id_all = tx.exec_params("SELECT " + env.q() +
                                    ".enqueue($1, 'bytes', $2, '{\"h\":\"v\"}'::jsonb)::text",
                                env.topic, pqxx::binarystring(all_bytes))[0][0]
                     .as<std::string>();
        tx.commit();
    }
    const auto id_empty = enqueue_committed(conn, env.schema.name(), env.topic, {"", ""});
    kafka_reader reader(env.topic);
    const auto records = reader.read(2, 20s);
    ASSERT_EQ(records.size(), 2u);
    for (const auto& r : records) {
        if (r.header("ferry-message-id") == id_all) {
            EXPECT_EQ(r.value.value_or(""), all_bytes);
            EXPECT_EQ(r.key.value_or(""), "bytes");
            EXPECT_EQ(r.header("h"), "v");
        } else {
            EXPECT_EQ(r.header("ferry-message-id"), id_empty);
            EXPECT_EQ(r.value.value_or("x"), "");
        }
    }
    relay.stop();
}

TEST(RelaySnapshotTest, LedgerRecordsWhenKafkaAcknowledgedEvenWhenTheMarkWaits) {
    relay_env env;
    expect_acked_at_is_the_acknowledgement(env, snapshot_options(env), [&](const std::string& k) {
        pqxx::connection conn{ferry::test::pg_dsn()};
        return enqueue_committed(conn, env.schema.name(), env.topic, {k, "v"});
    });
}

// A transaction that took its txid first and commits after later ones is in a later epoch:
// published, once, and the epochs before it were not held up by it. Returns what was lost.
std::size_t late_commit(bool without_in_progress) {
    relay_env env;
    if (without_in_progress) setenv("FERRY_RELAY_UNSAFE_SNAPSHOT_NO_IN_PROGRESS", "1", 1);
    ferry::relay::relay relay(snapshot_options(env));
    relay.start();
    unsetenv("FERRY_RELAY_UNSAFE_SNAPSHOT_NO_IN_PROGRESS");
    pqxx::connection late_conn{ferry::test::pg_dsn()};
    pqxx::work late_tx{late_conn};
    const auto late = enqueue(late_tx, env.schema.name(), env.topic, {"late-key", "late"});
    pqxx::connection conn{ferry::test::pg_dsn()};
    std::set<std::string> committed{late};
    for (int i = 0; i < 5; ++i) {
        committed.insert(enqueue_committed(conn, env.schema.name(), env.topic,
                                           {"k" + std::to_string(i), std::to_string(i)}));
    }
    kafka_reader reader(env.topic);
    auto records = reader.read(5, 20s);
    EXPECT_EQ(records.size(), 5u) << "the open transaction held up later commits";
    EXPECT_FALSE(contains_id(records, late));
    late_tx.commit();
    records = reader.read(6, without_in_progress ? 3s : 20s);
    records = reader.read_all(500ms, 10s);
    const auto check = check_delivery(records, committed);
    EXPECT_EQ(check.duplicates + check.phantoms, 0u) << describe(check);
    relay.stop();
    return check.lost;
}

TEST(RelaySnapshotTest, ALateCommitIsPublishedAndHoldsUpNothing) {
    EXPECT_EQ(late_commit(false), 0u);
}

// Negative control: an epoch without the transactions in progress in its S0 loses the late
// commit, and the check above would see it.
TEST(RelaySnapshotTest, WithoutTheInProgressTermTheLateCommitIsLost) {
    EXPECT_EQ(late_commit(true), 1u);
}

// A clean stop records everything published: the next relay goes on from the position and
// publishes only what is new.
TEST(RelaySnapshotTest, ARestartGoesOnFromThePosition) {
    relay_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    std::set<std::string> first, second;
    for (int i = 0; i < 300; ++i) {
        first.insert(enqueue_committed(conn, env.schema.name(), env.topic,
                                       {"k" + std::to_string(i % 7), std::to_string(i)}));
    }
    kafka_reader reader(env.topic);
    {
        ferry::relay::relay relay(snapshot_options(env));
        relay.start();
        (void)reader.read(first.size(), 30s);
        ASSERT_TRUE(eventually([&] { return finished_rows(env) == 300; }, 20s));
        relay.stop();
    }
    for (int i = 0; i < 200; ++i) {
        second.insert(enqueue_committed(conn, env.schema.name(), env.topic,
                                        {"k" + std::to_string(i % 7), "b" + std::to_string(i)}));
    }
    ferry::relay::relay relay(snapshot_options(env));
    relay.start();
    auto records = reader.read(first.size() + second.size(), 30s);
    records = reader.read_all(1s, 10s);
    std::set<std::string> all(first);
    all.insert(second.begin(), second.end());
    const auto check = check_delivery(records, all);
    EXPECT_EQ(check.lost + check.duplicates + check.phantoms, 0u) << describe(check);
    relay.stop();
}

TEST(RelaySnapshotTest, ADelayedMessageWaitsAndHoldsOnlyItsKey) {
    relay_env env;
    ferry::relay::relay relay(snapshot_options(env));
    relay.start();
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto enqueued_at = std::chrono::steady_clock::now();
    const auto delayed =
        enqueue_committed(conn, env.schema.name(), env.topic, {"d", "delayed", "{}", 2000});
    const auto behind = enqueue_committed(conn, env.schema.name(), env.topic, {"d", "behind"});
    const auto other = enqueue_committed(conn, env.schema.name(), env.topic, {"n", "now"});
    kafka_reader reader(env.topic);
    auto records = reader.read(1, 10s);
    ASSERT_GE(records.size(), 1u);
    EXPECT_TRUE(contains_id(records, other));
    if (std::chrono::steady_clock::now() - enqueued_at < 1500ms) {
        EXPECT_FALSE(contains_id(records, delayed)) << "published before available_at";
        EXPECT_FALSE(contains_id(records, behind)) << "overtook the delayed message of its key";
    }
    records = reader.read(3, 15s);
    EXPECT_GE(std::chrono::steady_clock::now() - enqueued_at, 2s);
    const auto d = with_key(records, "d");
    ASSERT_EQ(d.size(), 2u);
    EXPECT_EQ(d[0].header("ferry-message-id"), delayed);
    EXPECT_EQ(d[1].header("ferry-message-id"), behind);
    relay.stop();
}

TEST(RelaySnapshotTest, AnExpiredMessageIsRecordedAndNeverPublished) {
    relay_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto expired =
        enqueue_committed(conn, env.schema.name(), env.topic, {"e", "too late", "{}", -1, 1});
    std::this_thread::sleep_for(20ms);
    ferry::relay::relay relay(snapshot_options(env));
    relay.start();
    const auto fresh = enqueue_committed(conn, env.schema.name(), env.topic, {"e", "fresh"});
    kafka_reader reader(env.topic);
    auto records = reader.read(1, 15s);
    records = reader.read_all(1s, 10s);
    EXPECT_TRUE(contains_id(records, fresh));
    EXPECT_FALSE(contains_id(records, expired));
    ASSERT_TRUE(eventually([&] { return relay.counts().expired == 1; }, 10s));
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".expired WHERE message_id = '" +
                         expired + "'"),
              1);
    ASSERT_TRUE(eventually([&] { return finished_rows(env) == 2; }, 10s));
    relay.stop();
}

// A message Kafka refuses is parked; the later message of its key is parked behind it
// (KEY_PARKED), other keys flow; a retry puts both back, in order.
TEST(RelaySnapshotTest, APoisonMessageParksItsKeyAndARetryRestoresItsOrder) {
    relay_env env;
    auto opts = snapshot_options(env);
    opts.properties["message.max.bytes"] = "100000";
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto poison = enqueue_committed(conn, env.schema.name(), env.topic,
                                          {"poisoned", std::string(200000, 'x')});
    const auto held = enqueue_committed(conn, env.schema.name(), env.topic, {"poisoned", "after"});
    std::set<std::string> others;
    for (int i = 0; i < 10; ++i) {
        others.insert(enqueue_committed(conn, env.schema.name(), env.topic,
                                        {"healthy-" + std::to_string(i % 3), std::to_string(i)}));
    }
    kafka_reader reader(env.topic);
    {
        ferry::relay::relay relay(opts);
        relay.start();
        auto records = reader.read(others.size(), 20s);
        // A message of the parked key that commits later is parked too.
        const auto later =
            enqueue_committed(conn, env.schema.name(), env.topic, {"poisoned", "later"});
        ASSERT_TRUE(eventually(
            [&] { return count_rows("SELECT count(*) FROM " + env.q() + ".parked") == 3; }, 20s));
        records = reader.read_all(1s, 10s);
        const auto check = check_delivery(records, others);
        EXPECT_EQ(check.lost + check.duplicates, 0u) << describe(check);
        EXPECT_TRUE(with_key(records, "poisoned").empty());
        pqxx::result parked;
        {
            pqxx::nontransaction tx{conn};
            parked = tx.exec("SELECT message_id::text, error_code FROM " + env.q() +
                             ".parked ORDER BY id");
        }
        ASSERT_EQ(parked.size(), 3u);
        EXPECT_EQ(parked[0][0].as<std::string>(), poison);
        EXPECT_EQ(parked[0][1].as<std::string>(), "MSG_SIZE_TOO_LARGE");
        EXPECT_EQ(parked[1][0].as<std::string>(), held);
        EXPECT_EQ(parked[1][1].as<std::string>(), "KEY_PARKED");
        EXPECT_EQ(parked[2][0].as<std::string>(), later);
        EXPECT_EQ(parked[2][1].as<std::string>(), "KEY_PARKED");
        relay.stop();
        pqxx::work retry{conn};
        const auto first_id =
            retry.exec("SELECT min(id) FROM " + env.q() + ".parked")[0][0].as<long>();
        EXPECT_TRUE(retry.exec_params("SELECT " + env.q() + ".retry_parked($1)", first_id)[0][0]
                        .as<bool>());
        retry.commit();
        EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".parked"), 0);
        std::vector<std::string> expected{poison, held, later};
        opts.properties["message.max.bytes"] = "1000000";
        ferry::relay::relay again(opts);
        again.start();
        records = reader.read(others.size() + 3, 20s);
        records = reader.read_all(1s, 10s);
        const auto poisoned = with_key(records, "poisoned");
        ASSERT_EQ(poisoned.size(), 3u);
        for (std::size_t i = 0; i < 3; ++i) {
            EXPECT_EQ(poisoned[i].header("ferry-message-id"), expected[i]) << i;
        }
        EXPECT_EQ(poisoned[0].value->size(), 200000u);
        again.stop();
    }
}

// The lease fences every mark: a batch claimed under an epoch that is no longer the group's
// records nothing, and the position stays where it was.
TEST(RelaySnapshotTest, AMarkUnderALeaseThatIsNoLongerOursRecordsNothing) {
    relay_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    for (int i = 0; i < 3; ++i) {
        (void)enqueue_committed(conn, env.schema.name(), env.topic, {"k", std::to_string(i)});
    }
    {
        pqxx::work tx{conn};
        tx.exec("INSERT INTO " + env.q() +
                ".relay_lease (lease_group, owner, epoch, expires_at) VALUES (0, 'me', 7, "
                "clock_timestamp() + interval '1 minute')");
        tx.commit();
    }
    auto opts = snapshot_options(env);
    opts.instance_id = "me";
    ferry::metrics::registry registry;
    auto reconnects = registry.add_counter("test_reconnects_total", "reconnects");
    ferry::relay::detail::snapshot_source source(opts, env.q(), reconnects);
    auto claim = source.claim(0, 7, 100, {}, 0, true);
    ASSERT_TRUE(claim.lease_ours);
    ASSERT_EQ(claim.rows.size(), 3u);
    EXPECT_TRUE(source.claim(0, 6, 100, {}, 0, true).rows.empty()) << "another epoch reads nothing";
    {
        pqxx::work tx{conn};
        tx.exec("UPDATE " + env.q() + ".relay_lease SET owner = 'thief', epoch = 8");
        tx.commit();
    }
    ferry::relay::detail::mark_request req;
    req.group = 0;
    req.epoch = 7;
    for (const auto& r : claim.rows) req.publish.push_back({r.id, 0, 1, ""});
    EXPECT_EQ(source.mark(req, 0), ferry::relay::detail::mark_outcome::fenced);
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".snapshot_batch"), 0);
    EXPECT_EQ(count_rows("SELECT seq FROM " + env.q() + ".snapshot_position"), 0);
    EXPECT_EQ(finished_rows(env), 0);
    // Negative control: the same mark under the lease records the rows.
    {
        pqxx::work tx{conn};
        tx.exec("UPDATE " + env.q() + ".relay_lease SET owner = 'me', epoch = 7");
        tx.commit();
    }
    EXPECT_EQ(source.mark(req, 0), ferry::relay::detail::mark_outcome::marked);
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".snapshot_batch"), 1);
    EXPECT_EQ(finished_rows(env), 3);
}

// A polling relay would publish every row a snapshot relay keeps: it refuses such a schema.
TEST(RelaySnapshotTest, APollingRelayRefusesASnapshotSchema) {
    relay_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto id = enqueue_committed(conn, env.schema.name(), env.topic, {"k", "v"});
    kafka_reader reader(env.topic);
    {
        ferry::relay::relay relay(snapshot_options(env));
        relay.start();
        ASSERT_EQ(reader.read(1, 20s).size(), 1u);
        ASSERT_TRUE(eventually([&] { return finished_rows(env) == 1; }, 10s));
        relay.stop();
    }
    auto polling = snapshot_options(env);
    polling.source = "polling";
    ferry::relay::relay relay(polling);
    relay.start();
    const auto records = reader.read_all(2s, 5s);
    EXPECT_EQ(records.size(), 1u) << "the polling relay published the retained row again";
    EXPECT_EQ(relay.counts().published, 0u);
    relay.stop();
    EXPECT_EQ(
        count_rows("SELECT count(*) FROM " + env.q() + ".outbox WHERE message_id = '" + id + "'"),
        1);
}

}  // namespace

namespace {

// The outbox keeps published rows for relay.published_retention, then ferry-relay trims them
// with their ledger rows. A row its position does not call finished is never trimmed, however
// old: here a delayed message, which holds the position behind it.
TEST(RelaySnapshotTest, RetentionTrimsOnlyFinishedRows) {
    relay_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto waiting =
        enqueue_committed(conn, env.schema.name(), env.topic, {"w", "later", "{}", 6000});
    std::set<std::string> published;
    for (int i = 0; i < 50; ++i) {
        published.insert(enqueue_committed(conn, env.schema.name(), env.topic,
                                           {"k" + std::to_string(i % 5), std::to_string(i)}));
    }
    auto opts = snapshot_options(env);
    opts.published_retention = 1s;
    ferry::relay::relay relay(opts);
    relay.start();
    kafka_reader reader(env.topic);
    const auto records = reader.read(published.size(), 20s);
    EXPECT_EQ(check_delivery(records, published).lost, 0u);
    ASSERT_TRUE(eventually(
        [&] { return count_rows("SELECT count(*) FROM " + env.q() + ".snapshot_batch") > 0; },
        10s));
    // Finished, but behind the waiting row: the position stays before it, so nothing is
    // trimmed while it waits. Once due, it is published and everything goes.
    std::this_thread::sleep_for(3s);
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".outbox WHERE message_id = '" +
                         waiting + "'"),
              1)
        << "an unpublished row was trimmed";
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".outbox"), 51)
        << "rows above the position were trimmed";
    ASSERT_TRUE(contains_id(reader.read(published.size() + 1, 20s), waiting));
    EXPECT_TRUE(eventually(
        [&] {
            return count_rows("SELECT count(*) FROM " + env.q() + ".outbox") == 0 &&
                   count_rows("SELECT count(*) FROM " + env.q() + ".snapshot_batch") == 0;
        },
        20s))
        << count_rows("SELECT count(*) FROM " + env.q() + ".outbox") << " outbox rows left";
    relay.stop();
}

// The pending gauges (maintenance.cpp) read only the two index ranges that can hold an
// unfinished row. In each position state below they must count exactly what
// snapshot_finished() calls unfinished, and the oldest of those rows; each bound on its own
// would miss rows in one of the states (checked, so the states do test both ranges).
TEST(RelaySnapshotTest, TheBacklogGaugeCountsExactlyTheUnfinishedRows) {
    relay_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    // Four transactions of ten rows each, on keys spread over both groups of two.
    std::vector<std::string> txids;
    std::vector<std::vector<std::int64_t>> ids;
    for (int t = 0; t < 4; ++t) {
        pqxx::work tx{conn};
        for (int i = 0; i < 10; ++i) {
            (void)enqueue(tx, env.schema.name(), env.topic,
                          {"k" + std::to_string(t * 10 + i), "v"});
        }
        txids.push_back(tx.exec("SELECT pg_current_xact_id()::text")[0][0].as<std::string>());
        tx.commit();
        std::this_thread::sleep_for(20ms);  // distinct created_at per transaction
    }
    {
        pqxx::nontransaction tx{conn};
        for (const auto& t : txids) {
            std::vector<std::int64_t> v;
            for (const auto& row : tx.exec("SELECT id FROM " + env.q() + ".outbox WHERE txid = '" +
                                           t + "' ORDER BY id")) {
                v.push_back(row[0].as<std::int64_t>());
            }
            ASSERT_EQ(v.size(), 10u);
            ids.push_back(v);
        }
    }
    // A snapshot in terms of the four transactions (index 4: past the last one).
    const auto txid = [&](int t) {
        return t < 4 ? txids[t] : std::to_string(std::stoll(txids[3]) + 1);
    };
    const auto snap = [&](int xmin, int xmax, const std::string& xip = "") {
        return txid(xmin) + ":" + txid(xmax) + ":" + xip;
    };
    struct position {
        int group;
        std::string s0;
        std::optional<std::string> s1;
        std::int64_t after_id;
    };
    const auto set_positions = [&](int groups, const std::vector<position>& ps) {
        pqxx::work tx{conn};
        tx.exec("DELETE FROM " + env.q() + ".snapshot_position");
        for (const auto& p : ps) {
            tx.exec_params("INSERT INTO " + env.q() +
                               ".snapshot_position (lease_group, lease_groups, s0, s1, after_id) "
                               "VALUES ($1, $2, $3::pg_snapshot, $4::pg_snapshot, $5)",
                           p.group, groups, p.s0, p.s1, p.after_id);
        }
        tx.commit();
    };
    const auto check = [&](const char* state, long expected_unfinished) {
        pqxx::read_transaction tx{conn};
        const auto oracle = tx.exec(
            "SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - "
            "min(o.created_at)), 0)::float8 FROM " +
            env.q() + ".outbox o WHERE NOT " + env.q() +
            ".snapshot_finished(o.txid, o.id, o.shard)")[0];
        const auto got = ferry::relay::detail::count_unpublished(tx, env.q(), true);
        EXPECT_EQ(oracle[0].as<long>(), expected_unfinished) << state << ": the state itself";
        EXPECT_EQ(got.pending, oracle[0].as<double>()) << state;
        EXPECT_NEAR(got.oldest_seconds, oracle[1].as<double>(), 0.010) << state;
        // Each bound alone (the gauge's statement, with the other range left out).
        const auto only = [&](const std::string& range) {
            return tx
                .exec("SELECT count(*) FROM " + env.q() + ".outbox o WHERE " + range + " AND NOT " +
                      env.q() + ".snapshot_finished(o.txid, o.id, o.shard)")[0][0]
                .as<long>();
        };
        return std::pair{only("o.txid >= (SELECT min(pg_snapshot_xmin(coalesce(s1, s0))) FROM " +
                              env.q() + ".snapshot_position)"),
                         only("o.id > (SELECT min(after_id) FROM " + env.q() +
                              ".snapshot_position WHERE s1 IS NOT NULL)")};
    };

    set_positions(1, {});
    (void)check("no position yet", 40);
    set_positions(1, {{0, snap(1, 1), std::nullopt, 0}});
    (void)check("s0 past the first transaction", 30);
    // An open epoch (s0, s1] = transactions 1 and 2, finished up to the 5th row of the first:
    // 5 + 10 of the epoch and the 10 after it. Transaction 2's rows are below s1's xmin: only the
    // id range finds them.
    set_positions(1, {{0, snap(1, 1), snap(3, 3), ids[1][4]}});
    const auto [by_txid, by_id] = check("an open epoch", 25);
    EXPECT_LT(by_txid, 25) << "the state does not need the id range";
    // Transaction 0 in progress in s0 (unfinished), 1 visible; no open epoch.
    set_positions(1, {{0, snap(0, 2, txids[0]), std::nullopt, 0}});
    (void)check("a transaction in progress in s0", 30);
    // Two groups, one without a position: its rows are all unfinished.
    set_positions(2, {{0, snap(4, 4), std::nullopt, 0}});
    const long group1 =
        count_rows("SELECT count(*) FROM " + env.q() + ".outbox WHERE shard % 2 = 1");
    ASSERT_GT(group1, 0);
    ASSERT_LT(group1, 40);
    (void)check("a group without a position", group1);
    // Two groups in different states: group 1's open epoch ends after the first transaction's
    // last row, group 0 has seen everything.
    set_positions(2, {{0, snap(4, 4), std::nullopt, 0}, {1, snap(0, 0), snap(4, 4), ids[0][9]}});
    const auto [txid_only, id_only] =
        check("two groups", count_rows("SELECT count(*) FROM " + env.q() +
                                       ".outbox WHERE shard % 2 = 1 "
                                       "AND id > " +
                                       std::to_string(ids[0][9])));
    EXPECT_EQ(txid_only, 0) << "the state does not need the id range";
    (void)id_only;
}

}  // namespace
