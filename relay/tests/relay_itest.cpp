// Integration tests of the relay (ferry::relay) against the harness's PostgreSQL and embedded
// Kafka. Every test checks what ARRIVED IN KAFKA (ferry::test::kafka_reader, read_committed),
// not only what the relay reports. Each test has its own schema and topic.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <regex>
#include <thread>
#include <tuple>

#include "ack_time_check.hpp"
#include "ferry/common/metrics.hpp"
#include "ferry/relay/relay.hpp"
#include "ferry/test/run_command.hpp"
#include "http_server.hpp"
#include "marker.hpp"
#include "per_key_order.hpp"
#include "relay_fixture.hpp"

namespace {

using namespace ferry::relay_test;
using ferry::test::kafka_reader;
using ferry::test::kafka_record;
using testing::HasSubstr;

ferry::relay::relay_options options_for(const relay_env& env) {
    ferry::relay::relay_options o;
    o.dsn = ferry::test::pg_dsn();
    o.schema = env.schema.name();
    o.brokers = ferry::test::kafka_brokers();
    o.lease_ttl = 2s;
    o.poll_max = 20ms;
    o.batch_size = 100;
    o.delivery_timeout = 10s;
    o.shutdown_timeout = 5s;
    return o;
}

// relay.ledger_payloads: false keeps every column of the ledger but the payloads (NULL), and
// Kafka still gets every payload unchanged; the default keeps them. One relay after the other
// on the same schema, so the two halves differ only in the option.
TEST(RelayTest, LedgerWithoutPayloadsKeepsEverythingElse) {
    relay_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto ledger_of = [&](const std::string& id) {
        pqxx::nontransaction q{conn};
        return q.exec_params("SELECT payload IS NULL, key, topic, \"offset\" >= 0 FROM " + env.q() +
                                 ".ledger WHERE message_id = $1::uuid",
                             id);
    };
    kafka_reader reader(env.topic);
    std::size_t published = 0;
    const auto run = [&](bool keep, const std::string& payload) {
        const auto id = enqueue_committed(conn, env.schema.name(), env.topic, {"k", payload});
        auto o = options_for(env);
        o.ledger_payloads = keep;
        ferry::relay::relay relay(o);
        relay.start();
        const auto records = reader.read(++published, 20s);
        EXPECT_TRUE(eventually([&] { return ledger_of(id).size() == 1; }, 10s));
        relay.stop();
        EXPECT_EQ(records.size(), published) << reader.last_error();
        EXPECT_TRUE(std::any_of(records.begin(), records.end(), [&](const kafka_record& r) {
            return r.header("ferry-message-id") == std::optional<std::string>(id) &&
                   r.value == std::optional<std::string>(payload);
        })) << id;
        return id;
    };
    const auto without = run(false, "kept-in-kafka-only");
    const auto with = run(true, "kept-in-both");
    const auto a = ledger_of(without);
    ASSERT_EQ(a.size(), 1u);
    EXPECT_TRUE(a[0][0].as<bool>()) << "relay.ledger_payloads: false kept the payload";
    EXPECT_EQ(a[0][1].as<std::string>(), "k");
    EXPECT_EQ(a[0][2].as<std::string>(), env.topic);
    EXPECT_TRUE(a[0][3].as<bool>());
    const auto b = ledger_of(with);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_FALSE(b[0][0].as<bool>()) << "the default lost the ledger's payload copy";
}

// The ledger's acked_at is when Kafka acknowledged the batch, not when its mark ran
// (expect_acked_at_is_the_acknowledgement).
TEST(RelayTest, LedgerRecordsWhenKafkaAcknowledgedEvenWhenTheMarkWaits) {
    relay_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    expect_acked_at_is_the_acknowledgement(env, options_for(env), [&](const std::string& key) {
        return enqueue_committed(conn, env.schema.name(), env.topic, {key, "payload-" + key});
    });
}

TEST(RelayTest, PublishesCommittedMessagesWithHeadersAndKeys) {
    relay_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto a =
        enqueue_committed(conn, env.schema.name(), env.topic,
                          {"order-1", "payload-a", R"({"trace-id":"t-1","tenant":"x"})"});
    const auto b = enqueue_committed(conn, env.schema.name(), env.topic, {"", "no-key"});
    const auto c = enqueue_committed(conn, env.schema.name(), env.topic, {"order-1", "payload-c"});
    std::string rolled_back;
    {
        pqxx::work tx{conn};
        rolled_back = enqueue(tx, env.schema.name(), env.topic, {"order-2", "never"});
        tx.abort();
    }

    ferry::relay::relay relay(options_for(env));
    relay.start();
    kafka_reader reader(env.topic);
    auto records = reader.read(3, 20s);
    records = reader.read_all(1s, 10s);
    ASSERT_EQ(records.size(), 3u) << reader.last_error();
    const auto check = check_delivery(records, {a, b, c});
    EXPECT_EQ(check.lost + check.duplicates + check.phantoms, 0u) << describe(check);
    EXPECT_FALSE(contains_id(records, rolled_back));

    const std::regex rfc3339(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
    std::map<std::string, kafka_record> by_id;
    for (const auto& r : records) {
        by_id[*r.header("ferry-message-id")] = r;
        EXPECT_TRUE(std::regex_match(r.header("ferry-created-at").value_or(""), rfc3339))
            << r.header("ferry-created-at").value_or("<none>");
    }
    EXPECT_EQ(by_id[a].key, std::optional<std::string>("order-1"));
    EXPECT_EQ(by_id[a].value, std::optional<std::string>("payload-a"));
    EXPECT_EQ(by_id[a].header("trace-id"), std::optional<std::string>("t-1"));
    EXPECT_EQ(by_id[a].header("tenant"), std::optional<std::string>("x"));
    EXPECT_EQ(by_id[b].key, std::nullopt) << "an empty outbox key is a null Kafka key";
    // Same key, same partition, in commit order.
    EXPECT_EQ(by_id[a].partition, by_id[c].partition);
    EXPECT_LT(by_id[a].offset, by_id[c].offset);

    // The ledger agrees with Kafka; the outbox is empty.
    EXPECT_TRUE(eventually(
        [&] { return count_rows("SELECT count(*) FROM " + env.q() + ".outbox") == 0; }, 5s));
    // ferry-created-at is the row's created_at, in UTC, milliseconds truncated.
    for (const auto& id : {a, b, c}) {
        pqxx::nontransaction q{conn};
        const auto expected = q.exec_params(
            "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
            "FROM " +
                env.q() + ".ledger WHERE message_id = $1::uuid",
            id);
        ASSERT_EQ(expected.size(), 1u);
        EXPECT_EQ(by_id[id].header("ferry-created-at"),
                  std::optional<std::string>(expected[0][0].as<std::string>()));
    }
    pqxx::nontransaction tx{conn};
    for (const auto& [id, r] : by_id) {
        const auto row = tx.exec_params(
            "SELECT partition, \"offset\", relay_epoch, lease_group, encode(payload, 'escape'), "
            "headers::text FROM " +
                env.q() + ".ledger WHERE message_id = $1::uuid",
            id);
        ASSERT_EQ(row.size(), 1u) << id;
        EXPECT_EQ(row[0][0].as<int>(), r.partition);
        EXPECT_EQ(row[0][1].as<long>(), r.offset);
        EXPECT_GE(row[0][2].as<long>(), 1);
        // The batch row's payload slice and headers element are this message's (ADR 0011).
        EXPECT_EQ(std::optional<std::string>(row[0][4].as<std::string>()), r.value) << id;
        EXPECT_EQ(row[0][5].as<std::string>(),
                  id == a ? R"({"tenant": "x", "trace-id": "t-1"})" : "{}")
            << id;
    }
    relay.stop();
    EXPECT_EQ(relay.counts().published, 3u);
}

// A transaction that enqueued first (lower id) but commits last must still be published. The
// negative control, a naive `id > last_id` cursor over the same commit history, misses it.
// The claim reads payloads in binary (binary_session): every byte value, an empty payload and a
// large one arrive in Kafka exactly as stored.
TEST(RelayTest, EveryByteValueAndEmptyAndLargePayloadsArriveUnchanged) {
    relay_env env;
    std::string every_byte;
    for (int b = 0; b < 256; ++b) every_byte += static_cast<char>(b);
    std::string large(100000, '\0');
    for (std::size_t i = 0; i < large.size(); ++i) large[i] = static_cast<char>((i * 7919) % 256);
    const std::vector<std::string> payloads = {every_byte, "", large};
    std::vector<std::string> ids;
    {
        pqxx::connection conn{ferry::test::pg_dsn()};
        pqxx::work tx{conn};
        for (std::size_t i = 0; i < payloads.size(); ++i) {
            std::string hex;
            for (const unsigned char c : payloads[i]) hex += fmt::format("{:02x}", c);
            ids.push_back(
                tx.exec_params("SELECT " + env.q() +
                                   ".enqueue($1, $2, decode($3, 'hex'), '{}'::jsonb)::text",
                               env.topic, "k" + std::to_string(i), hex)[0][0]
                    .as<std::string>());
        }
        tx.commit();
    }
    ferry::relay::relay relay(options_for(env));
    relay.start();
    kafka_reader reader(env.topic);
    const auto records = reader.read(3, 20s);
    ASSERT_EQ(records.size(), 3u) << reader.last_error();
    for (std::size_t i = 0; i < payloads.size(); ++i) {
        const auto it = std::find_if(records.begin(), records.end(), [&](const kafka_record& r) {
            return r.header("ferry-message-id") == ids[i];
        });
        ASSERT_NE(it, records.end()) << "payload " << i;
        ASSERT_TRUE(it->value.has_value()) << "payload " << i;
        EXPECT_EQ(*it->value, payloads[i]) << "payload " << i << " changed";
    }
    relay.stop();
}

TEST(RelayTest, LateCommitIsDeliveredAndANaiveCursorMissesIt) {
    relay_env env;
    {
        // The history the naive cursor reads: every outbox insert, visible when it commits.
        pqxx::connection conn{ferry::test::pg_dsn()};
        pqxx::work tx{conn};
        tx.exec("CREATE TABLE " + env.q() + ".history (id bigint, message_id uuid)");
        tx.exec("CREATE FUNCTION " + env.q() +
                ".record_history() RETURNS trigger LANGUAGE plpgsql AS "
                "$$BEGIN INSERT INTO " +
                env.q() +
                ".history VALUES (NEW.id, NEW.message_id); "
                "RETURN NEW; END$$");
        tx.exec("CREATE TRIGGER history AFTER INSERT ON " + env.q() +
                ".outbox FOR EACH ROW EXECUTE "
                "FUNCTION " +
                env.q() + ".record_history()");
        tx.commit();
    }
    ferry::relay::relay relay(options_for(env));
    relay.start();

    pqxx::connection late_conn{ferry::test::pg_dsn()};
    pqxx::work late_tx{late_conn};
    const auto late = enqueue(late_tx, env.schema.name(), env.topic, {"late-key", "late"});

    pqxx::connection conn{ferry::test::pg_dsn()};
    std::set<std::string> committed{late};
    for (int i = 0; i < 5; ++i) {
        committed.insert(
            enqueue_committed(conn, env.schema.name(), env.topic,
                              {"k" + std::to_string(i), "early-" + std::to_string(i)}));
    }
    kafka_reader reader(env.topic);
    auto records = reader.read(5, 20s);
    ASSERT_EQ(records.size(), 5u);
    EXPECT_FALSE(contains_id(records, late));

    // The naive cursor catches up with everything committed so far...
    long last_id = 0;
    std::set<std::string> naive_seen;
    auto naive_poll = [&] {
        pqxx::nontransaction tx{conn};
        for (const auto& row : tx.exec_params("SELECT id, message_id::text FROM " + env.q() +
                                                  ".history WHERE id > $1 ORDER BY id",
                                              last_id)) {
            last_id = row[0].as<long>();
            naive_seen.insert(row[1].as<std::string>());
        }
    };
    naive_poll();
    late_tx.commit();  // ...then the lower id commits.
    naive_poll();

    records = reader.read(6, 20s);
    records = reader.read_all(500ms, 10s);
    const auto check = check_delivery(records, committed);
    EXPECT_EQ(check.lost, 0u) << describe(check);
    EXPECT_TRUE(contains_id(records, late)) << "the late commit was not published";
    // Negative control: the checker would have caught the cursor bug.
    EXPECT_EQ(naive_seen.count(late), 0u) << "the naive cursor unexpectedly saw the late row";
    EXPECT_EQ(naive_seen.size(), committed.size() - 1);
    relay.stop();
}

// 8 producer threads on 100 keys serialize on a per-key aggregate row (SELECT ... FOR UPDATE);
// per key, the consumed order must be the commit order (key_seq 1, 2, 3, ...).
void per_key_order_with_concurrent_producers(std::size_t mark_lanes) {
    relay_env env;
    auto opts = options_for(env);
    opts.batch_size = 50;
    opts.lease_groups = 4;  // one instance holds all four groups
    opts.mark_lanes = mark_lanes;
    expect_per_key_order(
        env, opts, 8, 100, 100, false,
        [](ferry::relay::relay& relay, std::size_t) { EXPECT_EQ(relay.groups_held(), 4); });
}

TEST(RelayTest, PerKeyOrderWithConcurrentProducers) { per_key_order_with_concurrent_producers(1); }

// relay.mark_lanes: 2: marks of a group run at once and may commit out of batch order; Kafka's
// order is fixed before any mark, so each key's messages still arrive in commit order, once.
TEST(RelayTest, PerKeyOrderWithConcurrentProducersAndTwoMarkLanes) {
    per_key_order_with_concurrent_producers(2);
}

TEST(RelayTest, DelayedMessageWaitsUntilAvailable) {
    relay_env env;
    ferry::relay::relay relay(options_for(env));
    relay.start();
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto enqueued_at = std::chrono::steady_clock::now();
    const auto delayed =
        enqueue_committed(conn, env.schema.name(), env.topic, {"d", "delayed", "{}", 2000});
    const auto now = enqueue_committed(conn, env.schema.name(), env.topic, {"n", "now"});
    kafka_reader reader(env.topic);
    auto records = reader.read(1, 10s);
    ASSERT_GE(records.size(), 1u);
    EXPECT_TRUE(contains_id(records, now));
    if (std::chrono::steady_clock::now() - enqueued_at < 1500ms) {
        EXPECT_FALSE(contains_id(records, delayed)) << "published before available_at";
    }
    records = reader.read(2, 15s);
    ASSERT_TRUE(contains_id(records, delayed));
    EXPECT_GE(std::chrono::steady_clock::now() - enqueued_at, 2s);
    relay.stop();
}

TEST(RelayTest, ExpiredMessageLandsInExpiredTableAndNeverInKafka) {
    relay_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto expired =
        enqueue_committed(conn, env.schema.name(), env.topic, {"e", "too late", "{}", -1, 1});
    std::this_thread::sleep_for(20ms);
    ferry::relay::relay relay(options_for(env));
    relay.start();
    const auto fresh = enqueue_committed(conn, env.schema.name(), env.topic, {"e", "fresh"});
    kafka_reader reader(env.topic);
    auto records = reader.read(1, 15s);
    records = reader.read_all(1s, 10s);
    EXPECT_TRUE(contains_id(records, fresh));
    EXPECT_FALSE(contains_id(records, expired)) << "an expired message reached Kafka";
    EXPECT_EQ(records.size(), 1u);
    ASSERT_TRUE(eventually([&] { return relay.counts().expired == 1; }, 10s));
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".expired WHERE message_id = '" +
                         expired + "'"),
              1);
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".outbox"), 0);
    EXPECT_EQ(relay.counts().expired, 1u);
    relay.stop();
}

// A message Kafka refuses permanently (larger than the producer's message.max.bytes) is parked
// with its reason, holds back only the later messages of its own key, and other keys flow.
TEST(RelayTest, PoisonMessageIsParkedAndHoldsOnlyItsKey) {
    relay_env env;
    auto opts = options_for(env);
    opts.properties["message.max.bytes"] = "100000";
    ferry::relay::relay relay(opts);
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto poison = enqueue_committed(conn, env.schema.name(), env.topic,
                                          {"poisoned", std::string(200000, 'x')});
    const auto held = enqueue_committed(conn, env.schema.name(), env.topic, {"poisoned", "after"});
    std::set<std::string> others;
    for (int i = 0; i < 10; ++i) {
        others.insert(enqueue_committed(conn, env.schema.name(), env.topic,
                                        {"healthy-" + std::to_string(i % 3), std::to_string(i)}));
    }
    relay.start();
    kafka_reader reader(env.topic);
    auto records = reader.read(others.size(), 20s);
    // Later rows of other keys keep flowing while the poison is parked.
    const auto more = enqueue_committed(conn, env.schema.name(), env.topic, {"healthy-0", "more"});
    others.insert(more);
    records = reader.read(others.size(), 20s);
    records = reader.read_all(1s, 10s);
    const auto check = check_delivery(records, others);
    EXPECT_EQ(check.lost + check.duplicates, 0u) << describe(check);
    EXPECT_FALSE(contains_id(records, poison));
    EXPECT_FALSE(contains_id(records, held)) << "a later message overtook the parked one";
    EXPECT_TRUE(with_key(records, "poisoned").empty());

    pqxx::nontransaction tx{conn};
    const auto parked =
        tx.exec("SELECT message_id::text, error_code, reason, id FROM " + env.q() + ".parked");
    ASSERT_EQ(parked.size(), 1u);
    EXPECT_EQ(parked[0][0].as<std::string>(), poison);
    EXPECT_EQ(parked[0][1].as<std::string>(), "MSG_SIZE_TOO_LARGE");
    EXPECT_FALSE(parked[0][2].as<std::string>().empty());
    const auto still_waiting = tx.exec("SELECT message_id::text FROM " + env.q() + ".outbox");
    ASSERT_EQ(still_waiting.size(), 1u);
    EXPECT_EQ(still_waiting[0][0].as<std::string>(), held);
    EXPECT_EQ(relay.counts().parked, 1u);
    relay.stop();

    // The operator raises the limit and retries: the parked row returns with its original id,
    // so it is published before the message that waited behind it.
    const auto parked_id = parked[0][3].as<long>();
    EXPECT_TRUE(
        tx.exec_params("SELECT " + env.q() + ".retry_parked($1)", parked_id)[0][0].as<bool>());
    EXPECT_FALSE(
        tx.exec_params("SELECT " + env.q() + ".retry_parked($1)", parked_id)[0][0].as<bool>());
    auto fixed = options_for(env);
    fixed.properties["message.max.bytes"] = "1000000";
    ferry::relay::relay retry_relay(fixed);
    retry_relay.start();
    records = reader.read(others.size() + 2, 20s);
    const auto poisoned = with_key(records, "poisoned");
    ASSERT_EQ(poisoned.size(), 2u);
    EXPECT_EQ(poisoned[0].header("ferry-message-id"), poison);
    EXPECT_EQ(poisoned[1].header("ferry-message-id"), held);
    EXPECT_EQ(poisoned[0].value->size(), 200000u);
    retry_relay.stop();
}

TEST(RelayTest, TwoInstancesShareLeaseGroupsFairly) {
    relay_env env;
    auto opts = options_for(env);
    opts.lease_groups = 4;
    opts.lease_ttl = 1500ms;
    auto a_opts = opts;
    a_opts.instance_id = "relay-a";
    auto b_opts = opts;
    b_opts.instance_id = "relay-b";
    ferry::relay::relay a(a_opts);
    a.start();
    ASSERT_TRUE(eventually([&] { return a.groups_held() == 4; }, 10s));
    ferry::relay::relay b(b_opts);
    b.start();
    EXPECT_TRUE(eventually([&] { return a.groups_held() == 2 && b.groups_held() == 2; }, 15s))
        << "a=" << a.groups_held() << " b=" << b.groups_held();

    pqxx::connection conn{ferry::test::pg_dsn()};
    std::set<std::string> committed;
    for (int i = 0; i < 60; ++i) {
        committed.insert(enqueue_committed(conn, env.schema.name(), env.topic,
                                           {"key-" + std::to_string(i), std::to_string(i)}));
    }
    kafka_reader reader(env.topic);
    auto records = reader.read(committed.size(), 30s);
    records = reader.read_all(1s, 10s);
    const auto check = check_delivery(records, committed);
    EXPECT_EQ(check.lost + check.duplicates + check.phantoms, 0u) << describe(check);
    ASSERT_TRUE(eventually(
        [&] { return count_rows("SELECT count(*) FROM " + env.q() + ".outbox") == 0; }, 10s));
    EXPECT_GT(a.counts().published, 0u);
    EXPECT_GT(b.counts().published, 0u);

    // When b stops it releases its groups and a takes them all back.
    b.stop();
    EXPECT_TRUE(eventually([&] { return a.groups_held() == 4; }, 15s)) << a.groups_held();
    a.stop();
}

// An instance configured with a different number of lease groups would map keys to different
// groups (two owners for one key): while it is live, it acquires nothing.
TEST(RelayTest, DisagreeingLeaseGroupCountAcquiresNothing) {
    relay_env env;
    auto opts = options_for(env);
    opts.lease_groups = 2;
    opts.instance_id = "two-groups";
    ferry::relay::relay a(opts);
    a.start();
    ASSERT_TRUE(eventually([&] { return a.groups_held() == 2; }, 10s));
    auto other = options_for(env);
    other.lease_groups = 4;
    other.instance_id = "four-groups";
    ferry::relay::relay b(other);
    b.start();
    std::this_thread::sleep_for(3s);
    EXPECT_EQ(b.groups_held(), 0);
    EXPECT_EQ(a.groups_held(), 2) << "holders keep (and renew) what they have";
    EXPECT_EQ(
        count_rows("SELECT count(*) FROM " + env.q() + ".relay_lease WHERE owner = 'four-groups'"),
        0);
    b.stop();
    a.stop();
}

TEST(RelayTest, PublishedLedgerRetentionDeletesOnlyOldRows) {
    relay_env env;
    {
        pqxx::connection conn{ferry::test::pg_dsn()};
        pqxx::work tx{conn};
        tx.exec("INSERT INTO " + env.q() +
                ".published (message_id, topic, key, partition, "
                "\"offset\", created_at, published_at, relay_epoch, lease_group) SELECT "
                "gen_random_uuid(), 't', 'k', 0, g, now(), now() - interval '2 days', 1, 0 "
                "FROM generate_series(1, 7000) g");
        // And 7000 old batch rows, as marks since migration 0090 write them.
        tx.exec(
            "INSERT INTO " + env.q() +
            ".published_batch (published_at, relay_epoch, lease_group, message_count, "
            "message_ids, topics, keys, partitions, offsets, created_ats) SELECT now() - "
            "interval '2 days', 1, 0, 1, ARRAY[gen_random_uuid()], '{t}', '{k}', '{0}', ARRAY[g], "
            "ARRAY[now()] FROM generate_series(1, 7000) g");
        tx.commit();
    }
    auto opts = options_for(env);
    opts.published_retention = 24h;
    ferry::relay::relay relay(opts);
    relay.start();
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto fresh = enqueue_committed(conn, env.schema.name(), env.topic, {"r", "fresh"});
    kafka_reader reader(env.topic);
    ASSERT_EQ(reader.read(1, 15s).size(), 1u);
    // 7000 old rows of each table take two bounded deletes (5000 + 2000); the fresh row stays.
    EXPECT_TRUE(eventually(
        [&] { return count_rows("SELECT count(*) FROM " + env.q() + ".ledger") == 1; }, 10s))
        << count_rows("SELECT count(*) FROM " + env.q() + ".ledger");
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".ledger WHERE message_id = '" +
                         fresh + "'"),
              1);
    relay.stop();
}

TEST(RelayTest, MetricsAndHealthEndpoints) {
    relay_env env;
    ferry::metrics::registry metrics;
    ferry::relay::relay relay(options_for(env), &metrics);
    relay.start();
    ferry::relay::http_server http("127.0.0.1:0", metrics, [&] { return relay.ready(); });
    ASSERT_GT(http.port(), 0);
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto id = enqueue_committed(conn, env.schema.name(), env.topic, {"m", "metrics"});
    kafka_reader reader(env.topic);
    ASSERT_EQ(reader.read(1, 15s).size(), 1u);

    // Kafka has the record; the mark (and the counter) follow right after.
    ASSERT_TRUE(eventually([&] { return relay.counts().published == 1; }, 10s));
    httplib::Client client("127.0.0.1", http.port());
    EXPECT_TRUE(eventually(
        [&] {
            auto res = client.Get("/readyz");
            return res && res->status == 200;
        },
        10s));
    auto health = client.Get("/healthz");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
    auto res = client.Get("/metrics");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    for (const char* name :
         {"ferry_outbox_pending ", "ferry_outbox_oldest_pending_age_seconds ",
          "ferry_relay_published_total 1", "ferry_relay_publish_errors_total{kind=\"transient\"} ",
          "ferry_relay_batch_size_bucket{le=\"1\"} 1", "ferry_relay_commit_to_ack_seconds_count 1",
          "ferry_relay_parked ", "ferry_relay_expired_total ", "ferry_outbox_expired ",
          "ferry_relay_lease_groups_held 1", "ferry_relay_epoch{group=\"0\"} ",
          "ferry_outbox_dead_tuples "}) {
        EXPECT_THAT(res->body, HasSubstr(name));
    }
    // The exposition passes Prometheus' own linter (promtool, Debian package `prometheus`).
    const auto path = "/tmp/" + ferry::test::unique_name("relay_metrics") + ".prom";
    {
        std::ofstream out(path);
        out << res->body;
    }
    const auto check = ferry::test::run_command("promtool check metrics < " + path + " 2>&1");
    EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << res->body;
    std::remove(path.c_str());
    relay.stop();
    auto not_ready = client.Get("/readyz");
    ASSERT_TRUE(not_ready);
    EXPECT_EQ(not_ready->status, 503);
    (void)id;
}

// Hole 9 of issue 10: headers the relay cannot parse (a number beyond a double's range, which
// jsonb accepts) are counted and the row is parked with the reason; the message is never
// published with its headers silently changed, and later rows of its key wait behind it.
// Header values that are numbers are passed on exactly as stored (no rounding through double).
// enqueue() accepts only a flat string map, so such rows come from writers that INSERT into the
// outbox table directly (its CHECK only requires a JSON object); the test does the same.
TEST(RelayTest, UnparseableHeadersAreParkedNeverPublishedChanged) {
    relay_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    auto insert_raw = [&](const std::string& key, const std::string& payload,
                          const std::string& headers) {
        pqxx::work tx{conn};
        const auto id = tx.exec_params("INSERT INTO " + env.q() +
                                           ".outbox (message_id, topic, key, payload, headers) "
                                           "VALUES (gen_random_uuid(), $1, $2, convert_to($3, "
                                           "'UTF8'), $4::jsonb) RETURNING message_id::text",
                                       env.topic, key, payload, headers)[0][0]
                            .as<std::string>();
        tx.commit();
        return id;
    };
    const auto bad = insert_raw("hdr", "bad", R"({"trace":"t","huge":1e400})");
    const auto after = insert_raw("hdr", "after", "{}");
    const auto exact = insert_raw("other", "exact", R"({"big":12345678901234567890123,"f":0.1})");
    ferry::metrics::registry metrics;
    ferry::relay::relay relay(options_for(env), &metrics);
    relay.start();
    kafka_reader reader(env.topic);
    auto records = reader.read(1, 20s);
    ASSERT_TRUE(eventually([&] { return relay.counts().parked == 1; }, 10s))
        << "the row with unparseable headers was not parked";
    records = reader.read_all(1s, 10s);
    EXPECT_FALSE(contains_id(records, bad)) << "published with its headers changed";
    EXPECT_FALSE(contains_id(records, after)) << "a later row of the key overtook the parked one";
    ASSERT_TRUE(contains_id(records, exact));
    for (const auto& r : records) {
        if (r.header("ferry-message-id") != exact) continue;
        EXPECT_EQ(r.header("big"), std::optional<std::string>("12345678901234567890123"));
        EXPECT_EQ(r.header("f"), std::optional<std::string>("0.1"));
    }
    pqxx::nontransaction tx{conn};
    const auto parked =
        tx.exec("SELECT message_id::text, error_code, reason FROM " + env.q() + ".parked");
    ASSERT_EQ(parked.size(), 1u);
    EXPECT_EQ(parked[0][0].as<std::string>(), bad);
    EXPECT_EQ(parked[0][1].as<std::string>(), "HEADERS_INVALID");
    EXPECT_THAT(parked[0][2].as<std::string>(), HasSubstr("headers"));
    EXPECT_THAT(metrics.serialize(), HasSubstr("ferry_relay_invalid_headers_total 1\n"));
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".outbox"), 1) << "`after` waits";
    relay.stop();
}

// Hole 3 of issue 10: the published ledger stays bounded when rows arrive far faster than the
// old trim (at most ~100k rows a minute) could delete them. Rows are written straight into the
// ledger, as the relay's marks would, at well above 1.7k rows/s, with a 2 s retention.
TEST(RelayTest, PublishedLedgerStaysBoundedUnderSustainedLoad) {
    relay_env env;
    auto opts = options_for(env);
    opts.published_retention = 2s;
    ferry::relay::relay relay(opts);
    relay.start();
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto t0 = std::chrono::steady_clock::now();
    long inserted = 0;
    long peak_late = 0;
    while (std::chrono::steady_clock::now() - t0 < 14s) {
        pqxx::work tx{conn};
        // A batch row of 4000 messages, as the relay's mark writes it (migration 0090).
        tx.exec("INSERT INTO " + env.q() +
                ".published_batch (relay_epoch, lease_group, message_count, message_ids, topics, "
                "keys, partitions, offsets, created_ats, payload_lens, payloads, headers) SELECT "
                "1, 0, count(*), array_agg(gen_random_uuid()), array_agg('t'::text), "
                "array_agg('k'::text), "
                "array_agg(0), array_agg(g::bigint), array_agg(now()), array_agg(1), "
                "string_agg('\\x00'::bytea, ''::bytea), array_agg('{}'::jsonb) FROM "
                "generate_series(1, 4000) g");
        tx.commit();
        inserted += 4000;
        if (std::chrono::steady_clock::now() - t0 > 8s) {
            peak_late =
                std::max(peak_late, count_rows("SELECT count(*) FROM " + env.q() + ".ledger"));
        }
        std::this_thread::sleep_for(100ms);
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double rate = static_cast<double>(inserted) / secs;
    std::cerr << "[ledger] inserted=" << inserted << " rate=" << rate
              << "/s peak_after_8s=" << peak_late << "\n";
    EXPECT_GT(rate, 5000.0) << "the load is not well above 1.7k rows/s";
    // Rows live at most retention + one partition width + one maintenance period (~4 s here);
    // 7 s of rows is the bound, while an unbounded ledger holds all ~14 s of them.
    EXPECT_LE(static_cast<double>(peak_late), rate * 7.0);
    // The ledger stays readable by name, as reconciliation reads it.
    EXPECT_GT(count_rows("SELECT count(*) FROM " + env.q() +
                         ".ledger WHERE published_at > now() - interval '1 second'"),
              0);
    relay.stop();
}

// Hole 4 of issue 10: with a 1M-row backlog, counting the outbox takes longer than a short
// statement_timeout. The lease keeper only renews, so the lease and readiness never flap.
TEST(RelayTest, LeaseAndReadinessHoldWithAMillionRowBacklog) {
    relay_env env;
    {
        pqxx::connection conn{ferry::test::pg_dsn()};
        pqxx::work tx{conn};
        // Delayed rows (available in an hour): counted by the gauges, never claimed.
        tx.exec("INSERT INTO " + env.q() +
                ".outbox (message_id, topic, key, payload, available_at) SELECT gen_random_uuid(), "
                "'backlog', 'k' || (g % 1000), "
                "'\\x00', now() + interval '1 hour' FROM generate_series(1, 1000000) g");
        tx.commit();
        pqxx::nontransaction vac{conn};
        vac.exec("ANALYZE " + env.q() + ".outbox");
    }
    auto opts = options_for(env);
    opts.statement_timeout = 100ms;
    opts.lease_ttl = 900ms;  // renewal every 300 ms
    ferry::metrics::registry metrics;
    ferry::relay::relay relay(opts, &metrics);
    relay.start();
    ASSERT_TRUE(eventually([&] { return relay.ready() && relay.groups_held() == 1; }, 15s));
    const auto epoch = count_rows("SELECT epoch FROM " + env.q() + ".relay_lease");
    int not_ready = 0;
    int not_held = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < 6s) {
        if (!relay.ready()) ++not_ready;
        if (relay.groups_held() != 1) ++not_held;
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(not_ready, 0) << "/readyz flapped";
    EXPECT_EQ(not_held, 0) << "the lease flapped";
    EXPECT_EQ(count_rows("SELECT epoch FROM " + env.q() + ".relay_lease"), epoch)
        << "the group was lost and re-acquired";
    relay.stop();
}

// Gives lease group 0 to `owner` at `epoch`, expiring `expires` (an interval) from now.
void set_lease(pqxx::connection& conn, const relay_env& env, const std::string& owner, int epoch,
               const std::string& expires) {
    pqxx::work tx{conn};
    tx.exec_params("INSERT INTO " + env.q() +
                       ".relay_lease (lease_group, owner, epoch, expires_at) VALUES (0, $1, $2, "
                       "clock_timestamp() + $3::interval) ON CONFLICT (lease_group) DO UPDATE "
                       "SET owner = excluded.owner, epoch = excluded.epoch, expires_at = "
                       "excluded.expires_at",
                   owner, epoch, expires);
    tx.commit();
}

// The polling mark finds its rows by the address the claim read (ctid), and deletes a row only
// if it still holds the claimed id there: a row that moved is left in the outbox (published
// again later, never lost), and a new row that took a claimed row's address is never deleted.
TEST(RelayMarkerTest, MarkFindsRowsByAddressAndNeverDeletesAnotherRowThere) {
    relay_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    for (const auto* key : {"a", "b", "c"}) {
        (void)enqueue_committed(conn, env.schema.name(), env.topic, {key, "payload"});
    }
    set_lease(conn, env, "me", 7, "1 hour");
    struct claimed {
        std::int64_t id;
        std::string ctid;
    };
    const auto read_rows = [&] {
        std::vector<claimed> rows;
        pqxx::nontransaction tx{conn};
        for (const auto& r :
             tx.exec("SELECT id, ctid::text FROM " + env.q() + ".outbox ORDER BY id")) {
            rows.push_back({r[0].as<std::int64_t>(), r[1].as<std::string>()});
        }
        return rows;
    };
    const auto rows = read_rows();  // what the claim read
    ASSERT_EQ(rows.size(), 3u);
    {
        // After the claim: a moves (an UPDATE writes a new version elsewhere); c is deleted by
        // someone else and a new row d takes its address. Whether a VACUUM frees c's slot for d
        // depends on other sessions' snapshots, so the test gives c's entry d's address itself.
        pqxx::nontransaction tx{conn};
        tx.exec("UPDATE " + env.q() +
                ".outbox SET available_at = available_at WHERE id = " + std::to_string(rows[0].id));
        tx.exec("DELETE FROM " + env.q() + ".outbox WHERE id = " + std::to_string(rows[2].id));
    }
    (void)enqueue_committed(conn, env.schema.name(), env.topic, {"d", "payload"});
    const auto now = read_rows();
    ASSERT_EQ(now.size(), 3u);
    const auto d = now[2];

    ferry::relay::detail::mark_request req;
    req.group = 0;
    req.epoch = 7;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        req.publish.push_back({rows[i].id, 0, static_cast<std::int64_t>(10 + i), rows[i].ctid});
    }
    req.publish[2].ctid = d.ctid;  // c's claimed address, now holding d
    EXPECT_EQ(ferry::relay::detail::mark_batch(conn, env.q(), "me", req),
              ferry::relay::detail::mark_outcome::marked);
    {
        std::vector<std::int64_t> left;
        for (const auto& r : read_rows()) left.push_back(r.id);
        EXPECT_EQ(left, (std::vector<std::int64_t>{rows[0].id, d.id}))
            << "a moved and d was never claimed: only b may go";
        pqxx::nontransaction tx{conn};
        const auto ledger = tx.exec("SELECT message_count, keys::text, offsets::text FROM " +
                                    env.q() + ".published_batch");
        ASSERT_EQ(ledger.size(), 1u);
        EXPECT_EQ(ledger[0][0].as<int>(), 1);
        EXPECT_EQ(ledger[0][1].as<std::string>(), "{b}");
        EXPECT_EQ(ledger[0][2].as<std::string>(), "{11}");
    }

    // A request without addresses finds its rows by id: a is marked where it moved to.
    ferry::relay::detail::mark_request by_id;
    by_id.group = 0;
    by_id.epoch = 7;
    by_id.publish.push_back({rows[0].id, 0, 20, ""});
    EXPECT_EQ(ferry::relay::detail::mark_batch(conn, env.q(), "me", by_id),
              ferry::relay::detail::mark_outcome::marked);
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".outbox"), 1) << "d stays";
}

// A mark is fenced by the lease: under another owner, a later epoch or an expired lease it
// moves nothing and records nothing, whether it finds its rows by address or by id; under its
// own lease the same request marks. (A publish-only mark checks the lease inside its one
// statement.)
TEST(RelayMarkerTest, MarkUnderALeaseThatIsNoLongerOursMovesNothing) {
    relay_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    for (const auto* key : {"a", "b"}) {
        (void)enqueue_committed(conn, env.schema.name(), env.topic, {key, "payload"});
    }
    ferry::relay::detail::mark_request by_tid, by_id;
    by_tid.group = by_id.group = 0;
    by_tid.epoch = by_id.epoch = 7;
    {
        pqxx::nontransaction tx{conn};
        std::int64_t offset = 0;
        for (const auto& r :
             tx.exec("SELECT id, ctid::text FROM " + env.q() + ".outbox ORDER BY id")) {
            by_tid.publish.push_back({r[0].as<std::int64_t>(), 0, offset, r[1].as<std::string>()});
            by_id.publish.push_back({r[0].as<std::int64_t>(), 0, offset++, ""});
        }
    }
    ASSERT_EQ(by_tid.publish.size(), 2u);
    const auto untouched = [&] {
        return count_rows("SELECT count(*) FROM " + env.q() + ".outbox") == 2 &&
               count_rows("SELECT count(*) FROM " + env.q() + ".published_batch") == 0;
    };
    for (const auto& [owner, epoch, expires] :
         {std::tuple<std::string, int, std::string>{"other", 7, "1 hour"},
          {"me", 8, "1 hour"},
          {"me", 7, "-1 second"}}) {
        set_lease(conn, env, owner, epoch, expires);
        for (const auto* req : {&by_tid, &by_id}) {
            EXPECT_EQ(ferry::relay::detail::mark_batch(conn, env.q(), "me", *req),
                      ferry::relay::detail::mark_outcome::fenced)
                << owner << " epoch " << epoch << " expires in " << expires;
            EXPECT_TRUE(untouched()) << owner << " epoch " << epoch;
        }
    }
    set_lease(conn, env, "me", 7, "1 hour");
    EXPECT_EQ(ferry::relay::detail::mark_batch(conn, env.q(), "me", by_tid),
              ferry::relay::detail::mark_outcome::marked);
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".outbox"), 0);
    EXPECT_EQ(count_rows("SELECT sum(message_count) FROM " + env.q() + ".published_batch"), 2);
}

// Marks of one group share its lease row (FOR KEY SHARE), so two can run at once; the lease
// keeper's renewal, which changes only expires_at, neither waits for them nor makes them wait;
// and a change of owner or epoch (a key update since migration 0107) waits for every mark in
// flight, so no mark that passed its check commits after the group changed hands. Before 0107
// the fence took the row FOR UPDATE: the second mark and the renewal waited for the first mark.
TEST(RelayMarkerTest, MarksShareTheLeaseRowAndAHandOverWaitsForThem) {
    relay_env env;
    pqxx::connection in_flight{ferry::test::pg_dsn()}, second{ferry::test::pg_dsn()},
        keeper{ferry::test::pg_dsn()};
    for (auto* c : {&second, &keeper}) {
        pqxx::nontransaction tx{*c};
        tx.exec("SET lock_timeout = '1s'");
    }
    (void)enqueue_committed(second, env.schema.name(), env.topic, {"a", "payload"});
    set_lease(second, env, "me", 7, "1 hour");
    ferry::relay::detail::mark_request req;
    req.group = 0;
    req.epoch = 7;
    {
        pqxx::nontransaction tx{second};
        const auto r = tx.exec("SELECT id, ctid::text FROM " + env.q() + ".outbox");
        ASSERT_EQ(r.size(), 1u);
        req.publish.push_back({r[0][0].as<std::int64_t>(), 0, 0, r[0][1].as<std::string>()});
    }
    const auto lease_is_locked = [&](const std::string& sql) {
        try {
            pqxx::work tx{keeper};
            tx.exec(sql);
            tx.commit();
            return false;
        } catch (const pqxx::sql_error& e) {
            EXPECT_EQ(e.sqlstate(), "55P03") << e.what();  // lock_not_available
            return true;
        }
    };

    // A mark in flight: its transaction holds the fence.
    pqxx::work mark_in_flight{in_flight};
    ASSERT_TRUE(ferry::relay::detail::lease_fence(mark_in_flight, env.q(), "me", 7, 0));

    try {
        EXPECT_EQ(ferry::relay::detail::mark_batch(second, env.q(), "me", req),
                  ferry::relay::detail::mark_outcome::marked);
    } catch (const pqxx::sql_error& e) {
        ADD_FAILURE() << "a second mark of the group waited for the first: " << e.what();
    }
    EXPECT_FALSE(lease_is_locked("UPDATE " + env.q() +
                                 ".relay_lease SET expires_at = clock_timestamp() + interval "
                                 "'1 hour' WHERE lease_group = 0 AND owner = 'me' AND epoch = 7"))
        << "the renewal waited for a mark";
    EXPECT_TRUE(lease_is_locked("UPDATE " + env.q() +
                                ".relay_lease SET owner = 'other', epoch = epoch + 1 WHERE "
                                "lease_group = 0"))
        << "a takeover did not wait for the mark in flight";
    EXPECT_TRUE(lease_is_locked("UPDATE " + env.q() +
                                ".relay_lease SET owner = NULL, expires_at = NULL WHERE "
                                "lease_group = 0"))
        << "a release did not wait for the mark in flight";

    mark_in_flight.commit();
    EXPECT_FALSE(lease_is_locked("UPDATE " + env.q() +
                                 ".relay_lease SET owner = 'other', epoch = epoch + 1 WHERE "
                                 "lease_group = 0"));
    pqxx::work late{in_flight};
    EXPECT_FALSE(ferry::relay::detail::lease_fence(late, env.q(), "me", 7, 0))
        << "a mark after the hand-over passed the fence";
}

}  // namespace
