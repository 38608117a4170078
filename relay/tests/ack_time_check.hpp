#pragma once
// A check shared by the polling, WAL and snapshot relay suites: the ledger's acked_at (migration
// 0108).

#include <gtest/gtest.h>

#include <functional>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "ferry/relay/relay.hpp"
#include "relay_fixture.hpp"

namespace ferry::relay_test {

/// The ledger's acked_at is when Kafka acknowledged the batch, not when its mark ran. The check
/// holds the lease row FOR UPDATE, so the first batch's mark waits (a mark locks the row FOR
/// KEY SHARE; neither source's claim locks it). A second message is claimed, produced and
/// acknowledged meanwhile, and its mark queues behind the first (one mark lane). Released a
/// second later, both marks run: the second's published_at comes after the wait, its acked_at
/// before it. `enqueue_one(key)` commits one message of `env.topic` and returns its id.
inline void expect_acked_at_is_the_acknowledgement(
    const relay_env& env, ferry::relay::relay_options o,
    const std::function<std::string(const std::string&)>& enqueue_one) {
    using namespace std::chrono_literals;
    ferry::test::kafka_reader reader(env.topic);
    o.lease_ttl = 10s;  // the renewal waits for the check's lock too
    o.mark_lanes = 1;
    const auto holds_id = [](const std::vector<ferry::test::kafka_record>& records,
                             const std::string& id) {
        for (const auto& r : records) {
            if (r.header("ferry-message-id") == id) return true;
        }
        return false;
    };
    ferry::relay::relay relay(o);
    relay.start();
    ASSERT_TRUE(eventually(
        [&] {
            return count_rows("SELECT count(*) FROM " + env.q() +
                              ".relay_lease WHERE owner IS NOT NULL") == 1;
        },
        20s));
    pqxx::connection locker{ferry::test::pg_dsn()};
    pqxx::work hold{locker};
    hold.exec("SELECT 1 FROM " + env.q() + ".relay_lease WHERE lease_group = 0 FOR UPDATE");
    const auto first = enqueue_one("a");
    ASSERT_TRUE(holds_id(reader.read(1, 60s), first)) << reader.last_error();
    const auto second = enqueue_one("b");
    ASSERT_TRUE(holds_id(reader.read(2, 60s), second)) << reader.last_error();
    EXPECT_EQ(count_rows("SELECT count(*) FROM " + env.q() + ".ledger"), 0)
        << "a mark got past the lease row's lock";
    std::this_thread::sleep_for(1s);
    hold.commit();
    ASSERT_TRUE(eventually(
        [&] { return count_rows("SELECT count(*) FROM " + env.q() + ".ledger") == 2; }, 30s));
    relay.stop();

    pqxx::connection conn{ferry::test::pg_dsn()};
    pqxx::nontransaction q{conn};
    const auto rows = q.exec(
        "SELECT message_id::text, acked_at IS NOT NULL, acked_at >= created_at, "
        "acked_at <= published_at, extract(epoch FROM published_at - acked_at)::float8 "
        "FROM " +
        env.q() + ".ledger ORDER BY created_at");
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0][0].as<std::string>(), first);
    EXPECT_EQ(rows[1][0].as<std::string>(), second);
    for (const auto& r : rows) {
        ASSERT_TRUE(r[1].as<bool>()) << "no acked_at for " << r[0].c_str();
        EXPECT_TRUE(r[2].as<bool>()) << "acknowledged before it was created: " << r[0].c_str();
        EXPECT_TRUE(r[3].as<bool>()) << "acknowledged after its mark began: " << r[0].c_str();
    }
    EXPECT_GE(rows[1][4].as<double>(), 0.9)
        << "the second batch's acked_at is its mark's time, not Kafka's acknowledgement";
}

}  // namespace ferry::relay_test
