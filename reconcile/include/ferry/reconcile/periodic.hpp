#pragma once
// Runs reconciliation every `interval` on a thread of its own (ferry-relay uses it when
// reconcile.enabled). A run that fails is logged and counted; the next interval tries again.
// Several relay instances may each run one: the advisory lock in run() lets one of them work
// on a schema at a time, the others count a "busy" skip.
//
// Metrics go to the registry passed in (the process registry by default, see
// ferry/common/metrics.hpp): ferry_reconcile_runs_total, ferry_reconcile_failures_total,
// ferry_reconcile_busy_total, ferry_reconcile_redriven_total, ferry_reconcile_items{kind} (the
// last finished run) and ferry_reconcile_last_run_age_seconds (-1 before the first run).
//
// Lifecycle: construct, start(), stop() (or destroy): stop() wakes the thread and waits for the
// run in progress to finish. stats() may be called from any thread (the metrics scrape).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>

#include "ferry/common/metrics.hpp"
#include "ferry/reconcile/reconcile.hpp"

namespace ferry::reconcile {

struct periodic_stats {
    std::uint64_t runs = 0;                           // finished runs
    std::uint64_t failures = 0;                       // runs that threw
    std::uint64_t busy = 0;                           // skipped: another instance was running
    std::uint64_t redriven = 0;                       // messages re-driven, all runs
    std::map<std::string, std::int64_t> last_counts;  // items by kind of the last finished run
    /// Seconds since the last finished run; negative before the first one.
    double last_run_age_seconds = -1;
};

class periodic {
public:
    /// `metrics`: nullptr means ferry::metrics::process_registry(); it must outlive this object.
    periodic(reconcile_options options, std::chrono::milliseconds interval,
             ferry::metrics::registry* metrics = nullptr);
    ~periodic();
    periodic(const periodic&) = delete;
    periodic& operator=(const periodic&) = delete;

    void start();
    void stop();
    [[nodiscard]] periodic_stats stats() const;

private:
    void loop();

    reconcile_options _options;
    std::chrono::milliseconds _interval;
    mutable std::mutex _m;
    std::condition_variable _cv;
    bool _stopping = false;
    periodic_stats _stats;
    std::chrono::steady_clock::time_point _last_finished{};
    std::thread _thread;
    ferry::metrics::registry& _registry;
    ferry::metrics::counter _runs_total, _failures_total, _busy_total, _redriven_total;
    ferry::metrics::gauge _last_run_age;
    std::map<std::string, ferry::metrics::gauge> _items;
    ferry::metrics::collector_handle _collector;  // last: unregistered before the rest goes
};

}  // namespace ferry::reconcile
