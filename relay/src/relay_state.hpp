#pragma once
// Private: what the relay's threads share (relay.cpp wires them):
//  - the leases this instance holds (group -> epoch), which the lease keeper acquires, renews
//    and releases and the publisher reads;
//  - the groups the lease keeper wants to give up (a release is deferred while a batch of the
//    group is in flight, and the publisher starts no new batch of such a group);
//  - per group, how many batches are in flight (claimed and not yet marked or given up): a
//    voluntary release never cuts a batch in half, even when the batch's mark runs on another
//    thread than its claim;
//  - stop state and the PostgreSQL health that /readyz reports.
// Every member is guarded by `mutex`; `cv` wakes sleepers on stop, on a new lease and when a
// batch ends.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <vector>

namespace ferry::relay::detail {

class relay_state {
public:
    using clock = std::chrono::steady_clock;

    explicit relay_state(int lease_groups) : _in_flight(static_cast<std::size_t>(lease_groups)) {}

    // --- stop

    /// Returns false when stop() had already been requested.
    bool request_stop(std::chrono::milliseconds grace) {
        {
            std::lock_guard lock(mutex);
            if (_stopping) return false;
            _stopping = true;
            _stop_deadline = clock::now() + grace;
        }
        cv.notify_all();
        return true;
    }
    [[nodiscard]] bool stopping() const {
        std::lock_guard lock(mutex);
        return _stopping;
    }
    /// True once stop() was requested and its grace period is over: an in-flight batch is then
    /// abandoned (its rows stay unmarked and are republished later).
    [[nodiscard]] bool past_stop_deadline() const {
        std::lock_guard lock(mutex);
        return _stopping && clock::now() >= _stop_deadline;
    }
    /// Sleeps up to `d`, waking early on stop. Returns false when stopping.
    bool sleep_for(std::chrono::milliseconds d) {
        std::unique_lock lock(mutex);
        cv.wait_for(lock, d, [this] { return _stopping; });
        return !_stopping;
    }
    void set_publisher_done() {
        {
            std::lock_guard lock(mutex);
            _publisher_done = true;
        }
        cv.notify_all();
    }
    void wait_publisher_done() {
        std::unique_lock lock(mutex);
        cv.wait(lock, [this] { return _publisher_done; });
    }

    // --- health

    void set_pg_ok(bool ok) {
        std::lock_guard lock(mutex);
        _pg_ok = ok;
    }
    [[nodiscard]] bool ready() const {
        std::lock_guard lock(mutex);
        return _pg_ok && !_stopping;
    }

    // --- leases

    [[nodiscard]] std::map<int, std::int64_t> held() const {
        std::lock_guard lock(mutex);
        return _held;
    }
    [[nodiscard]] int groups_held() const {
        std::lock_guard lock(mutex);
        return static_cast<int>(_held.size());
    }
    [[nodiscard]] bool holds(int group) const {
        std::lock_guard lock(mutex);
        return _held.count(group) != 0;
    }
    void add_lease(int group, std::int64_t epoch) {
        {
            std::lock_guard lock(mutex);
            _held[group] = epoch;
        }
        cv.notify_all();
    }
    /// Forgets `group` if it is still held at `epoch`. Returns true when it was.
    bool drop_lease(int group, std::int64_t epoch) {
        std::lock_guard lock(mutex);
        auto it = _held.find(group);
        if (it == _held.end() || it->second != epoch) return false;
        _held.erase(it);
        _release_requested.erase(group);
        return true;
    }
    /// Takes every lease out of the table (for the final release on stop).
    std::map<int, std::int64_t> take_all() {
        std::lock_guard lock(mutex);
        std::map<int, std::int64_t> out;
        out.swap(_held);
        _release_requested.clear();
        return out;
    }

    /// Groups the publisher may start a batch of: held, and not waiting to be released.
    [[nodiscard]] std::vector<std::pair<int, std::int64_t>> publishable() const {
        std::lock_guard lock(mutex);
        std::vector<std::pair<int, std::int64_t>> out;
        for (const auto& [g, e] : _held) {
            if (_release_requested.count(g) == 0) out.emplace_back(g, e);
        }
        return out;
    }
    /// Waits up to `d` for a group the publisher may work on. Returns false when stopping.
    bool wait_for_publishable(std::chrono::milliseconds d) {
        std::unique_lock lock(mutex);
        cv.wait_for(lock, d,
                    [this] { return _stopping || _held.size() > _release_requested.size(); });
        return !_stopping;
    }

    // --- batches in flight and deferred releases

    /// Starts a batch of `group` at `epoch`: false when the group is no longer held at that
    /// epoch or is waiting to be released.
    bool begin_batch(int group, std::int64_t epoch) {
        std::lock_guard lock(mutex);
        auto it = _held.find(group);
        if (it == _held.end() || it->second != epoch || _release_requested.count(group) != 0) {
            return false;
        }
        ++_in_flight[static_cast<std::size_t>(group)];
        return true;
    }
    void end_batch(int group) {
        {
            std::lock_guard lock(mutex);
            --_in_flight[static_cast<std::size_t>(group)];
        }
        cv.notify_all();
    }

    enum class release_step { release_now, deferred_new, deferred_again };
    /// For a voluntary release of `group`: release_now (and forgets the group) when no batch of
    /// it is in flight; otherwise the release is deferred and the publisher starts no new batch
    /// of it (deferred_new the first time, deferred_again after).
    release_step begin_release(int group) {
        std::lock_guard lock(mutex);
        if (_in_flight[static_cast<std::size_t>(group)] > 0) {
            return _release_requested.insert(group).second ? release_step::deferred_new
                                                           : release_step::deferred_again;
        }
        _release_requested.erase(group);
        _held.erase(group);
        return release_step::release_now;
    }
    /// Cancels deferred releases that are no longer wanted (the fair share moved); returns the
    /// cancelled groups. `wanted` are the groups the lease keeper would give up now.
    std::vector<int> cancel_unwanted_releases(const std::set<int>& wanted) {
        std::vector<int> cancelled;
        {
            std::lock_guard lock(mutex);
            for (auto it = _release_requested.begin(); it != _release_requested.end();) {
                if (wanted.count(*it) == 0 && !_stopping) {
                    cancelled.push_back(*it);
                    it = _release_requested.erase(it);
                } else {
                    ++it;
                }
            }
        }
        if (!cancelled.empty()) cv.notify_all();
        return cancelled;
    }

    mutable std::mutex mutex;
    std::condition_variable cv;

private:
    bool _stopping = false;
    bool _publisher_done = false;
    clock::time_point _stop_deadline{};
    bool _pg_ok = false;
    std::map<int, std::int64_t> _held;
    std::set<int> _release_requested;
    std::vector<int> _in_flight;
};

}  // namespace ferry::relay::detail
