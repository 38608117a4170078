#pragma once
// Retention of the outbox module's tables that keep rows after a message's life ended
// (ferry/common/retention.hpp), and the runner that applies a list of tables of any module.
//
//  - half_message: committed and rolled-back half messages older than the window by
//    decided_at. Pending and parked ones are never pruned: they wait for a decision.
//  - expired: expired (TTL) messages older than the window by expired_at.
//  - parked: measured only. A parked message holds the later messages of its key until an
//    operator retries it (back into the outbox) or discards it, and both delete the row
//    (retry_parked / discard_parked), so nothing is left to prune; pruning an unresolved one
//    would drop a message silently.
//
// retention_runner: prunes every table in bounded batches (each its own transaction, repeated
// while batches come back full), then measures it, and keeps the gauges
// ferry_retention_rows{table}, ferry_retention_oldest_age_seconds{table} and the counter
// ferry_retention_deleted_total{table} in the metrics registry. run_once() on the caller's
// connection; start()/stop() a background thread with its own session (ferry-relay). Several
// runners on one schema are safe: a batch skips rows another transaction holds.
// Thread-safety: run_once() from one thread at a time; start()/stop() from the owner's thread.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "ferry/common/metrics.hpp"
#include "ferry/common/retention.hpp"

namespace ferry::outbox {

/// `schema` is the unquoted schema name (validated and quoted here).
[[nodiscard]] retention::table half_message_retention(const std::string& schema,
                                                      std::chrono::milliseconds window);
[[nodiscard]] retention::table expired_retention(const std::string& schema,
                                                 std::chrono::milliseconds window);
[[nodiscard]] retention::table parked_measure(const std::string& schema);

/// What one run did to one table.
struct retention_result {
    std::string table;
    std::string window_key;
    std::chrono::milliseconds window{0};
    bool pruned = false;  // false: measured only
    long long deleted = 0;
    int batches = 0;
    retention::table_stats after;
};

struct retention_runner_options {
    /// Rows per DELETE statement (retention.batch).
    long long batch = 5000;
    /// Where the gauges go; nullptr: ferry::metrics::process_registry(). Must outlive the runner.
    ferry::metrics::registry* metrics = nullptr;
    /// The background thread reports each run's failure here (ferry-relay logs it); the module
    /// itself logs nothing.
    std::function<void(const std::string& error)> on_error;
    /// And each run's results (empty: nothing).
    std::function<void(const std::vector<retention_result>&)> on_run;
};

class retention_runner {
public:
    /// Throws ferry::error(permanent, "retention.invalid") on a batch below 1 or a pruned table
    /// without a positive window.
    retention_runner(std::vector<retention::table> tables, retention_runner_options options);
    ~retention_runner();
    retention_runner(const retention_runner&) = delete;
    retention_runner& operator=(const retention_runner&) = delete;

    /// Prunes and measures every table (or only `only`, a table name; unknown names throw
    /// ferry::error(permanent, "retention.unknown_table") listing the known ones). Database
    /// errors throw ferry::error (pq translation, code prefix "retention").
    std::vector<retention_result> run_once(pqxx::connection& conn, const std::string& only = {});

    /// Runs run_once() every `interval` on a thread with its own session to `dsn` until stop().
    /// Errors are logged and retried at the next interval.
    void start(std::string dsn, std::chrono::milliseconds interval,
               std::chrono::milliseconds connect_timeout = std::chrono::seconds(5));
    void stop();

    [[nodiscard]] const std::vector<retention::table>& tables() const { return _tables; }

private:
    struct series {
        ferry::metrics::gauge rows;
        ferry::metrics::gauge oldest;
        ferry::metrics::counter deleted;
    };
    void loop(const std::string& dsn, std::chrono::milliseconds interval,
              std::chrono::milliseconds connect_timeout);

    std::vector<retention::table> _tables;
    retention_runner_options _o;
    std::vector<series> _series;  // parallel to _tables
    std::thread _thread;
    std::mutex _mutex;
    std::condition_variable _cv;
    std::atomic<bool> _stopping{false};
};

}  // namespace ferry::outbox
