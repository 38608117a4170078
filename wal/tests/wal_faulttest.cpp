// WAL mode under faults on the real PostgreSQL: an immediate restart mid-stream (nothing lost,
// duplicates counted), and a slot invalidated by max_slot_wal_keep_size (reported as lost,
// never silently recreated). RUN_SERIAL: both change the shared server.
#include <set>

#include "wal_fixture.hpp"

namespace ferry::wal::test {
namespace {

class WalFaultTest : public WalFixture {
protected:
    void restart_mid_stream(bool relay_remembers_position);
};

// Reconnects until the server accepts connections again.
std::unique_ptr<replication_stream> reconnect(const stream_options& o, lsn from) {
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    for (;;) {
        try {
            auto s = std::make_unique<replication_stream>(o);
            s->start(from);
            return s;
        } catch (const ferry::error& e) {
            if (!e.is_retryable() || std::chrono::steady_clock::now() > deadline) throw;
            std::this_thread::sleep_for(200ms);
        }
    }
}

void WalFaultTest::restart_mid_stream(bool relay_remembers_position) {
    constexpr int txs = 40, per_tx = 25;
    for (int i = 0; i < txs; ++i) emit("k", "m" + std::to_string(i), per_tx);

    std::multiset<std::string> delivered;
    std::size_t acked_messages = 0;
    lsn acked = 0;
    {
        auto first = receive_acknowledging_first(30, 20);
        auto& s = first.stream;
        acked = first.acked;
        acked_messages = first.acked_messages;
        for (const auto& m : first.got.messages) delivered.insert(payload(m));
        // The server dies under the open stream.
        ASSERT_EQ(ferry::test::run_pg_ctl({"stop", "-m", "immediate"}), 0);
        try {
            // Whatever was already buffered is read first; then the broken connection shows.
            const auto until = std::chrono::steady_clock::now() + 60s;
            while (std::chrono::steady_clock::now() < until) (void)s->next(100ms);
            ADD_FAILURE() << "the stream did not notice the server stopping";
        } catch (const ferry::error& e) {
            EXPECT_EQ(e.code(), "wal.connection") << e.what();
            EXPECT_TRUE(e.is_retryable());
        }
        ASSERT_EQ(ferry::test::run_pg_ctl({"start", "-w", "-t", "60"}), 0);
    }

    // The relay process survived the database's crash and remembers what it confirmed; it asks
    // to start there. (PostgreSQL writes a slot's confirmed_flush to disk only at checkpoints or
    // when restart_lsn moves, so after a crash the slot alone may point further back; a relay
    // that died too replays from there: at most everything since the last checkpoint.)
    auto s = reconnect(options(), relay_remembers_position ? acked : 0);
    transaction_assembler a(schema());
    seen got;
    read_until(*s, a, got, [](const seen& x) {
        for (const auto& m : x.messages)
            if (m.message.payload == "m39-24") return true;
        return false;
    });
    std::size_t duplicates = 0;
    for (const auto& m : got.messages) duplicates += delivered.count(payload(m));
    for (const auto& m : got.messages) delivered.insert(payload(m));
    // Lost: none. Every message of every transaction is there at least once.
    for (int i = 0; i < txs; ++i) {
        for (int j = 0; j < per_tx; ++j) {
            EXPECT_GE(delivered.count("m" + std::to_string(i) + "-" + std::to_string(j)), 1u)
                << "lost m" << i << "-" << j;
        }
    }
    // Duplicates: exactly the unconfirmed window (10 transactions received, not acknowledged)
    // when the relay passes its position; otherwise at most everything since the slot's last
    // save (here: everything the first client received, as no checkpoint ran in between).
    const std::size_t window = (30 - 20) * per_tx;
    if (relay_remembers_position) {
        EXPECT_EQ(duplicates, window);
    } else {
        EXPECT_GE(duplicates, window);
        EXPECT_LE(duplicates, 30u * per_tx);
    }
    std::cout << "restart (relay remembers its position: " << relay_remembers_position
              << "): duplicates=" << duplicates << " unconfirmed_window=" << window
              << " acknowledged_before_crash=" << acked_messages << "\n";
    RecordProperty("duplicates", static_cast<int>(duplicates));
    // Order survives the replay: the first deliveries of the second client are in commit order.
    for (std::size_t i = 1; i < got.messages.size(); ++i) {
        EXPECT_GE(got.messages[i].commit_lsn, got.messages[i - 1].commit_lsn);
    }
    s->close();
}

TEST_F(WalFaultTest, PostgresRestartMidStreamLosesNothingDuplicatesAreTheUnconfirmedWindow) {
    restart_mid_stream(true);
}

TEST_F(WalFaultTest, PostgresAndRelayRestartReplayFromTheSlotsSavedPositionLosingNothing) {
    restart_mid_stream(false);
}

TEST_F(WalFaultTest, InvalidatedSlotIsReportedAsLostAndNotRecreated) {
    pqxx::connection admin(ferry::test::pg_dsn());
    struct restore_setting {
        pqxx::connection& c;
        ~restore_setting() {
            try {
                pqxx::nontransaction tx{c};
                tx.exec("ALTER SYSTEM RESET max_slot_wal_keep_size");
                tx.exec("SELECT pg_reload_conf()");
            } catch (const std::exception& e) {
                ADD_FAILURE() << "cannot reset max_slot_wal_keep_size: " << e.what();
            }
        }
    } restore{admin};
    {
        pqxx::nontransaction tx{admin};
        tx.exec("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
        tx.exec("SELECT pg_reload_conf()");
    }
    emit("k", "before-loss");
    // Write and switch away from several WAL segments, then checkpoint: the slot's restart_lsn
    // falls more than 1 MB behind and the checkpoint invalidates it.
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    std::optional<slot_info> info;
    for (;;) {
        {
            pqxx::nontransaction tx{admin};
            tx.exec("SELECT pg_logical_emit_message(false, 'noise', repeat('x', 500000))");
            tx.exec("SELECT pg_switch_wal()");
            tx.exec("SELECT pg_logical_emit_message(false, 'noise', repeat('x', 500000))");
            tx.exec("SELECT pg_switch_wal()");
            tx.exec("CHECKPOINT");
        }
        info = inspect_slot(admin, slot());
        ASSERT_TRUE(info.has_value()) << "the slot disappeared instead of being marked lost";
        if (info->wal_status == "lost") break;
        ASSERT_LT(std::chrono::steady_clock::now(), deadline)
            << "slot not invalidated; wal_status=" << info->wal_status;
    }
    EXPECT_TRUE(info->lost());
    try {
        (void)check_slot(admin, slot());
        ADD_FAILURE() << "check_slot accepted a lost slot";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "wal.slot_lost");
        EXPECT_EQ(e.kind(), error_kind::permanent);
        EXPECT_NE(std::string(e.what()).find("wal_status = lost"), std::string::npos) << e.what();
    }
    try {
        auto s = open_stream();
        ADD_FAILURE() << "streaming from a lost slot started";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "wal.slot_lost") << e.what();
        EXPECT_FALSE(e.is_retryable());
    }
    // Producers are refused instead of writing messages no relay would decode.
    try {
        emit(admin, "k", "after-loss");
        ADD_FAILURE() << "enqueue_wal emitted with only a lost slot registered";
    } catch (const pqxx::sql_error& e) {
        EXPECT_EQ(e.sqlstate(), "55000") << e.what();
    }
    // Still there, still lost: nothing recreated it behind the operator's back.
    EXPECT_EQ(inspect_slot(admin, slot())->wal_status, "lost");
}

}  // namespace
}  // namespace ferry::wal::test
