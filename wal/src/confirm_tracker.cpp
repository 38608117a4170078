#include "ferry/wal/confirm_tracker.hpp"

#include <string>

#include "ferry/common/error.hpp"

namespace ferry::wal {

// Ends take a ticket too (they share the sequence), so an entry's ticket is its position.

confirm_tracker::ticket confirm_tracker::add_message() {
    _entries.push_back(entry{});
    ++_unfinished;
    return _next++;
}

void confirm_tracker::add_end(lsn end_lsn) {
    if (end_lsn < _last_end) {
        throw ferry::error(error_kind::permanent, "wal.protocol",
                           "confirm_tracker: transaction end " + format_lsn(end_lsn) +
                               " is below the previous end " + format_lsn(_last_end));
    }
    _last_end = end_lsn;
    _entries.push_back(entry{true, true, end_lsn});
    ++_next;
}

void confirm_tracker::finish(ticket t) {
    if (t < _front || t >= _next) {
        throw ferry::error(
            error_kind::permanent, "wal.usage",
            "confirm_tracker: ticket " + std::to_string(t) + " is unknown or already confirmed");
    }
    auto& e = _entries[static_cast<std::size_t>(t - _front)];
    if (e.is_end || e.finished) {
        throw ferry::error(error_kind::permanent, "wal.usage",
                           "confirm_tracker: ticket " + std::to_string(t) +
                               " was already finished (or is not a message)");
    }
    e.finished = true;
    --_unfinished;
}

lsn confirm_tracker::confirmable() noexcept {
    while (!_entries.empty() && _entries.front().finished) {
        if (_entries.front().is_end) _confirmable = _entries.front().end_lsn;
        _entries.pop_front();
        ++_front;
    }
    return _confirmable;
}

}  // namespace ferry::wal
