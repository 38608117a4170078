#include "ferry/reconcile/periodic.hpp"

#include <spdlog/spdlog.h>

namespace ferry::reconcile {

periodic::periodic(reconcile_options options, std::chrono::milliseconds interval,
                   ferry::metrics::registry* metrics)
    : _options(std::move(options)),
      _interval(interval),
      _registry(ferry::metrics::or_process(metrics)),
      _runs_total(
          _registry.add_counter("ferry_reconcile_runs_total", "Reconciliation runs finished.")),
      _failures_total(_registry.add_counter("ferry_reconcile_failures_total",
                                            "Reconciliation runs that failed.")),
      _busy_total(_registry.add_counter(
          "ferry_reconcile_busy_total",
          "Reconciliation runs skipped because another instance held the lock.")),
      _redriven_total(
          _registry.add_counter("ferry_reconcile_redriven_total",
                                "Missing messages re-driven into the outbox by reconciliation.")),
      _last_run_age(_registry.add_gauge(
          "ferry_reconcile_last_run_age_seconds",
          "Seconds since the last reconciliation run finished (-1: none yet).")) {
    for (const auto& k : kinds()) {
        _items.emplace(k, _registry.add_gauge("ferry_reconcile_items",
                                              "Items of the last reconciliation run, by kind.",
                                              {{"kind", k}}));
    }
    _last_run_age.set(-1);
    _collector =
        _registry.add_collector([this] { _last_run_age.set(stats().last_run_age_seconds); });
}

periodic::~periodic() { stop(); }

void periodic::start() {
    std::lock_guard lock(_m);
    if (_thread.joinable()) return;
    _stopping = false;
    _thread = std::thread([this] { loop(); });
}

void periodic::stop() {
    {
        std::lock_guard lock(_m);
        _stopping = true;
    }
    _cv.notify_all();
    if (_thread.joinable()) _thread.join();
}

periodic_stats periodic::stats() const {
    std::lock_guard lock(_m);
    auto s = _stats;
    if (s.runs > 0) {
        s.last_run_age_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - _last_finished)
                .count();
    }
    return s;
}

void periodic::loop() {
    for (;;) {
        {
            // The first run waits one interval too: a relay that restarts in a loop must not
            // turn into a reconciliation storm.
            std::unique_lock lock(_m);
            if (_cv.wait_for(lock, _interval, [this] { return _stopping; })) return;
        }
        try {
            const auto r = run(_options);
            std::lock_guard lock(_m);
            if (r.status == run_status::busy) {
                ++_stats.busy;
                _busy_total.inc();
                continue;
            }
            ++_stats.runs;
            _stats.redriven += static_cast<std::uint64_t>(r.redriven);
            _stats.last_counts = r.counts;
            _runs_total.inc();
            _redriven_total.inc(static_cast<double>(r.redriven));
            for (const auto& [kind, g] : _items) {
                const auto it = r.counts.find(kind);
                g.set(it == r.counts.end() ? 0.0 : static_cast<double>(it->second));
            }
            _last_finished = std::chrono::steady_clock::now();
        } catch (const std::exception& e) {
            spdlog::error("event=reconcile_failed error=\"{}\"", e.what());
            std::lock_guard lock(_m);
            ++_stats.failures;
            _failures_total.inc();
        }
    }
}

}  // namespace ferry::reconcile
