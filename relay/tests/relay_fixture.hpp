#pragma once
// Shared helpers of the relay's integration and fault tests: a migrated scoped schema, SQL
// enqueue (the producer API in the business transaction), and checks over what arrived in Kafka.

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ferry/outbox/migrate.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/kafka_reader.hpp"
#include "ferry/test/scoped_schema.hpp"
#include "ferry/test/unique_name.hpp"
#include "ferry/wal/slot.hpp"

namespace ferry::relay_test {

using namespace std::chrono_literals;

/// A migrated schema plus a topic name unique to the test.
struct relay_env {
    ferry::test::scoped_schema schema{"relay"};
    std::string topic = ferry::test::unique_name("relay_t");

    relay_env() {
        pqxx::connection conn{ferry::test::pg_dsn()};
        (void)ferry::outbox::migrate(conn, schema.name());
    }

    [[nodiscard]] std::string q() const { return "\"" + schema.name() + "\""; }
};

/// relay_env for WAL mode: a pgoutput slot registered for the schema and an empty publication,
/// both unique to the test and dropped at the end (a leftover slot would pin WAL).
struct wal_env : relay_env {
    std::string slot = ferry::test::unique_name("relay_slot");
    std::string publication = ferry::test::unique_name("relay_pub");

    wal_env() {
        pqxx::connection conn{ferry::test::pg_dsn()};
        (void)ferry::wal::ensure_publication(conn, publication);
        (void)ferry::wal::create_slot(conn, slot);
        ferry::wal::register_slot(conn, schema.name(), slot);
    }
    ~wal_env() {
        try {
            pqxx::connection conn{ferry::test::pg_dsn()};
            // A stopped relay's walsender may take a moment to let go of the slot.
            for (int i = 0; i < 100; ++i) {
                try {
                    (void)ferry::wal::drop_slot(conn, slot);
                    break;
                } catch (const std::exception&) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(100));
                }
            }
            (void)ferry::wal::drop_publication(conn, publication);
        } catch (const std::exception& e) {
            ADD_FAILURE() << "wal_env cleanup: " << e.what();
        }
    }
};

/// Emits one message through the SQL API of WAL mode inside `tx`; returns its id (uuid text).
inline std::string enqueue_wal(pqxx::transaction_base& tx, const std::string& schema,
                               const std::string& topic, const std::string& key,
                               const std::string& payload, const std::string& headers_json = "{}") {
    return tx
        .exec_params("SELECT \"" + schema +
                         "\".enqueue_wal($1, $2, convert_to($3, 'UTF8'), $4::jsonb)::text",
                     topic, key, payload, headers_json)[0][0]
        .as<std::string>();
}

struct enqueue_args {
    std::string key;
    std::string payload;
    std::string headers_json = "{}";
    long deliver_after_ms = -1;
    long expires_after_ms = -1;
};

/// Enqueues inside `tx` through the SQL API; returns the message id (uuid text).
inline std::string enqueue(pqxx::transaction_base& tx, const std::string& schema,
                           const std::string& topic, const enqueue_args& a) {
    return tx
        .exec_params("SELECT \"" + schema +
                         "\".enqueue($1, $2, convert_to($3, 'UTF8'), $4::jsonb, "
                         "CASE WHEN $5::bigint < 0 THEN NULL ELSE $5::bigint * interval '1 "
                         "millisecond' END, CASE WHEN $6::bigint < 0 THEN NULL ELSE $6::bigint * "
                         "interval '1 millisecond' END)::text",
                     topic, a.key, a.payload, a.headers_json, a.deliver_after_ms,
                     a.expires_after_ms)[0][0]
        .as<std::string>();
}

/// Commits one message in its own transaction.
inline std::string enqueue_committed(pqxx::connection& conn, const std::string& schema,
                                     const std::string& topic, const enqueue_args& a) {
    pqxx::work tx{conn};
    auto id = enqueue(tx, schema, topic, a);
    tx.commit();
    return id;
}

inline long count_rows(const std::string& sql) {
    pqxx::connection conn{ferry::test::pg_dsn()};
    pqxx::nontransaction tx{conn};
    return tx.exec(sql)[0][0].as<long>();
}

/// Polls `pred` until true or `timeout`.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step = 50ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (pred()) return true;
        std::this_thread::sleep_for(step);
    }
    return pred();
}

/// What the Kafka history says about a set of committed message ids.
struct delivery_check {
    std::size_t lost = 0;
    std::size_t duplicates = 0;  // extra copies beyond the first
    std::size_t phantoms = 0;    // records whose id was never committed
    std::vector<std::string> lost_examples;
};

inline delivery_check check_delivery(const std::vector<ferry::test::kafka_record>& records,
                                     const std::set<std::string>& committed) {
    std::map<std::string, int> seen;
    delivery_check c;
    for (const auto& r : records) {
        const auto id = r.header("ferry-message-id").value_or("");
        if (committed.count(id) == 0) {
            ++c.phantoms;
            continue;
        }
        if (++seen[id] > 1) ++c.duplicates;
    }
    for (const auto& id : committed) {
        if (seen.count(id) == 0) {
            ++c.lost;
            if (c.lost_examples.size() < 5) c.lost_examples.push_back(id);
        }
    }
    return c;
}

inline std::vector<ferry::test::kafka_record> with_key(
    const std::vector<ferry::test::kafka_record>& records, const std::string& key) {
    std::vector<ferry::test::kafka_record> out;
    for (const auto& r : records) {
        if (r.key && *r.key == key) out.push_back(r);
    }
    return out;
}

inline bool contains_id(const std::vector<ferry::test::kafka_record>& records,
                        const std::string& id) {
    for (const auto& r : records) {
        if (r.header("ferry-message-id") == id) return true;
    }
    return false;
}

inline std::string describe(const delivery_check& c) {
    std::string out = "lost=" + std::to_string(c.lost) +
                      " duplicates=" + std::to_string(c.duplicates) +
                      " phantoms=" + std::to_string(c.phantoms);
    for (const auto& id : c.lost_examples) out += " lost:" + id;
    return out;
}

}  // namespace ferry::relay_test
