#pragma once
// Private: the WAL source's window of yielded, unfinished rows, keyed by the ids the source
// assigns in stream order (1, 2, 3, ...). Ids only grow, rows finish mostly in order, and the
// window is walked from the oldest: a deque of slots from the oldest live id, not a node per row
// (std::map's allocation and rebalancing were 5% of the WAL relay's CPU).

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace ferry::relay::detail {

template <typename T>
class id_window {
public:
    /// Adds `value` under `id`, which must be above every id added so far (gaps are allowed).
    void insert(std::int64_t id, T value) {
        if (_slots.empty()) {
            _first = id;
        } else if (id < end_id()) {
            throw std::logic_error("id_window: id " + std::to_string(id) +
                                   " is not above the last one added");
        }
        while (end_id() < id) _slots.emplace_back();
        _slots.emplace_back(std::move(value));
        ++_live;
    }

    [[nodiscard]] T* find(std::int64_t id) {
        if (_slots.empty() || id < _first || id >= end_id()) return nullptr;
        auto& slot = _slots[static_cast<std::size_t>(id - _first)];
        return slot ? &*slot : nullptr;
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
        _slots[static_cast<std::size_t>(id - _first)].reset();
        --_live;
        while (!_slots.empty() && !_slots.front()) {
            _slots.pop_front();
            ++_first;
        }
    }

    void clear() {
        _slots.clear();
        _live = 0;
    }

    [[nodiscard]] std::size_t size() const { return _live; }
    [[nodiscard]] bool empty() const { return _live == 0; }

    /// Calls f(id, value) from the oldest id up, while f returns true.
    template <typename F>
    void for_each_until(F&& f) {
        for (std::size_t i = 0; i < _slots.size(); ++i) {
            if (!_slots[i]) continue;
            if (!f(_first + static_cast<std::int64_t>(i), *_slots[i])) return;
        }
    }

private:
    [[nodiscard]] std::int64_t end_id() const {
        return _first + static_cast<std::int64_t>(_slots.size());
    }

    std::deque<std::optional<T>> _slots;
    std::int64_t _first = 0;
    std::size_t _live = 0;
};

}  // namespace ferry::relay::detail
