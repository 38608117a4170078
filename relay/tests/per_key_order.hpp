#pragma once
// The per-key order check shared by the in-process relay suites (polling and snapshot): it runs
// a ferry::relay in the test process, so only suites that link ferry::relay include it.

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ferry/relay/relay.hpp"
#include "relay_fixture.hpp"

namespace ferry::relay_test {

/// Producers that serialize on a per-key aggregate row (SELECT ... FOR UPDATE through an
/// UPDATE ... RETURNING) while a relay with `options` runs: per key, Kafka's order must be the
/// commit order (key_seq 1, 2, 3, ...), each message once. With `txid_first` each transaction
/// takes its txid before it waits for the key (a txid-ordered reader would then reorder).
/// `before_stop(relay, committed)` runs after the checks, before the relay stops.
inline void expect_per_key_order(
    const relay_env& env, const ferry::relay::relay_options& options, int threads, int keys,
    int per_thread, bool txid_first,
    const std::function<void(ferry::relay::relay&, std::size_t)>& before_stop = {}) {
    {
        pqxx::connection conn{ferry::test::pg_dsn()};
        pqxx::work tx{conn};
        tx.exec("CREATE TABLE " + env.q() + ".aggregate (key text PRIMARY KEY, seq int NOT NULL)");
        tx.exec("INSERT INTO " + env.q() + ".aggregate SELECT 'key-' || g, 0 FROM " +
                "generate_series(0, " + std::to_string(keys - 1) + ") g");
        tx.commit();
    }
    ferry::relay::relay relay(options);
    relay.start();
    std::mutex ids_mutex;
    std::set<std::string> committed;
    std::atomic<int> failures{0};
    std::vector<std::thread> producers;
    for (int t = 0; t < threads; ++t) {
        producers.emplace_back([&, t] {
            try {
                pqxx::connection conn{ferry::test::pg_dsn()};
                std::mt19937 rng(static_cast<unsigned>(t * 7919 + 1));
                for (int i = 0; i < per_thread; ++i) {
                    const auto key = "key-" + std::to_string(rng() % static_cast<unsigned>(keys));
                    pqxx::work tx{conn};
                    if (txid_first) tx.exec("SELECT pg_current_xact_id()");
                    const int seq = tx.exec_params("UPDATE " + env.q() +
                                                       ".aggregate SET seq = seq + 1 WHERE key = "
                                                       "$1 RETURNING seq",
                                                   key)[0][0]
                                        .as<int>();
                    const auto id = enqueue(tx, env.schema.name(), env.topic,
                                            {key, std::to_string(seq),
                                             R"({"key_seq":")" + std::to_string(seq) + R"("})"});
                    tx.commit();
                    std::lock_guard lock(ids_mutex);
                    committed.insert(id);
                }
            } catch (const std::exception& e) {
                ++failures;
                ADD_FAILURE() << e.what();
            }
        });
    }
    for (auto& p : producers) p.join();
    ASSERT_EQ(failures.load(), 0);
    ferry::test::kafka_reader reader(env.topic);
    auto records = reader.read(committed.size(), 60s);
    records = reader.read_all(1s, 20s);
    const auto check = check_delivery(records, committed);
    EXPECT_EQ(check.lost + check.duplicates + check.phantoms, 0u) << describe(check);
    std::size_t violations = 0;
    std::map<std::string, int> last_seq;
    for (const auto& r : records) {  // offset order within each partition; a key has one partition
        const int seq = std::stoi(r.header("key_seq").value_or("0"));
        auto& last = last_seq[r.key.value_or("")];
        if (seq != last + 1) ++violations;
        last = seq;
    }
    EXPECT_EQ(violations, 0u);
    if (before_stop) before_stop(relay, committed.size());
    relay.stop();
}

}  // namespace ferry::relay_test
