#pragma once
// The check-back scheduler: finds half messages whose next check is due and asks their producer
// group's resolver for the outcome (ADR 0004). It runs inside ferry-relay.
//
// Every time it reads is the database's clock: a due check is `next_check_at <= clock_timestamp()`
// evaluated by PostgreSQL, so a relay host whose clock is skewed cannot check early and roll back
// a live local transaction. Claiming a due message bumps `check_count` and `next_check_at` in the
// same statement (FOR UPDATE SKIP LOCKED), so several relays never check one message at once.
// A decision is recorded with decide_half(..., 'checkback'), a compare-and-set that never
// overrides a decision the producer recorded first. After the last check a message that is still
// undecided is parked: never discarded, listed by `ferryctl half list --state parked`.
//
// Metrics go to `scheduler_options::metrics` (the process registry by default, see
// ferry/common/metrics.hpp): ferry_checkback_checks_total{outcome}, ferry_checkback_parked_total,
// ferry_checkback_errors_total, and the gauges ferry_half_pending, ferry_half_parked and
// ferry_half_oldest_pending_age_seconds, refreshed by the background thread.
//
// Lifecycle: construct, then either call run_once() (tests) or start()/stop() a background
// thread with its own connection. stats() may be read from any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "ferry/checkback/resolver.hpp"
#include "ferry/common/metrics.hpp"

namespace ferry::checkback {

struct scheduler_options {
    std::string dsn;
    std::string schema = "ferry";
    std::chrono::milliseconds tick{500};
    int batch_size = 64;
    /// Resolver per producer group. A group without one gets `unknown` ("no resolver").
    std::map<std::string, std::shared_ptr<resolver>> groups;
    /// Answered mailbox requests older than this are deleted.
    std::chrono::milliseconds request_retention{std::chrono::hours(1)};
    /// How often the background thread refreshes the pending/parked gauges in stats().
    std::chrono::milliseconds gauge_interval{2000};
    /// Where the metrics go; nullptr: ferry::metrics::process_registry(). Must outlive the
    /// scheduler.
    ferry::metrics::registry* metrics = nullptr;
};

/// This scheduler's own counts (the registry's counters add up every scheduler of the process).
/// ferry-relay still copies them into its own registry until it serves the shared one.
struct scheduler_stats {
    std::atomic<std::uint64_t> checks_commit{0};
    std::atomic<std::uint64_t> checks_rollback{0};
    std::atomic<std::uint64_t> checks_unknown{0};
    std::atomic<std::uint64_t> parked{0};
    std::atomic<std::uint64_t> errors{0};
    /// Refreshed from the database by the background thread every gauge_interval.
    std::atomic<std::int64_t> pending_now{0};
    std::atomic<std::int64_t> parked_now{0};
    std::atomic<double> oldest_pending_age_s{0};
};

/// Current counts from the database, for metrics.
struct half_gauges {
    std::int64_t pending = 0;
    std::int64_t parked = 0;
    double oldest_pending_age_s = 0;
};

class scheduler {
public:
    explicit scheduler(scheduler_options options);
    ~scheduler();
    scheduler(const scheduler&) = delete;
    scheduler& operator=(const scheduler&) = delete;

    /// Checks every due message once (up to batch_size). Returns how many were checked.
    /// Throws ferry::error on database errors.
    int run_once();

    void start();
    void stop();

    [[nodiscard]] const scheduler_stats& stats() const noexcept { return _stats; }
    /// Reads the gauges now. Uses the scheduler's connection: call it when the background
    /// thread is not running (the thread itself refreshes stats() every gauge_interval).
    [[nodiscard]] half_gauges read_gauges();

private:
    struct impl;
    std::unique_ptr<impl> _impl;
    scheduler_stats _stats;
};

}  // namespace ferry::checkback
