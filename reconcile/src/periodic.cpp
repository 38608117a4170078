#include "ferry/reconcile/periodic.hpp"

#include <spdlog/spdlog.h>

namespace ferry::reconcile {

periodic::periodic(reconcile_options options, std::chrono::milliseconds interval)
    : _options(std::move(options)), _interval(interval) {}

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
                continue;
            }
            ++_stats.runs;
            _stats.redriven += static_cast<std::uint64_t>(r.redriven);
            _stats.last_counts = r.counts;
            _last_finished = std::chrono::steady_clock::now();
        } catch (const std::exception& e) {
            spdlog::error("event=reconcile_failed error=\"{}\"", e.what());
            std::lock_guard lock(_m);
            ++_stats.failures;
        }
    }
}

}  // namespace ferry::reconcile
