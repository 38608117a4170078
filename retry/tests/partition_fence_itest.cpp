// Partition ownership fencing on a real PostgreSQL (ADR 0020): a later owner's acquire refuses
// the earlier owner's writes, and waits for a write that checked the fence and has not committed.
#include <gtest/gtest.h>

#include <atomic>
#include <pqxx/pqxx>
#include <thread>

#include "ferry/outbox/migrate.hpp"
#include "ferry/retry/fence.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/scoped_schema.hpp"

using namespace std::chrono_literals;

namespace {

class PartitionFenceTest : public ::testing::Test {
protected:
    void SetUp() override { (void)ferry::outbox::migrate(conn, schema.name()); }
    std::vector<ferry::retry::owned_partition> parts() { return {{"t", 0, 0}, {"t", 1, 0}}; }
    ferry::test::scoped_schema schema{"fence"};
    pqxx::connection conn{ferry::test::pg_dsn()};
};

TEST_F(PartitionFenceTest, LaterOwnerFencesTheEarlierOne) {
    ferry::retry::partition_fence f(schema.name(), "g");
    auto a = parts();
    auto b = parts();
    {
        pqxx::work tx{conn};
        f.acquire(tx, "a", a);
        tx.commit();
    }
    EXPECT_EQ(a[0].epoch, 1);
    {
        pqxx::work tx{conn};
        EXPECT_TRUE(f.holds(tx, "t", 0, "a", a[0].epoch));
        EXPECT_FALSE(f.holds(tx, "t", 2, "a", 1));  // never assigned: not owned
    }
    {
        pqxx::work tx{conn};
        f.acquire(tx, "b", b);
        tx.commit();
    }
    EXPECT_EQ(b[0].epoch, 2);
    pqxx::work tx{conn};
    EXPECT_FALSE(f.holds(tx, "t", 0, "a", a[0].epoch));
    EXPECT_TRUE(f.holds(tx, "t", 0, "b", b[0].epoch));
    // The same instance re-assigned: its older generation is fenced too.
    EXPECT_FALSE(f.holds(tx, "t", 0, "b", b[0].epoch - 1));
    // Another group's rows are separate.
    ferry::retry::partition_fence other(schema.name(), "g2");
    EXPECT_FALSE(other.holds(tx, "t", 0, "b", b[0].epoch));
}

TEST_F(PartitionFenceTest, AcquireWaitsForAWriterThatCheckedTheFence) {
    ferry::retry::partition_fence f(schema.name(), "g");
    auto a = parts();
    {
        pqxx::work tx{conn};
        f.acquire(tx, "a", a);
        tx.commit();
    }
    // A's write transaction checked the fence and is still open.
    pqxx::work writer{conn};
    ASSERT_TRUE(f.holds(writer, "t", 0, "a", a[0].epoch));
    std::atomic<bool> acquired{false};
    std::thread b([&] {
        pqxx::connection c{ferry::test::pg_dsn()};
        pqxx::work tx{c};
        tx.exec("SET application_name = 'fence_b'");
        auto bp = parts();
        f.acquire(tx, "b", bp);
        tx.commit();
        acquired = true;
    });
    // Wait until B is blocked on A's row lock (observed in pg_stat_activity, not assumed).
    bool waiting = false;
    for (int i = 0; i < 400 && !waiting; ++i) {
        pqxx::connection c{ferry::test::pg_dsn()};
        pqxx::read_transaction q{c};
        waiting = q.exec(
                       "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                       "'fence_b' AND wait_event_type = 'Lock'")[0][0]
                      .as<int>() == 1;
        if (!waiting) std::this_thread::sleep_for(25ms);
    }
    EXPECT_TRUE(waiting) << "B's acquire should wait for A's open write";
    EXPECT_FALSE(acquired.load());
    writer.commit();  // A's record is durable before B owns the partition
    b.join();
    EXPECT_TRUE(acquired.load());
    pqxx::work tx{conn};
    EXPECT_FALSE(f.holds(tx, "t", 0, "a", a[0].epoch));
}

}  // namespace
