#pragma once
// Per-partition offset bookkeeping for the consumer runtime (private).
//
// Every polled offset is in flight until its lane finishes it. The commit position of a
// partition is its lowest in-flight offset, or one past the highest dispatched offset when
// nothing is in flight: a commit never passes unfinished work. Each assignment of a partition
// gets a fresh generation; work of an older generation (revoked, then perhaps re-assigned) can
// neither start nor move the position. Abandoned work stays in flight, so the position stops
// before it and the next owner redelivers it.
// Thread-safety: every method may be called from any thread (one mutex).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace ferry::consumer::detail {

struct tp {
    std::string topic;
    std::int32_t partition = 0;
    friend bool operator<(const tp& a, const tp& b) {
        return a.topic != b.topic ? a.topic < b.topic : a.partition < b.partition;
    }
};

struct position {
    std::string topic;
    std::int32_t partition = 0;
    std::int64_t offset = -1;  // -1: nothing dispatched yet
};

class offset_tracker {
public:
    void assign(const std::vector<tp>& parts) {
        std::lock_guard lock(_m);
        for (const auto& p : parts) {
            auto& s = _parts[p];
            s = state{};
            s.generation = ++_next_generation;
        }
    }

    /// Stops new work of these partitions from starting (queued work is abandoned).
    void revoke_begin(const std::vector<tp>& parts) {
        std::lock_guard lock(_m);
        for (const auto& p : parts) {
            if (auto it = _parts.find(p); it != _parts.end()) it->second.revoked = true;
        }
    }

    void remove(const std::vector<tp>& parts) {
        std::lock_guard lock(_m);
        for (const auto& p : parts) _parts.erase(p);
        _cv.notify_all();
    }

    [[nodiscard]] std::size_t size() const {
        std::lock_guard lock(_m);
        return _parts.size();
    }

    /// Records a polled offset; returns its generation, or 0 when the partition is not ours.
    [[nodiscard]] std::uint64_t dispatch(const tp& p, std::int64_t offset) {
        std::lock_guard lock(_m);
        auto it = _parts.find(p);
        if (it == _parts.end() || it->second.revoked) return 0;
        auto& s = it->second;
        s.inflight.insert(offset);
        if (offset + 1 > s.next) s.next = offset + 1;
        return s.generation;
    }

    /// Records the ownership epoch (retry::partition_fence) of this assignment.
    void set_fence(const tp& p, std::uint64_t generation, std::int64_t epoch) {
        std::lock_guard lock(_m);
        auto it = _parts.find(p);
        if (it != _parts.end() && it->second.generation == generation) it->second.fence = epoch;
    }

    /// The ownership epoch of this generation: 0 when the generation is no longer current or
    /// ownership is not established yet (then no fenced write may go ahead).
    [[nodiscard]] std::int64_t fence(const tp& p, std::uint64_t generation) const {
        std::lock_guard lock(_m);
        auto it = _parts.find(p);
        if (it == _parts.end() || it->second.revoked || it->second.generation != generation) {
            return 0;
        }
        return it->second.fence;
    }

    /// Current partitions whose ownership epoch is not established, with their generation.
    [[nodiscard]] std::vector<std::pair<tp, std::uint64_t>> unfenced() const {
        std::lock_guard lock(_m);
        std::vector<std::pair<tp, std::uint64_t>> out;
        for (const auto& [p, s] : _parts) {
            if (!s.revoked && s.fence == 0) out.emplace_back(p, s.generation);
        }
        return out;
    }

    /// The generation of a current assignment of `p`, or 0.
    [[nodiscard]] std::uint64_t generation(const tp& p) const {
        std::lock_guard lock(_m);
        auto it = _parts.find(p);
        return it == _parts.end() || it->second.revoked ? 0 : it->second.generation;
    }

    [[nodiscard]] bool current(const tp& p, std::uint64_t generation) const {
        std::lock_guard lock(_m);
        auto it = _parts.find(p);
        return it != _parts.end() && !it->second.revoked && it->second.generation == generation;
    }

    /// A lane starts an item; false means abandon it (revoked or re-assigned since).
    [[nodiscard]] bool begin(const tp& p, std::uint64_t generation) {
        std::lock_guard lock(_m);
        auto it = _parts.find(p);
        if (it == _parts.end() || it->second.revoked || it->second.generation != generation) {
            return false;
        }
        ++it->second.running;
        ++_running;
        return true;
    }

    /// A lane is done with an item: `complete` when its effect or its record is durable.
    void finish(const tp& p, std::uint64_t generation, std::int64_t offset, bool complete) {
        std::lock_guard lock(_m);
        auto it = _parts.find(p);
        if (it != _parts.end() && it->second.generation == generation) {
            if (complete) it->second.inflight.erase(offset);
            if (it->second.running > 0) --it->second.running;
        }
        if (_running > 0) --_running;
        _cv.notify_all();
    }

    [[nodiscard]] long running() const {
        std::lock_guard lock(_m);
        return _running;
    }

    /// Waits until no item of `parts` (all when empty) is running; false on timeout.
    bool wait_idle(const std::vector<tp>& parts, std::chrono::milliseconds timeout) {
        std::unique_lock lock(_m);
        return _cv.wait_for(lock, timeout, [&] {
            if (parts.empty()) return _running == 0;
            for (const auto& p : parts) {
                auto it = _parts.find(p);
                if (it != _parts.end() && it->second.running > 0) return false;
            }
            return true;
        });
    }

    /// Positions to commit: those that moved past the last commit (or every known one with
    /// `all`, for lag), restricted to `only` when it is not empty.
    [[nodiscard]] std::vector<position> commit_positions(const std::vector<tp>& only,
                                                         bool all = false) const {
        std::lock_guard lock(_m);
        std::vector<position> out;
        auto add = [&](const tp& p, const state& s) {
            const auto pos = s.inflight.empty() ? s.next : *s.inflight.begin();
            if (all || (pos >= 0 && pos > s.committed)) out.push_back({p.topic, p.partition, pos});
        };
        if (only.empty()) {
            for (const auto& [p, s] : _parts) add(p, s);
        } else {
            for (const auto& p : only) {
                if (auto it = _parts.find(p); it != _parts.end()) add(p, it->second);
            }
        }
        return out;
    }

    /// Per current partition with something dispatched: the next offset to take (one past the
    /// highest dispatched). Where fetching must go on after a pause.
    [[nodiscard]] std::vector<position> next_offsets() const {
        std::lock_guard lock(_m);
        std::vector<position> out;
        for (const auto& [p, s] : _parts) {
            if (!s.revoked && s.next >= 0) out.push_back({p.topic, p.partition, s.next});
        }
        return out;
    }

    void committed(const std::vector<position>& positions) {
        std::lock_guard lock(_m);
        for (const auto& pos : positions) {
            auto it = _parts.find({pos.topic, pos.partition});
            if (it != _parts.end() && pos.offset > it->second.committed) {
                it->second.committed = pos.offset;
            }
        }
    }

private:
    struct state {
        std::uint64_t generation = 0;
        std::int64_t fence = 0;  // ownership epoch; 0 = not established
        bool revoked = false;
        std::set<std::int64_t> inflight;
        std::int64_t next = -1;
        std::int64_t committed = -1;
        long running = 0;
    };
    mutable std::mutex _m;
    std::condition_variable _cv;
    std::map<tp, state> _parts;
    std::uint64_t _next_generation = 0;
    long _running = 0;
};

}  // namespace ferry::consumer::detail
