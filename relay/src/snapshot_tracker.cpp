#include "snapshot_tracker.hpp"

#include <algorithm>
#include <stdexcept>

namespace ferry::relay::detail {

void snapshot_tracker::reset(snapshot_point from) {
    _start = std::move(from);
    _epochs.clear();
    _entries.clear();
    _front = _next;  // tickets are never reused, so a stale one cannot finish a new row
    _prefix_epoch = 0;
    _prefix_id = 0;
    _unfinished = 0;
}

const std::string& snapshot_tracker::next_s0() const {
    return _epochs.empty() ? _start.s0 : _epochs.back().s1;
}

std::optional<std::string> snapshot_tracker::resume_s1() const {
    if (_epochs.empty() && _start.s1) return _start.s1;
    return std::nullopt;
}

std::int64_t snapshot_tracker::resume_after() const {
    return _epochs.empty() && _start.s1 ? _start.after_id : 0;
}

std::int64_t snapshot_tracker::open_epoch(std::string s0, std::string s1) {
    if (!_epochs.empty() && !_epochs.back().closed) {
        throw std::logic_error("snapshot_tracker: epoch opened before the last one was closed");
    }
    if (s0 != next_s0()) {
        throw std::logic_error("snapshot_tracker: epoch S0 " + s0 + " does not follow " +
                               next_s0());
    }
    if (const auto r = resume_s1(); r && *r != s1) {
        throw std::logic_error("snapshot_tracker: the open epoch must be resumed to " + *r);
    }
    epoch_info e;
    // An epoch that closed with no rows, and that resumed nothing, adds nothing to the
    // epoch after it: (a, b] empty and (b, c] cover the rows of (a, c]. Keeping one of them
    // keeps the epochs held bounded while a row waits (a delayed row over many idle polls).
    if (!_epochs.empty() && _epochs.back().closed && _epochs.back().added == 0 &&
        _epochs.back().start_after == 0 && !resume_s1()) {
        s0 = _epochs.back().s0;
        _epochs.pop_back();
    }
    e.number = _next_epoch++;
    e.start_after = resume_after();
    e.last_added = e.start_after;
    e.s0 = std::move(s0);
    e.s1 = std::move(s1);
    _epochs.push_back(std::move(e));
    return _epochs.back().number;
}

void snapshot_tracker::close_epoch(std::int64_t epoch) {
    if (_epochs.empty() || _epochs.back().number != epoch) {
        throw std::logic_error("snapshot_tracker: close of an epoch that is not the last");
    }
    _epochs.back().closed = true;
    fold();
}

snapshot_tracker::ticket snapshot_tracker::add(std::int64_t epoch, std::int64_t outbox_id) {
    if (_epochs.empty() || _epochs.back().number != epoch || _epochs.back().closed) {
        throw std::logic_error("snapshot_tracker: row added to an epoch that is not open");
    }
    auto& e = _epochs.back();
    if (outbox_id <= e.last_added) {
        throw std::logic_error("snapshot_tracker: id " + std::to_string(outbox_id) +
                               " is not above " + std::to_string(e.last_added));
    }
    e.last_added = outbox_id;
    ++e.added;
    _entries.push_back({epoch, outbox_id, false});
    ++_unfinished;
    return _next++;
}

void snapshot_tracker::finish(ticket t) {
    if (t < _front || t >= _next) {
        throw std::logic_error("snapshot_tracker: unknown ticket " + std::to_string(t));
    }
    auto& e = _entries[static_cast<std::size_t>(t - _front)];
    if (e.finished) {
        throw std::logic_error("snapshot_tracker: ticket " + std::to_string(t) + " finished twice");
    }
    e.finished = true;
    --_unfinished;
    fold();
}

void snapshot_tracker::fold() {
    while (!_entries.empty() && _entries.front().finished) {
        _prefix_epoch = _entries.front().epoch;
        _prefix_id = _entries.front().id;
        _entries.pop_front();
        ++_front;
    }
    // Epochs before the first held row's are finished; the last epoch is always kept.
    const auto keep_from =
        _entries.empty() ? (_epochs.empty() ? 0 : _epochs.back().number) : _entries.front().epoch;
    while (_epochs.size() > 1 && _epochs.front().number < keep_from) _epochs.pop_front();
}

const snapshot_tracker::epoch_info* snapshot_tracker::find_epoch(std::int64_t number) const {
    for (const auto& e : _epochs) {
        if (e.number == number) return &e;
    }
    return nullptr;
}

snapshot_point snapshot_tracker::inside(const epoch_info& e, std::int64_t after) const {
    return {e.s0, e.s1, after};
}

snapshot_point snapshot_tracker::durable_with(const std::vector<ticket>& also) const {
    std::vector<ticket> extra(also);
    std::sort(extra.begin(), extra.end());
    std::int64_t epoch = _prefix_epoch;
    std::int64_t after = _prefix_id;
    for (std::size_t i = 0; i < _entries.size(); ++i) {
        const auto& e = _entries[i];
        if (!e.finished && !std::binary_search(extra.begin(), extra.end(), _front + i)) {
            const auto* info = find_epoch(e.epoch);
            if (info == nullptr)
                throw std::logic_error("snapshot_tracker: a held row's epoch is gone");
            return inside(*info, epoch == e.epoch ? after : info->start_after);
        }
        epoch = e.epoch;
        after = e.id;
    }
    if (_epochs.empty()) return _start;
    const auto& last = _epochs.back();
    if (last.closed) return {last.s1, std::nullopt, 0};
    return inside(last, epoch == last.number ? after : last.start_after);
}

}  // namespace ferry::relay::detail
