// Integration tests of ferry-relay in WAL mode (relay.source: wal, ADR 0070) on the real
// PostgreSQL 15 (wal_level = logical) and the embedded Kafka: what arrives in Kafka, and what the
// relay records in the ledger, parked and expired tables. Each test has its own schema, slot,
// publication and topic.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>

#include "ack_time_check.hpp"
#include "ferry/common/error.hpp"
#include "ferry/common/metrics.hpp"
#include "ferry/outbox/writer.hpp"
#include "ferry/reconcile/held.hpp"
#include "ferry/relay/relay.hpp"
#include "relay_fixture.hpp"

namespace {

using namespace ferry::relay_test;
using ferry::test::kafka_reader;
using ferry::test::kafka_record;
using testing::HasSubstr;

ferry::relay::relay_options wal_options(const wal_env& env) {
    ferry::relay::relay_options o;
    o.dsn = ferry::test::pg_dsn();
    o.schema = env.schema.name();
    o.brokers = ferry::test::kafka_brokers();
    o.lease_ttl = 2s;
    o.poll_max = 20ms;
    o.batch_size = 100;
    o.delivery_timeout = 10s;
    o.shutdown_timeout = 5s;
    o.source = "wal";
    o.wal_slot = env.slot;
    o.wal_publication = env.publication;
    return o;
}

std::vector<std::string> payloads_of_key(const std::vector<kafka_record>& records,
                                         const std::string& key) {
    std::vector<std::string> out;
    for (const auto& r : records) {
        if (r.key && *r.key == key) out.push_back(r.value.value_or(""));
    }
    return out;
}

long ledger_count(const wal_env& env) {
    return count_rows("SELECT count(*) FROM " + env.q() + ".ledger");
}

// Whatever the relay did, it never touched the outbox table: no row, no insert, no dead tuple.
ferry::outbox::message wal_message(const wal_env& env, std::string key, std::string payload) {
    ferry::outbox::message m;
    m.topic = env.topic;
    m.key = std::move(key);
    m.payload = std::move(payload);
    return m;
}

// The C++ writer of `env`'s schema in WAL mode (outbox.mode: wal).
ferry::outbox::writer wal_writer(const wal_env& env) {
    ferry::outbox::writer_options wo;
    wo.schema = env.schema.name();
    wo.mode = ferry::outbox::emit_mode::wal;
    return ferry::outbox::writer(wo);
}

void expect_outbox_untouched(const wal_env& env) {
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".outbox"), 0);
    EXPECT_EQ(count_rows("SELECT coalesce(sum(n_tup_ins + n_dead_tup), 0) FROM "
                         "pg_stat_user_tables WHERE schemaname = '" +
                         env.schema.name() + "' AND relname = 'outbox'"),
              0);
}

// Per key, commit order, not the order in which the transactions began or wrote: B began after
// A and wrote after it, but committed first, so B's message is published first.
TEST(WalRelayTest, PublishesEachKeyInCommitOrderNotBeginOrder) {
    wal_env env;
    pqxx::connection ca{ferry::test::pg_dsn()};
    pqxx::connection cb{ferry::test::pg_dsn()};
    std::string a, b, c;
    {
        pqxx::work ta{ca};
        a = enqueue_wal(ta, env.schema.name(), env.topic, "order-1", "A");
        pqxx::work tb{cb};
        b = enqueue_wal(tb, env.schema.name(), env.topic, "order-1", "B");
        c = enqueue_wal(tb, env.schema.name(), env.topic, "order-2", "C");
        tb.commit();
        ta.commit();
    }
    ferry::relay::relay relay(wal_options(env));
    relay.start();
    kafka_reader reader(env.topic);
    const auto records = reader.read(3, 60s);
    ASSERT_EQ(records.size(), 3u) << reader.last_error();
    EXPECT_EQ(payloads_of_key(records, "order-1"), (std::vector<std::string>{"B", "A"}));
    EXPECT_EQ(payloads_of_key(records, "order-2"), (std::vector<std::string>{"C"}));
    ASSERT_TRUE(eventually([&] { return ledger_count(env) == 3; }, 30s));
    relay.stop();
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".ledger WHERE message_id IN ('" + a +
                         "', '" + b + "', '" + c + "')"),
              3);
    expect_outbox_untouched(env);
}

// A rolled-back transaction is never decoded, so never published; the messages around it are,
// with their headers and ids, and the ledger records each once.
TEST(WalRelayTest, RolledBackTransactionIsNeverPublished) {
    wal_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    std::string first, rolled_back, last;
    {
        pqxx::work tx{conn};
        first = enqueue_wal(tx, env.schema.name(), env.topic, "k", "first", R"({"trace":"t-1"})");
        tx.commit();
    }
    {
        pqxx::work tx{conn};
        rolled_back = enqueue_wal(tx, env.schema.name(), env.topic, "k", "never");
        tx.abort();
    }
    ferry::relay::relay relay(wal_options(env));
    relay.start();
    {
        pqxx::work tx{conn};
        last = enqueue_wal(tx, env.schema.name(), env.topic, "k", "last");
        tx.commit();
    }
    kafka_reader reader(env.topic);
    (void)reader.read(2, 60s);
    const auto records = reader.read_all(1s, 30s);
    ASSERT_EQ(records.size(), 2u) << reader.last_error();
    EXPECT_EQ(records[0].header("ferry-message-id"), first);
    EXPECT_EQ(records[0].header("trace"), "t-1");
    EXPECT_TRUE(records[0].header("ferry-created-at").has_value());
    EXPECT_EQ(records[1].header("ferry-message-id"), last);
    ASSERT_TRUE(eventually([&] { return ledger_count(env) == 2; }, 30s));
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".ledger WHERE message_id = '" +
                         rolled_back + "'"),
              0);
    // Each ledger row carries its own message's place in Kafka, payload and headers (the batch
    // row's arrays and payload slice line up, ADR 0011), its key and topic, and the instant the
    // record's ferry-created-at names (the ledger's arrays travel in binary: a wrong epoch or
    // byte order would show here).
    pqxx::nontransaction q{conn};
    for (const auto& r : records) {
        const auto row = q.exec_params(
            "SELECT partition, \"offset\", encode(payload, 'escape'), headers::text, key, topic, "
            "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM " +
                env.q() + ".ledger WHERE message_id = $1::uuid",
            *r.header("ferry-message-id"));
        ASSERT_EQ(row.size(), 1u);
        EXPECT_EQ(row[0][0].as<int>(), r.partition);
        EXPECT_EQ(row[0][1].as<long>(), r.offset);
        EXPECT_EQ(std::optional<std::string>(row[0][2].as<std::string>()), r.value);
        EXPECT_EQ(row[0][3].as<std::string>(),
                  r.header("ferry-message-id") == first ? R"({"trace": "t-1"})" : "{}");
        EXPECT_EQ(std::optional<std::string>(row[0][4].as<std::string>()), r.key);
        EXPECT_EQ(row[0][5].as<std::string>(), env.topic);
        EXPECT_EQ(std::optional<std::string>(row[0][6].as<std::string>()),
                  r.header("ferry-created-at"));
    }
}

// Emits messages 0..n-1 in one transaction through enqueue_wal: payload i, key 'k' || (i %
// keys), headers the SQL expression `headers_sql` of i.
void emit_in_one_transaction(const wal_env& env, int n, int keys, const std::string& headers_sql) {
    pqxx::connection conn{ferry::test::pg_dsn()};
    pqxx::work tx{conn};
    tx.exec_params("SELECT count(" + env.q() +
                       ".enqueue_wal($1, 'k' || (i % $3), convert_to(i::text, 'UTF8'), " +
                       headers_sql + ")) FROM generate_series(0, $2 - 1) AS i",
                   env.topic, n, keys);
    tx.commit();
}

ferry::relay::relay_options batch_of_1000(const wal_env& env) {
    auto options = wal_options(env);
    options.batch_size = 1000;
    return options;
}

// A mark of many messages records each one's own headers (the mark sends them as one JSON
// array, split by the server): quotes, backslashes and non-ASCII text, each at its message,
// and in the Kafka record.
TEST(WalRelayTest, LedgerRecordsEachMessagesOwnHeadersInAFullMark) {
    wal_env env;
    constexpr int n = 1500;
    emit_in_one_transaction(env, n, 7,
                            "jsonb_build_object('n', i::text, 'q', 'a\"b\\c ' || i, 'u', "
                            "'ünï €' || i)");
    ferry::relay::relay relay(batch_of_1000(env));
    relay.start();
    ASSERT_TRUE(eventually([&] { return ledger_count(env) >= n; }, 120s, 200ms))
        << "ledger=" << ledger_count(env);
    relay.stop();
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() +
                         ".ledger WHERE headers = jsonb_build_object('n', "
                         "convert_from(payload, 'UTF8'), 'q', 'a\"b\\c ' || "
                         "convert_from(payload, 'UTF8'), 'u', 'ünï €' || convert_from(payload, "
                         "'UTF8'))"),
              n);
    kafka_reader reader(env.topic);
    (void)reader.read(n, 60s);
    const auto records = reader.read_all(1s, 30s);
    ASSERT_EQ(records.size(), static_cast<std::size_t>(n)) << reader.last_error();
    std::size_t matching = 0;
    for (const auto& r : records) {
        const auto i = r.value.value_or("?");
        matching +=
            r.header("n") == i && r.header("q") == "a\"b\\c " + i && r.header("u") == "ünï €" + i;
    }
    EXPECT_EQ(matching, static_cast<std::size_t>(n));
}

// The slot's lag is under 1 MiB: it was confirmed past what the test emitted.
bool slot_caught_up(const wal_env& env) {
    pqxx::connection c{ferry::test::pg_dsn()};
    const auto s = ferry::wal::inspect_slot(c, env.slot);
    return s && s->lag_bytes && *s->lag_bytes < 1024 * 1024;
}

// Kafka holds each of the n messages exactly once (no fault, so no duplicate either), and each
// key's messages in key_seq order 1, 2, 3, ...
void expect_each_once_in_key_order(const wal_env& env, int n, std::chrono::seconds wait) {
    kafka_reader reader(env.topic);
    (void)reader.read(static_cast<std::size_t>(n), wait);
    const auto records = reader.read_all(1s, wait / 2);
    std::set<std::string> ids;
    std::map<std::string, int> last_seq;
    std::size_t violations = 0;
    for (const auto& r : records) {
        if (!ids.insert(r.header("ferry-message-id").value_or("")).second) continue;
        const int seq = std::stoi(r.header("key_seq").value_or("0"));
        auto& l = last_seq[r.key.value_or("")];
        if (seq != l + 1) ++violations;
        l = seq;
    }
    EXPECT_EQ(ids.size(), static_cast<std::size_t>(n));
    EXPECT_EQ(records.size(), static_cast<std::size_t>(n)) << "no duplicates without a fault";
    EXPECT_EQ(violations, 0u);
}

// One transaction of 100k messages: streamed (the relay starts publishing before it has read
// the whole transaction), all published once, per-key order kept, the slot confirmed past it.
TEST(WalRelayTest, OneTransactionOfOneHundredThousandMessages) {
    wal_env env;
    constexpr int n = 100000;
    emit_in_one_transaction(env, n, 100, "jsonb_build_object('key_seq', (i / 100 + 1)::text)");
    ferry::relay::relay relay(batch_of_1000(env));
    const auto t0 = std::chrono::steady_clock::now();
    relay.start();
    ASSERT_TRUE(eventually([&] { return ledger_count(env) >= n; }, 300s, 200ms))
        << "ledger=" << ledger_count(env);
    const auto seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cerr << "[wal 100k] published " << n << " in " << seconds << " s\n";
    // The slot moves past the transaction once everything in it is recorded.
    ASSERT_TRUE(eventually([&] { return slot_caught_up(env); }, 30s));
    relay.stop();
    expect_each_once_in_key_order(env, n, 120s);
    expect_outbox_untouched(env);
}

// relay.mark_lanes: 2 in WAL mode: marks run at once and may finish out of stream order; the
// confirm tracker moves the slot only past what is recorded in full, so the slot still ends up
// past the transaction, and every message is published once, in order.
TEST(WalRelayTest, TwoMarkLanesPublishOnceInOrderAndConfirmTheSlot) {
    wal_env env;
    constexpr int n = 20000;
    emit_in_one_transaction(env, n, 100, "jsonb_build_object('key_seq', (i / 100 + 1)::text)");
    auto options = batch_of_1000(env);
    options.mark_lanes = 2;
    ferry::relay::relay relay(options);
    relay.start();
    ASSERT_TRUE(eventually([&] { return ledger_count(env) >= n; }, 120s, 200ms))
        << "ledger=" << ledger_count(env);
    ASSERT_TRUE(eventually([&] { return slot_caught_up(env); }, 30s));
    relay.stop();
    EXPECT_EQ(ledger_count(env), n) << "a message was recorded twice";
    expect_each_once_in_key_order(env, n, 60s);
}

// A message Kafka-side processing refuses (headers the relay cannot decode) is parked; the later
// messages of its key cannot wait in the stream, so they are parked behind it (KEY_PARKED), in
// order, while other keys flow. Discarding the bad one and retrying the first held one
// re-emits the held messages in order (migration 0072), and they are published in order.
TEST(WalRelayTest, ParkedKeyHoldsItsLaterMessagesAndRetryPublishesThemInOrder) {
    wal_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    {
        pqxx::work tx{conn};
        // emit_wal takes an already validated message: headers beyond a double's range pass
        // jsonb but not the relay's decoder (HEADERS_INVALID).
        tx.exec_params("SELECT " + env.q() +
                           ".emit_wal(gen_random_uuid(), $1, 'k', 'bad'::bytea, "
                           "'{\"n\": 1e400}'::jsonb, clock_timestamp(), NULL)",
                       env.topic);
        tx.commit();
    }
    for (const char* p : {"k2", "k3"}) {
        pqxx::work tx{conn};
        (void)enqueue_wal(tx, env.schema.name(), env.topic, "k", p);
        tx.commit();
    }
    {
        pqxx::work tx{conn};
        (void)enqueue_wal(tx, env.schema.name(), env.topic, "other", "o1");
        tx.commit();
    }
    ferry::relay::relay relay(wal_options(env));
    relay.start();
    ASSERT_TRUE(eventually(
        [&] { return count_rows("SELECT count(*) FROM " + env.q() + ".parked") == 3; }, 60s));
    {
        pqxx::nontransaction tx{conn};
        const auto r = tx.exec("SELECT error_code, convert_from(payload, 'UTF8') FROM " + env.q() +
                               ".parked ORDER BY id");
        ASSERT_EQ(r.size(), 3u);
        EXPECT_EQ(r[0][0].as<std::string>(), "HEADERS_INVALID");
        EXPECT_EQ(r[1][0].as<std::string>(), "KEY_PARKED");
        EXPECT_EQ(r[1][1].as<std::string>(), "k2");
        EXPECT_EQ(r[2][0].as<std::string>(), "KEY_PARKED");
        EXPECT_EQ(r[2][1].as<std::string>(), "k3");
    }
    kafka_reader reader(env.topic);
    (void)reader.read(1, 30s);
    EXPECT_EQ(payloads_of_key(reader.records(), "other"), (std::vector<std::string>{"o1"}));
    EXPECT_TRUE(payloads_of_key(reader.records(), "k").empty());
    {
        pqxx::work tx{conn};
        const auto ids = tx.exec("SELECT id FROM " + env.q() + ".parked ORDER BY id");
        EXPECT_TRUE(
            tx.exec_params("SELECT " + env.q() + ".discard_parked($1)", ids[0][0].as<long>())[0][0]
                .as<bool>());
        EXPECT_TRUE(
            tx.exec_params("SELECT " + env.q() + ".retry_parked($1)", ids[1][0].as<long>())[0][0]
                .as<bool>());
        tx.commit();
    }
    (void)reader.read(3, 60s);
    const auto records = reader.read_all(1s, 30s);
    EXPECT_EQ(payloads_of_key(records, "k"), (std::vector<std::string>{"k2", "k3"}));
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".parked"), 0);
}

// A logical message with Ferry's prefix that does not decode (an unsupported frame version, a
// prefix variant) is parked with its reason and raw content, never skipped silently, and never
// blocks the messages after it.
TEST(WalRelayTest, UndecodableMessagesAreParkedWithTheirReasonAndLaterOnesFlow) {
    wal_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    {
        pqxx::work tx{conn};
        tx.exec("SELECT pg_logical_emit_message(true, 'ferry', '\\x0200'::bytea)");
        tx.exec("SELECT pg_logical_emit_message(true, 'ferry.v2', 'x'::bytea)");
        tx.commit();
    }
    std::string after;
    {
        pqxx::work tx{conn};
        after = enqueue_wal(tx, env.schema.name(), env.topic, "k", "after");
        tx.commit();
    }
    ferry::relay::relay relay(wal_options(env));
    relay.start();
    kafka_reader reader(env.topic);
    const auto records = reader.read(1, 60s);
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].header("ferry-message-id"), after);
    ASSERT_TRUE(eventually(
        [&] {
            return count_rows("SELECT count(*) FROM " + env.q() +
                              ".parked WHERE error_code = 'WAL_MESSAGE_INVALID'") == 2;
        },
        30s));
    pqxx::nontransaction tx{conn};
    const auto r = tx.exec("SELECT reason, headers->>'ferry-wal-prefix' FROM " + env.q() +
                           ".parked ORDER BY id");
    ASSERT_EQ(r.size(), 2u);
    EXPECT_THAT(r[0][0].as<std::string>(), HasSubstr("version"));
    EXPECT_EQ(r[0][1].as<std::string>(), "ferry");
    EXPECT_EQ(r[1][1].as<std::string>(), "ferry.v2");
}

// A message whose expires_at passed before the relay read it (by the server's clock) goes to
// `expired`, never to Kafka.
TEST(WalRelayTest, ExpiredMessageIsRecordedAndNeverPublished) {
    wal_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    std::string expired;
    {
        pqxx::work tx{conn};
        expired = tx.exec_params("WITH m AS (SELECT gen_random_uuid() AS id) SELECT " + env.q() +
                                     ".emit_wal(m.id, $1, 'k', 'old'::bytea, '{}'::jsonb, "
                                     "clock_timestamp() - interval '1 minute', clock_timestamp() "
                                     "- interval '1 second'), m.id::text FROM m",
                                 env.topic)[0][1]
                      .as<std::string>();
        (void)enqueue_wal(tx, env.schema.name(), env.topic, "k", "fresh");
        tx.commit();
    }
    ferry::relay::relay relay(wal_options(env));
    relay.start();
    kafka_reader reader(env.topic);
    (void)reader.read(1, 60s);
    const auto records = reader.read_all(1s, 30s);
    EXPECT_EQ(payloads_of_key(records, "k"), (std::vector<std::string>{"fresh"}));
    ASSERT_TRUE(eventually(
        [&] {
            return count_rows("SELECT count(*) FROM " + env.q() + ".expired WHERE message_id = '" +
                              expired + "'") == 1;
        },
        30s));
    // An operator's re-drive (ferryctl expired redrive) reaches the WAL relay: in WAL mode it
    // emits the message instead of inserting an outbox row no WAL relay would read (0074).
    ferry::reconcile::held_store store(ferry::test::pg_dsn(), env.schema.name());
    EXPECT_EQ(store.redrive_expired(expired), ferry::reconcile::redrive_status::redriven);
    (void)reader.read(2, 60s);
    const auto after = reader.read_all(1s, 30s);
    EXPECT_EQ(payloads_of_key(after, "k"), (std::vector<std::string>{"fresh", "old"}));
    expect_outbox_untouched(env);
}

// WAL mode streams one slot in commit order: more than one lease group is refused with the
// field named; an unknown source too.
TEST(WalRelayTest, RefusesLeaseGroupsOtherThanOneAndUnknownSources) {
    wal_env env;
    auto o = wal_options(env);
    o.lease_groups = 2;
    try {
        ferry::relay::relay relay(o);
        relay.start();
        FAIL() << "lease_groups 2 accepted in WAL mode";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.field(), "relay.lease_groups");
        EXPECT_THAT(e.what(), HasSubstr("wal"));
    }
    o.lease_groups = 1;
    o.source = "logical";
    try {
        ferry::relay::relay relay(o);
        relay.start();
        FAIL() << "source 'logical' accepted";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.field(), "relay.source");
    }
}

// A missing slot is reported (ferry_wal_slot_lost 1, not ready to publish) and never created
// by the relay; messages wait until an operator restores it.
TEST(WalRelayTest, MissingSlotIsReportedAndNeverCreated) {
    wal_env env;
    auto o = wal_options(env);
    o.wal_slot = ferry::test::unique_name("missing_slot");
    ferry::metrics::registry registry;
    ferry::relay::relay relay(o, &registry);
    relay.start();
    ASSERT_TRUE(eventually(
        [&] { return registry.serialize().find("ferry_wal_slot_lost 1") != std::string::npos; },
        30s))
        << registry.serialize();
    relay.stop();
    pqxx::connection conn{ferry::test::pg_dsn()};
    EXPECT_FALSE(ferry::wal::inspect_slot(conn, o.wal_slot).has_value());
}

// WAL mode with relay.ledger_payloads: false: the ledger keeps the rest of each publication
// and no payload; Kafka gets every payload unchanged. The default keeps them (the other tests
// of this file read payloads back from the ledger).
TEST(WalRelayTest, LedgerWithoutPayloadsKeepsEverythingElse) {
    wal_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    std::vector<std::string> ids;
    {
        pqxx::work tx{conn};
        for (const auto* p : {"one", "two", "three"}) {
            ids.push_back(enqueue_wal(tx, env.schema.name(), env.topic, "k", p));
        }
        tx.commit();
    }
    auto o = wal_options(env);
    o.ledger_payloads = false;
    ferry::relay::relay relay(o);
    relay.start();
    kafka_reader reader(env.topic);
    (void)reader.read(3, 60s);
    const auto records = reader.read_all(1s, 30s);
    EXPECT_EQ(payloads_of_key(records, "k"), (std::vector<std::string>{"one", "two", "three"}));
    ASSERT_TRUE(eventually([&] { return ledger_count(env) == 3; }, 30s));
    relay.stop();
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() +
                         ".ledger WHERE payload IS NULL AND key = 'k' AND topic = '" + env.topic +
                         "' AND \"offset\" >= 0"),
              3);
}

// The WAL mark records the batch's Kafka acknowledgement as acked_at too, not its own time
// (expect_acked_at_is_the_acknowledgement).
TEST(WalRelayTest, LedgerRecordsWhenKafkaAcknowledgedEvenWhenTheMarkWaits) {
    wal_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    expect_acked_at_is_the_acknowledgement(env, wal_options(env), [&](const std::string& key) {
        pqxx::work tx{conn};
        auto id = enqueue_wal(tx, env.schema.name(), env.topic, key, "payload-" + key);
        tx.commit();
        return id;
    });
}

// The C++ writer in WAL mode refuses to emit while no usable slot is registered for its schema
// (none registered, or the registered slot does not exist), with wal_emit_guard()'s SQLSTATE
// and message, from enqueue and enqueue_batch alike; a message emitted then would never be
// published. It emits again once the slot is registered. The checks are part of the writer's
// own statement (migration 0106): without them this test fails at the first refusal.
TEST(WalRelayTest, CppWriterInWalModeRefusesWithoutAUsableRegisteredSlot) {
    wal_env env;
    const auto w = wal_writer(env);
    pqxx::connection conn{ferry::test::pg_dsn()};
    // The writer's statements are prepared once per session. A generic plan from the first
    // execution on: the registry reaches the statement through functions that the planner
    // inlines (migration 0110), so each change of the registry must invalidate the cached plan.
    {
        pqxx::nontransaction tx{conn};
        tx.exec("SET plan_cache_mode = force_generic_plan");
    }
    pqxx::connection admin{ferry::test::pg_dsn()};
    const auto m = wal_message(env, "k", "x");
    const std::vector<ferry::outbox::message> batch(2, m);
    // Each call in a transaction of its own, as a service would run it: the error aborts it.
    const auto error_of = [&](bool as_batch) -> std::string {
        try {
            pqxx::work tx{conn};
            if (as_batch) {
                (void)w.enqueue_batch(tx, batch);
            } else {
                (void)w.enqueue(tx, m);
            }
            tx.commit();
            return "";
        } catch (const ferry::error& e) {
            return e.what();
        }
    };
    const auto expect_refused = [&](const char* when) {
        for (const bool as_batch : {false, true}) {
            const auto e = error_of(as_batch);
            EXPECT_THAT(e, HasSubstr("no usable replication slot is registered"))
                << when << (as_batch ? ", enqueue_batch" : ", enqueue");
            EXPECT_THAT(e, HasSubstr("SQLSTATE 55000")) << when;
        }
    };
    EXPECT_EQ(error_of(false), "");
    EXPECT_EQ(error_of(true), "");
    ASSERT_TRUE(ferry::wal::unregister_slot(admin, env.schema.name(), env.slot));
    expect_refused("no slot registered");
    const auto ghost = ferry::test::unique_name("relay_ghost_slot");
    ferry::wal::register_slot(admin, env.schema.name(), ghost);
    expect_refused("only a slot that does not exist registered");
    ASSERT_TRUE(ferry::wal::unregister_slot(admin, env.schema.name(), ghost));
    ferry::wal::register_slot(admin, env.schema.name(), env.slot);
    EXPECT_EQ(error_of(false), "");
    EXPECT_EQ(error_of(true), "");
}

// The C++ writer in WAL mode (outbox.mode: wal) keeps its API: enqueue, enqueue_batch (in input
// order within the transaction) and enqueue_with emit logical messages that the WAL relay
// publishes; delayed delivery is refused with the field named; nothing touches the outbox table.
TEST(WalRelayTest, CppWriterInWalModeKeepsItsApi) {
    wal_env env;
    const auto w = wal_writer(env);
    pqxx::connection conn{ferry::test::pg_dsn()};
    std::vector<std::string> ids;
    {
        pqxx::work tx{conn};
        auto m = wal_message(env, "order-1", "one");
        m.headers = {{"trace", "t-1"}};
        ids.push_back(w.enqueue(tx, m).to_string());
        std::vector<ferry::outbox::message> batch(3, m);
        batch[0].payload = "two";
        batch[1].payload = "three";
        batch[2].payload = "four";
        for (const auto& id : w.enqueue_batch(tx, batch)) ids.push_back(id.to_string());
        m.payload = "five";
        const auto [id, result] = w.enqueue_with(tx, m, "SELECT 42");
        ids.push_back(id.to_string());
        EXPECT_EQ(result[0][0].as<int>(), 42);
        tx.commit();
    }
    // Messages whose time to live passes before the relay runs: expired on the database clock
    // that the writer's statement wrote into their frames (migration 0075), one alone and one
    // in a batch.
    std::vector<std::string> short_lived;
    {
        pqxx::work tx{conn};
        auto m = wal_message(env, "order-2", "brief");
        m.expires_after = 1ms;
        short_lived.push_back(w.enqueue(tx, m).to_string());
        const std::vector<ferry::outbox::message> one{m};
        short_lived.push_back(w.enqueue_batch(tx, one).at(0).to_string());
        tx.commit();
    }
    std::this_thread::sleep_for(50ms);
    {
        pqxx::work tx{conn};
        ferry::outbox::message delayed;
        delayed.topic = env.topic;
        delayed.key = "k";
        delayed.payload = "later";
        delayed.deliver_after = 5s;
        try {
            (void)w.enqueue(tx, delayed);
            FAIL() << "a delayed message was accepted in WAL mode";
        } catch (const ferry::error& e) {
            EXPECT_EQ(e.field(), "deliver_after");
            EXPECT_THAT(e.what(), HasSubstr("WAL mode"));
        }
    }
    ferry::relay::relay relay(wal_options(env));
    relay.start();
    kafka_reader reader(env.topic);
    (void)reader.read(5, 60s);
    const auto records = reader.read_all(1s, 30s);
    EXPECT_EQ(payloads_of_key(records, "order-1"),
              (std::vector<std::string>{"one", "two", "three", "four", "five"}));
    ASSERT_EQ(records.size(), 5u);
    for (std::size_t i = 0; i < records.size(); ++i) {
        EXPECT_EQ(records[i].header("ferry-message-id"), ids[i]);
        EXPECT_EQ(records[i].header("trace"), "t-1");
    }
    // created_at is the database clock of the writer's statement (not 1970, not the future).
    ASSERT_TRUE(eventually([&] { return ledger_count(env) == 5; }, 30s));
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() +
                         ".ledger WHERE created_at BETWEEN now() - interval '10 minutes' AND "
                         "now()"),
              5);
    ASSERT_TRUE(eventually(
        [&] {
            return count_rows("SELECT count(*) FROM " + env.q() +
                              ".expired WHERE message_id IN ('" + short_lived[0] + "', '" +
                              short_lived[1] + "')") == 2;
        },
        30s));
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() +
                         ".expired WHERE expires_at - created_at = interval '1 millisecond' AND "
                         "created_at > now() - interval '10 minutes'"),
              2);
    expect_outbox_untouched(env);
}

// Half messages in WAL mode (migration 0073): the commit decision emits the message in the
// decision's transaction, so the WAL relay publishes it; a rolled-back one is never published;
// a delay is refused at prepare, naming deliver_after.
TEST(WalRelayTest, HalfMessageDecisionsArePublishedInWalMode) {
    wal_env env;
    pqxx::connection conn{ferry::test::pg_dsn()};
    const auto prepare = [&](const std::string& payload) {
        pqxx::work tx{conn};
        const auto id = tx.exec_params("SELECT " + env.q() +
                                           ".prepare($1, 'order-9', convert_to($2, 'UTF8'), "
                                           "'{}'::jsonb, $3)::text",
                                       env.topic, payload, "tx-" + payload)[0][0]
                            .as<std::string>();
        tx.commit();
        return id;
    };
    const auto committed = prepare("kept");
    const auto rolled_back = prepare("dropped");
    {
        pqxx::work tx{conn};
        EXPECT_EQ(tx.exec_params("SELECT " + env.q() + ".commit_half($1::uuid)", committed)[0][0]
                      .as<std::string>(),
                  "committed");
        EXPECT_EQ(
            tx.exec_params("SELECT " + env.q() + ".rollback_half($1::uuid)", rolled_back)[0][0]
                .as<std::string>(),
            "rolled_back");
        tx.commit();
    }
    {
        pqxx::work tx{conn};
        try {
            tx.exec_params("SELECT " + env.q() +
                               ".prepare($1, 'k', 'p'::bytea, '{}'::jsonb, 'tx-delayed', "
                               "deliver_after => interval '5 seconds')",
                           env.topic);
            FAIL() << "a delayed half message was prepared in WAL mode";
        } catch (const pqxx::sql_error& e) {
            EXPECT_THAT(e.what(), HasSubstr("deliver_after"));
        }
    }
    ferry::relay::relay relay(wal_options(env));
    relay.start();
    kafka_reader reader(env.topic);
    (void)reader.read(1, 60s);
    const auto records = reader.read_all(1s, 30s);
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].header("ferry-message-id"), committed);
    EXPECT_EQ(records[0].value, "kept");
    expect_outbox_untouched(env);
}

}  // namespace
