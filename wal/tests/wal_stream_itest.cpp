// The replication stream, slot management and assembler against the real PostgreSQL 15
// (wal_level=logical): commit order, rollbacks, replay after a client dies, one transaction of
// 100k messages, slot lag, a missing slot, malformed messages.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <set>

#include "wal_fixture.hpp"

namespace ferry::wal::test {
namespace {

// Transaction ends that carried messages of this test's schema. Other suites share the database
// (ctest -j2); their logical messages reach this slot as transaction ends without ours.
std::size_t own_ends(const seen& x) {
    return static_cast<std::size_t>(std::count_if(
        x.ends.begin(), x.ends.end(), [](const transaction_end& e) { return e.messages > 0; }));
}

std::size_t count_tag(const seen& s, const std::string& tag) {
    std::size_t n = 0;
    for (const auto& m : s.messages) n += m.message.payload.rfind(tag, 0) == 0;
    return n;
}

class WalStreamTest : public WalFixture {};

TEST_F(WalStreamTest, IdentifySystemAndSlotInspection) {
    auto s = std::make_unique<replication_stream>(options());
    const auto id = s->identify_system();
    EXPECT_FALSE(id.system_id.empty());
    EXPECT_EQ(id.database, "ferry_test");
    EXPECT_GT(id.wal_position, 0u);
    const auto info = check_slot(conn(), slot());
    EXPECT_EQ(info.plugin, "pgoutput");
    EXPECT_FALSE(info.active);
    EXPECT_TRUE(info.confirmed_flush_lsn.has_value());
    EXPECT_EQ(info.wal_status, "reserved");
    s->start();
    // The slot is now in use: a second stream is refused, and so is dropping the slot.
    auto other = std::make_unique<replication_stream>(options());
    try {
        other->start();
        ADD_FAILURE() << "a second stream on the same slot started";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "wal.slot_in_use") << e.what();
        EXPECT_TRUE(e.is_retryable());
    }
    try {
        (void)drop_slot(conn(), slot());
        ADD_FAILURE() << "an active slot was dropped";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "wal.slot_in_use") << e.what();
    }
    EXPECT_TRUE(inspect_slot(conn(), slot())->active);
}

TEST_F(WalStreamTest, CommitOrderNotBeginOrder) {
    // T1 begins and emits first, T2 emits second and commits first: consumers must see T2's
    // message first, although T1 has the lower xid.
    pqxx::connection c1(ferry::test::pg_dsn()), c2(ferry::test::pg_dsn());
    pqxx::work t1{c1};
    t1.exec("SELECT " + q() + ".enqueue_wal('orders', 'k', 'began-first'::bytea)");
    const auto xid1 = t1.exec("SELECT txid_current()")[0][0].as<long long>();
    pqxx::work t2{c2};
    t2.exec("SELECT " + q() + ".enqueue_wal('orders', 'k', 'began-second'::bytea)");
    const auto xid2 = t2.exec("SELECT txid_current()")[0][0].as<long long>();
    t2.commit();
    t1.commit();
    ASSERT_LT(xid1, xid2) << "precondition: T1 began (got its xid) first";

    auto s = open_stream();
    transaction_assembler a(schema());
    seen got;
    read_until(*s, a, got, [](const seen& x) { return x.messages.size() >= 2; });
    ASSERT_EQ(got.messages.size(), 2u);
    // The server's send time is the database clock (expiry is checked against it).
    const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count() -
                        pg_epoch_unix_seconds * 1000000;
    EXPECT_LT(std::abs(s->last_send_time() - now_us), 60'000'000LL);
    EXPECT_EQ(payload(got.messages[0]), "began-second");
    EXPECT_EQ(payload(got.messages[1]), "began-first");
    EXPECT_LT(got.messages[0].commit_lsn, got.messages[1].commit_lsn);
    EXPECT_EQ(got.messages[0].xid, static_cast<std::uint32_t>(xid2));
    EXPECT_EQ(got.messages[0].message.schema, schema());
    EXPECT_EQ(got.messages[0].message.topic, "orders");
    EXPECT_EQ(got.messages[0].message.key, "k");
}

TEST_F(WalStreamTest, PerKeyCommitOrderUnderConcurrentProducers) {
    // Producers serialize on the aggregate row (the usual row lock), bump its sequence and emit
    // it. Transactions interleave across threads; per key the stream must be increasing.
    {
        pqxx::work tx{conn()};
        tx.exec("CREATE TABLE " + q() + ".agg (key text PRIMARY KEY, seq int NOT NULL)");
        tx.exec("INSERT INTO " + q() + ".agg SELECT 'key' || i, 0 FROM generate_series(0, 19) i");
        tx.commit();
    }
    constexpr int threads = 4, per_thread = 150;
    std::vector<std::thread> workers;
    std::atomic<int> failures{0};
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            try {
                pqxx::connection c(ferry::test::pg_dsn());
                for (int i = 0; i < per_thread; ++i) {
                    const std::string key = "key" + std::to_string((i * 7 + t * 3) % 20);
                    pqxx::work tx{c};
                    const auto seq = tx.exec("UPDATE " + q() +
                                             ".agg SET seq = seq + 1 WHERE key = " + tx.quote(key) +
                                             " RETURNING seq")[0][0]
                                         .as<int>();
                    // Two messages per transaction, so order inside a transaction counts too.
                    tx.exec("SELECT " + q() + ".enqueue_wal('orders', " + tx.quote(key) +
                            ", convert_to(" + std::to_string(seq * 2) + "::text, 'UTF8')), " + q() +
                            ".enqueue_wal('orders', " + tx.quote(key) + ", convert_to(" +
                            std::to_string(seq * 2 + 1) + "::text, 'UTF8'))");
                    tx.commit();
                }
            } catch (const std::exception& e) {
                ++failures;
                ADD_FAILURE() << e.what();
            }
        });
    }
    for (auto& w : workers) w.join();
    ASSERT_EQ(failures.load(), 0);

    auto s = open_stream();
    transaction_assembler a(schema());
    seen got;
    const std::size_t total = threads * per_thread * 2;
    read_until(*s, a, got, [&](const seen& x) {
        return own_ends(x) >= static_cast<std::size_t>(threads * per_thread);
    });
    ASSERT_EQ(got.messages.size(), total);
    std::map<std::string, int> last;
    int violations = 0;
    lsn prev_commit = 0;
    for (const auto& m : got.messages) {
        const int v = std::stoi(m.message.payload);
        auto [it, fresh] = last.emplace(m.message.key, v);
        if (!fresh) {
            if (v != it->second + 1) ++violations;
            it->second = v;
        } else if (v != 2) {
            ++violations;
        }
        EXPECT_GE(m.commit_lsn, prev_commit);
        prev_commit = m.commit_lsn;
    }
    EXPECT_EQ(violations, 0) << "per-key order violations (each key must read 2, 3, 4, ...)";
    EXPECT_EQ(own_ends(got), static_cast<std::size_t>(threads * per_thread));
}

TEST_F(WalStreamTest, RolledBackWorkIsNeverSeen) {
    {
        pqxx::work tx{conn()};
        tx.exec("SELECT " + q() + ".enqueue_wal('orders', 'k', 'rolled-back'::bytea)");
        tx.abort();
    }
    {
        // A subtransaction rolled back inside a committed transaction.
        pqxx::work tx{conn()};
        tx.exec("SELECT " + q() + ".enqueue_wal('orders', 'k', 'kept-1'::bytea)");
        tx.exec("SAVEPOINT s");
        tx.exec("SELECT " + q() + ".enqueue_wal('orders', 'k', 'savepoint-rolled-back'::bytea)");
        tx.exec("ROLLBACK TO SAVEPOINT s");
        tx.exec("SELECT " + q() + ".enqueue_wal('orders', 'k', 'kept-2'::bytea)");
        tx.commit();
    }
    const auto got = read_to_marker();
    std::vector<std::string> payloads;
    for (const auto& m : got.messages) payloads.push_back(payload(m));
    EXPECT_EQ(payloads, (std::vector<std::string>{"kept-1", "kept-2", "marker-0"}));
}

TEST_F(WalStreamTest, ReconnectReplaysFromTheConfirmedPositionWithBoundedDuplicates) {
    constexpr int txs = 20, per_tx = 10;
    for (int i = 0; i < txs; ++i) emit("k", "m" + std::to_string(i), per_tx);

    // First client: acknowledges the first 10 transactions, receives 5 more without
    // acknowledging them, then dies (no close, no last status update).
    lsn confirmed = 0;
    {
        const auto first = receive_acknowledging_first(15, 10);
        confirmed = first.acked;
        ASSERT_EQ(first.got.messages.size(), 15u * per_tx);
    }
    EXPECT_EQ(inspect_slot(conn(), slot())->confirmed_flush_lsn, confirmed)
        << "the slot must not move past what was acknowledged";

    // Second client replays from the confirmed position.
    auto s = open_stream();
    transaction_assembler a(schema());
    seen got;
    read_until(*s, a, got, [](const seen& x) { return own_ends(x) >= 10; });
    std::multiset<std::string> all;
    for (const auto& m : got.messages) all.insert(payload(m));
    // Transactions 10..19 arrive again, 10..14 for the second time: duplicates = the unconfirmed
    // window of the dead client (5 transactions x 10 messages), nothing before it.
    EXPECT_EQ(got.messages.size(), 10u * per_tx);
    EXPECT_EQ(payload(got.messages.front()), "m10-0");
    EXPECT_EQ(payload(got.messages.back()), "m19-9");
    const std::size_t duplicates = 5 * per_tx;
    std::size_t replayed = 0;
    for (int i = 10; i < 15; ++i) replayed += count_tag(got, "m" + std::to_string(i) + "-");
    EXPECT_EQ(replayed, duplicates);
    for (const auto& m : got.messages) EXPECT_GT(m.commit_lsn, confirmed);
    RecordProperty("duplicates", static_cast<int>(replayed));
}

TEST_F(WalStreamTest, OneTransactionOfOneHundredThousandMessages) {
    constexpr int n = 100000;
    emit("big", "b", n);
    auto s = open_stream();
    transaction_assembler a(schema());
    seen got;
    // Count instead of keeping every message (the reader, like the relay, need not hold them).
    std::size_t count = 0;
    lsn commit = 0, prev_msg = 0;
    bool ordered = true;
    transaction_end end{};
    const auto deadline = std::chrono::steady_clock::now() + 240s;
    while (end.end_lsn == 0) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << count << " messages so far";
        auto item = s->next(500ms);
        if (!item) continue;
        auto ev = a.feed(item->message());
        if (!ev) continue;
        if (auto* m = std::get_if<committed_message>(&*ev)) {
            if (m->message.payload != "b-" + std::to_string(count)) ordered = false;
            if (commit == 0) commit = m->commit_lsn;
            EXPECT_EQ(m->commit_lsn, commit);
            if (m->message_lsn <= prev_msg) ordered = false;
            prev_msg = m->message_lsn;
            ++count;
        } else if (auto* e = std::get_if<transaction_end>(&*ev)) {
            end = *e;
        }
    }
    EXPECT_EQ(count, static_cast<std::size_t>(n));
    EXPECT_TRUE(ordered);
    EXPECT_EQ(end.messages, static_cast<std::uint64_t>(n));
    EXPECT_EQ(end.commit_lsn, commit);
    s->acknowledge(end.end_lsn);
    s->send_status();
    wait_confirmed(end.end_lsn);
}

TEST_F(WalStreamTest, LaggingSlotIsReportedWithItsLagBytesAndCatchesUp) {
    const auto before = inspect_slot(conn(), slot());
    ASSERT_TRUE(before && before->lag_bytes);
    // Nobody streams: 2000 messages of 1 KiB pile up behind the slot.
    {
        pqxx::work tx{conn()};
        tx.exec("SELECT " + q() +
                ".enqueue_wal('orders', 'k', convert_to(repeat('x', 1024), "
                "'UTF8')) FROM generate_series(1, 2000)");
        tx.commit();
    }
    const auto lagging = inspect_slot(conn(), slot());
    ASSERT_TRUE(lagging && lagging->lag_bytes);
    EXPECT_GE(*lagging->lag_bytes, 2000 * 1024) << "lag must cover the unpublished messages";
    EXPECT_EQ(lagging->confirmed_flush_lsn, before->confirmed_flush_lsn);

    auto s = open_stream();
    transaction_assembler a(schema());
    seen got;
    read_until(*s, a, got, [](const seen& x) { return own_ends(x) >= 1; });
    ASSERT_EQ(got.messages.size(), 2000u);
    s->send_status();
    const auto end = got.ends.back().end_lsn;
    wait_confirmed(end);
    const auto caught_up = inspect_slot(conn(), slot());
    ASSERT_TRUE(caught_up && caught_up->lag_bytes);
    // Caught up: what is left is only WAL written after our transaction, by others (this
    // server is shared with concurrent suites, so that part is not zero and not ours to bound).
    pqxx::nontransaction tx{conn()};
    const auto written_since =
        tx.exec_params1("SELECT pg_current_wal_lsn() - $1::pg_lsn", format_lsn(end))[0]
            .as<std::int64_t>();
    EXPECT_LE(*caught_up->lag_bytes, written_since)
        << "lag after catching up: " << *caught_up->lag_bytes;
    EXPECT_GE(caught_up->confirmed_flush_lsn.value_or(0), end);
}

TEST_F(WalStreamTest, IdleSlotFollowsTheServerWhenEverythingIsAcknowledged) {
    // Other databases' and tables' WAL moves on; a client with nothing unacknowledged lets the
    // slot follow (via keepalives), so an idle relay does not show growing lag.
    emit("k", "one");
    auto s = open_stream();
    transaction_assembler a(schema());
    seen got;
    read_until(*s, a, got, [](const seen& x) { return !x.ends.empty(); });
    {
        pqxx::work tx{conn()};
        tx.exec("CREATE TABLE " + q() + ".noise (v text)");
        tx.exec("INSERT INTO " + q() +
                ".noise SELECT repeat('n', 500) FROM generate_series(1, 4000)");
        tx.commit();
    }
    const auto target = pqxx::nontransaction(conn())
                            .exec("SELECT pg_current_wal_lsn()::text")[0][0]
                            .as<std::string>();
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (s->confirmed() < *parse_lsn(target)) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline)
            << "confirmed " << format_lsn(s->confirmed()) << " never reached " << target;
        if (auto item = s->next(200ms)) {
            auto ev = a.feed(item->message());
            if (ev && std::holds_alternative<transaction_end>(*ev)) {
                s->acknowledge(std::get<transaction_end>(*ev).end_lsn);
            }
        }
        s->send_status(true);  // asks the server for a keepalive
    }
    EXPECT_EQ(got.messages.size(), 1u);
}

TEST_F(WalStreamTest, UnacknowledgedDataHoldsTheSlotBack) {
    // Negative control for the rule above: with a transaction received but not acknowledged,
    // keepalives must not move the confirmed position.
    emit("k", "held");
    auto s = open_stream();
    transaction_assembler a(schema());
    seen got;
    read_until(
        *s, a, got, [](const seen& x) { return !x.ends.empty(); }, 60s,
        [](const transaction_end&) { return false; });
    const auto start_confirmed = s->confirmed();
    const auto until = std::chrono::steady_clock::now() + 3s;
    while (std::chrono::steady_clock::now() < until) {
        (void)s->next(200ms);
        s->send_status(true);
    }
    EXPECT_EQ(s->confirmed(), start_confirmed);
    EXPECT_LT(s->confirmed(), got.ends.back().end_lsn);
}

TEST_F(WalStreamTest, MalformedAndNonTransactionalFerryMessagesAreRejectedWithReasons) {
    {
        pqxx::work tx{conn()};
        tx.exec("SELECT pg_logical_emit_message(true, 'ferry', '\\x01020304'::bytea)");
        tx.exec("SELECT pg_logical_emit_message(true, 'ferry.x', 'hello')");
        tx.exec("SELECT pg_logical_emit_message(true, 'unrelated_app', 'hello')");
        tx.commit();
    }
    const auto got = read_to_marker();
    ASSERT_EQ(got.rejected.size(), 2u);
    EXPECT_EQ(got.rejected[0].field, "header");
    EXPECT_NE(got.rejected[0].reason.find("malformed frame: frame truncated"), std::string::npos)
        << got.rejected[0].reason;
    EXPECT_EQ(got.rejected[1].field, "prefix");
}

TEST_F(WalStreamTest, MissingSlotIsReportedAsLostNeverRecreated) {
    pqxx::connection c(ferry::test::pg_dsn());
    ASSERT_TRUE(drop_slot(c, slot()));
    try {
        (void)check_slot(c, slot());
        ADD_FAILURE() << "check_slot accepted a missing slot";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "wal.slot_lost");
        EXPECT_EQ(e.kind(), error_kind::permanent);
        EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos);
    }
    try {
        auto s = open_stream();
        ADD_FAILURE() << "streaming from a missing slot started";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "wal.slot_lost") << e.what();
    }
    EXPECT_FALSE(inspect_slot(c, slot()).has_value()) << "nobody may recreate the slot";
}

TEST_F(WalStreamTest, BadNamesAndBadDsnAreClearErrors) {
    try {
        (void)create_slot(conn(), "Bad-Name");
        ADD_FAILURE();
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "wal.invalid_name");
        EXPECT_EQ(e.field(), "slot");
    }
    try {
        (void)create_slot(conn(), slot());
        ADD_FAILURE();
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "wal.slot_exists");
    }
    auto o = options();
    o.dsn = "postgresql://nobody:s3cret-pw@127.0.0.1:1/none";
    o.connect_timeout = std::chrono::seconds(2);
    try {
        replication_stream s(o);
        ADD_FAILURE();
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "wal.connect");
        EXPECT_TRUE(e.is_retryable());
        EXPECT_EQ(std::string(e.what()).find("s3cret-pw"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace ferry::wal::test
