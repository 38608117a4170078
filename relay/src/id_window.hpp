#pragma once
// Private: the WAL source's window of yielded, unfinished rows, keyed by the ids the source
// assigns in stream order (1, 2, 3, ...). Ids only grow, rows finish mostly in order, and the
// window is walked from the oldest: a ring of slots from the oldest live id, not a node per row
// (std::map's allocation and rebalancing were 5% of the WAL relay's CPU). The snapshot source
// keeps its window in the same structure.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace ferry::relay::detail {

template <typename T>
class id_window {
public:
    /// Adds `value` under `id`, which must be above every id added so far (gaps are allowed).
    void insert(std::int64_t id, T value) {
        if (_count == 0) {
            _first = id;
            _head = 0;
        } else if (id < end_id()) {
            throw std::logic_error("id_window: id " + std::to_string(id) +
                                   " is not above the last one added");
        }
        const auto needed = static_cast<std::size_t>(id - _first) + 1;
        if (needed > _ring.size()) regrow(needed);
        while (end_id() < id) ++_count;  // gaps: empty slots
        slot(_count).emplace(std::move(value));
        ++_count;
        ++_live;
    }

    [[nodiscard]] T* find(std::int64_t id) {
        if (_count == 0 || id < _first || id >= end_id()) return nullptr;
        auto& s = slot(static_cast<std::size_t>(id - _first));
        return s ? &*s : nullptr;
    }

    [[nodiscard]] T& at(std::int64_t id) {
        auto* v = find(id);
        if (v == nullptr) throw std::out_of_range("id_window: no id " + std::to_string(id));
        return *v;
    }

    /// Removes `id` if present; the oldest empty slots are dropped.
    void erase(std::int64_t id) {
        auto* v = find(id);
        if (v == nullptr) return;
        slot(static_cast<std::size_t>(id - _first)).reset();
        --_live;
        while (_count > 0 && !slot(0)) {
            _head = (_head + 1) & (_ring.size() - 1);
            --_count;
            ++_first;
        }
        // A burst's slots are given back once the window is mostly empty again.
        if (_ring.size() > k_min_capacity && _count < _ring.size() / 8) regrow(_count);
    }

    void clear() {
        for (std::size_t i = 0; i < _count; ++i) slot(i).reset();
        _count = 0;
        _live = 0;
        _head = 0;
    }

    [[nodiscard]] std::size_t size() const { return _live; }
    [[nodiscard]] bool empty() const { return _live == 0; }

    /// Calls f(id, value) from the oldest id up, while f returns true.
    template <typename F>
    void for_each_until(F&& f) {
        for (std::size_t i = 0; i < _count; ++i) {
            auto& s = slot(i);
            if (!s) continue;
            if (!f(_first + static_cast<std::int64_t>(i), *s)) return;
        }
    }

private:
    static constexpr std::size_t k_min_capacity = 64;

    [[nodiscard]] std::int64_t end_id() const { return _first + static_cast<std::int64_t>(_count); }

    // The i-th slot from the oldest (i < capacity).
    std::optional<T>& slot(std::size_t i) { return _ring[(_head + i) & (_ring.size() - 1)]; }

    // Moves the live slots, oldest first, into a ring of the smallest power of two (at least
    // k_min_capacity) that holds `needed` slots.
    void regrow(std::size_t needed) {
        std::size_t capacity = k_min_capacity;
        while (capacity < needed) capacity *= 2;
        std::vector<std::optional<T>> ring(capacity);
        for (std::size_t i = 0; i < _count; ++i) ring[i] = std::move(slot(i));
        _ring = std::move(ring);
        _head = 0;
    }

    // A ring buffer of slots, not a deque: a deque of slots as large as a row holds one slot per
    // block, so it allocated and freed a block for every row.
    std::vector<std::optional<T>> _ring;
    std::size_t _head = 0;   // the oldest slot's index in _ring
    std::size_t _count = 0;  // slots from the oldest live id to the newest added (gaps included)
    std::int64_t _first = 0;
    std::size_t _live = 0;
};

}  // namespace ferry::relay::detail
