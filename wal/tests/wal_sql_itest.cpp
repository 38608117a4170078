// The SQL producer path of WAL mode (migration 0070): enqueue_wal validates exactly like
// enqueue() with the same messages, refuses delayed delivery, writes no outbox row, and its frame
// is byte-for-byte the C++ encoder's (and decodes with ferry::wal::decode_frame).
#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include "ferry/outbox/migrate.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/scoped_schema.hpp"
#include "ferry/test/unique_name.hpp"
#include "ferry/wal/frame.hpp"
#include "ferry/wal/slot.hpp"

namespace ferry::wal {
namespace {

class WalSqlTest : public ::testing::Test {
protected:
    void SetUp() override {
        _conn = std::make_unique<pqxx::connection>(ferry::test::pg_dsn());
        (void)outbox::migrate(*_conn, _schema.name());
        (void)create_slot(*_conn, _slot);
        register_slot(*_conn, _schema.name(), _slot);
    }
    void TearDown() override { (void)drop_slot(*_conn, _slot); }
    std::string q() const { return "\"" + _schema.name() + "\""; }

    // The error of `SELECT <fn>(args)`, or "" on success.
    std::string error_of(const std::string& fn, const std::string& args) {
        try {
            pqxx::work tx{*_conn};
            tx.exec("SELECT " + q() + "." + fn + "(" + args + ")");
            tx.commit();
            return "";
        } catch (const pqxx::sql_error& e) {
            // The message line only: CONTEXT names the function and line, which differ.
            const std::string text = e.what();
            return e.sqlstate() + " " + text.substr(0, text.find('\n'));
        }
    }

    ferry::test::scoped_schema _schema{"walsql"};
    std::string _slot = ferry::test::unique_name("walsql_slot");
    std::unique_ptr<pqxx::connection> _conn;
};

TEST_F(WalSqlTest, ValidatesExactlyLikeEnqueueWithTheSameMessages) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"'', 'k', 'x'::bytea", "topic: must not be empty"},
        {"repeat('a', 250), 'k', 'x'::bytea", "topic: 250 characters"},
        {"'bad topic', 'k', 'x'::bytea", "has characters Kafka refuses"},
        {"'t', NULL, 'x'::bytea", "key: must not be null"},
        {"'t', repeat('k', 5000), 'x'::bytea", "key: 5000 bytes is over the limit"},
        {"'t', 'k', NULL", "payload: must not be null"},
        {"'t', 'k', convert_to(repeat('p', 1048577), 'UTF8')", "payload: 1048577 bytes"},
        {"'t', 'k', 'x'::bytea, '[1]'", "headers: must be a JSON object"},
        {"'t', 'k', 'x'::bytea, '{\"a\": 1}'", "headers: \"a\" must be a non-empty name"},
        {"'t', 'k', 'x'::bytea, '{\"ferry-id\": \"x\"}'", "headers: \"ferry-id\""},
        {"'t', 'k', 'x'::bytea, '{}', interval '-1 second'", "deliver_after: must not be negative"},
        {"'t', 'k', 'x'::bytea, '{}', NULL, interval '0'", "expires_after: must be positive"},
    };
    for (const auto& [args, expected] : cases) {
        const auto polling = error_of("enqueue", args);
        const auto wal = error_of("enqueue_wal", args);
        EXPECT_NE(wal.find(expected), std::string::npos) << args << " -> " << wal;
        EXPECT_EQ(wal.substr(0, 5), "22023") << args;
        EXPECT_EQ(wal, polling) << args;
    }
}

TEST_F(WalSqlTest, DelayedDeliveryIsRefusedWithAClearError) {
    const auto e = error_of("enqueue_wal", "'t', 'k', 'x'::bytea, '{}', interval '5 seconds'");
    EXPECT_NE(e.find("22023"), std::string::npos) << e;
    EXPECT_NE(e.find("deliver_after: delayed delivery is not available in WAL mode"),
              std::string::npos)
        << e;
    // A zero delay means "now" and is accepted, as is an expiry.
    EXPECT_EQ(error_of("enqueue_wal", "'t', 'k', 'x'::bytea, '{}', interval '0', interval '1h'"),
              "");
}

TEST_F(WalSqlTest, RefusesToEmitWithoutAUsableRegisteredSlot) {
    // A message emitted while no slot decodes it would never be published: refuse loudly.
    const std::string args = "'t', 'k', 'x'::bytea";
    EXPECT_EQ(error_of("enqueue_wal", args), "");
    EXPECT_TRUE(slot_registered(*_conn, _schema.name(), _slot));
    ASSERT_TRUE(unregister_slot(*_conn, _schema.name(), _slot));
    EXPECT_FALSE(slot_registered(*_conn, _schema.name(), _slot));
    auto e = error_of("enqueue_wal", args);
    EXPECT_EQ(e.substr(0, 5), "55000") << e;
    EXPECT_NE(e.find("no usable replication slot is registered"), std::string::npos) << e;
    // Registered, but the slot itself is gone.
    const auto ghost = ferry::test::unique_name("walsql_ghost");
    register_slot(*_conn, _schema.name(), ghost);
    EXPECT_EQ(error_of("enqueue_wal", args).substr(0, 5), "55000");
    register_slot(*_conn, _schema.name(), _slot);
    register_slot(*_conn, _schema.name(), _slot);  // idempotent
    EXPECT_EQ(error_of("enqueue_wal", args), "");
}

TEST_F(WalSqlTest, TheSlotCheckIsPerSchemaWithinOneTransaction) {
    // Another Ferry schema in the same database with no slot registered: its enqueue_wal must be
    // refused even after this schema's check passed in the same transaction.
    ferry::test::scoped_schema other{"walsql_other"};
    (void)outbox::migrate(*_conn, other.name());
    pqxx::work tx{*_conn};
    tx.exec("SELECT " + q() + ".enqueue_wal('t', 'k', 'x'::bytea)");
    try {
        tx.exec("SELECT \"" + other.name() + "\".enqueue_wal('t', 'k', 'x'::bytea)");
        ADD_FAILURE() << "a schema without a registered slot emitted";
    } catch (const pqxx::sql_error& e) {
        EXPECT_EQ(e.sqlstate(), "55000") << e.what();
    }
}

TEST_F(WalSqlTest, WritesNoOutboxRowAndReturnsAVersion7Id) {
    pqxx::work tx{*_conn};
    const auto id = tx.exec("SELECT " + q() + ".enqueue_wal('orders', 'k', 'x'::bytea)::text")[0][0]
                        .as<std::string>();
    EXPECT_EQ(id.size(), 36u);
    EXPECT_EQ(id[14], '7');
    EXPECT_EQ(tx.exec("SELECT count(*) FROM " + q() + ".outbox")[0][0].as<int>(), 0);
    tx.commit();
}

TEST_F(WalSqlTest, SqlFrameIsTheCppFrame) {
    pqxx::work tx{*_conn};
    const auto r = tx.exec(
        "SELECT " + q() +
        ".wal_frame('0190b6a4-1c2d-7e3f-8a9b-0c1d2e3f4a5b', 'orders', 'kä', '\\x00ff01'::bytea, "
        "'{\"traceparent\": \"00-ä\"}', timestamptz '2024-01-02 03:04:05.123456+00', "
        "timestamptz '2024-01-02 04:04:05.123456+00'), " +
        q() +
        ".wal_frame('0190b6a4-1c2d-7e3f-8a9b-0c1d2e3f4a5b', 'orders', '', ''::bytea, '{}', "
        "timestamptz '1999-12-31 23:59:59.999999+00', NULL)");
    const auto sql_frame = pqxx::binarystring(r[0][0]).str();
    const auto sql_frame2 = pqxx::binarystring(r[0][1]).str();

    wal_message m;
    m.id = *outbox::message_id::parse("0190b6a4-1c2d-7e3f-8a9b-0c1d2e3f4a5b");
    m.schema = _schema.name();
    m.topic = "orders";
    m.key = "kä";
    m.payload = std::string("\x00\xff\x01", 3);
    m.headers_json = "{\"traceparent\": \"00-ä\"}";  // jsonb's own rendering
    m.created_at = micros_time(std::chrono::microseconds(1704164645123456));
    m.expires_at = micros_time(std::chrono::microseconds(1704168245123456));
    EXPECT_EQ(sql_frame, encode_frame(m));
    const auto d = decode_frame(sql_frame);
    ASSERT_TRUE(d.ok()) << d.error;
    EXPECT_EQ(*d.message, m);

    wal_message m2 = m;
    m2.key.clear();
    m2.payload.clear();
    m2.headers_json = "{}";
    m2.created_at = micros_time(std::chrono::microseconds(946684799999999));
    m2.expires_at.reset();
    EXPECT_EQ(sql_frame2, encode_frame(m2));
}

// A commit can reach the replication stream a moment before new snapshots see it; the relay asks
// wal_xids_visible (migration 0105) in the statement of its lookup and waits while it is false.
// The 32-bit ids pgoutput sends are widened against the snapshot's xmax.
TEST_F(WalSqlTest, XidsVisibleIsFalseUntilTheTransactionIsVisibleToTheSnapshot) {
    pqxx::connection other{ferry::test::pg_dsn()};
    auto visible = [&](const std::string& xids) {
        pqxx::nontransaction tx{*_conn};
        return tx.exec("SELECT " + q() + ".wal_xids_visible('" + xids + "'::bigint[])")[0][0]
            .as<bool>();
    };
    std::int64_t done = 0;
    {
        pqxx::work tx{other};
        done = tx.exec("SELECT txid_current() % 4294967296")[0][0].as<std::int64_t>();
        tx.commit();
    }
    pqxx::work open{other};
    const auto running = open.exec("SELECT txid_current() % 4294967296")[0][0].as<std::int64_t>();
    const auto ids = [](std::initializer_list<std::int64_t> v) {
        std::string s = "{";
        for (auto x : v) s += (s.size() > 1 ? "," : "") + std::to_string(x);
        return s + "}";
    };
    EXPECT_TRUE(visible("{}"));
    EXPECT_TRUE(visible(ids({done})));
    EXPECT_FALSE(visible(ids({running})));                        // still in progress
    EXPECT_FALSE(visible(ids({done, running})));                  // all of them, or false
    EXPECT_FALSE(visible(ids({(running + 1000) % 4294967296})));  // not even started
    open.commit();
    EXPECT_TRUE(visible(ids({done, running})));
}

}  // namespace
}  // namespace ferry::wal
