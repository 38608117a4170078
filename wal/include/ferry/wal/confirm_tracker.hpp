#pragma once
// Which WAL position a WAL source may confirm, given messages that finish out of order.
//
// The source yields messages in commit order and hands them to the sink; Kafka acknowledges
// them in any order across partitions, and a message may also end parked or expired. The slot
// may only be confirmed up to the end of a transaction whose messages, and every earlier
// transaction's messages, are all finished: otherwise a crash would skip an unpublished one.
//
//   auto t = tracker.add_message();      // for every committed_message / rejected_message
//   tracker.add_end(end.end_lsn);        // for every transaction_end, after its messages
//   tracker.finish(t);                   // when the message is acknowledged, parked or expired
//   stream.acknowledge(tracker.confirmable());
//
// Pure logic (no I/O), like consumer/src/offset_tracker.hpp. Memory: one entry per message or
// transaction end that is not yet confirmable (the source bounds it with its in-flight limit).
// Single-threaded: the owner serializes calls.

#include <cstdint>
#include <deque>

#include "ferry/wal/lsn.hpp"

namespace ferry::wal {

class confirm_tracker {
public:
    using ticket = std::uint64_t;

    /// Registers the next message in stream order and returns its ticket.
    [[nodiscard]] ticket add_message();
    /// Registers the end of the transaction whose messages were registered since the previous
    /// end. `end_lsn` must not be below an earlier end (throws ferry::error(permanent,
    /// "wal.protocol") if it is).
    void add_end(lsn end_lsn);
    /// Marks a message finished. Unknown or repeated tickets throw ferry::error(permanent,
    /// "wal.usage"): a double finish would hide a lost acknowledgement.
    void finish(ticket t);

    /// The highest end LSN whose transaction and all earlier ones are finished (0 if none yet).
    [[nodiscard]] lsn confirmable() noexcept;
    /// Messages registered and not finished.
    [[nodiscard]] std::uint64_t unfinished() const noexcept { return _unfinished; }
    /// Entries held (messages and ends not yet folded into confirmable()).
    [[nodiscard]] std::size_t held() const noexcept { return _entries.size(); }

private:
    struct entry {
        bool is_end = false;
        bool finished = false;
        lsn end_lsn = 0;
    };
    std::deque<entry> _entries;
    ticket _front = 0;  // ticket of _entries.front()
    ticket _next = 0;
    lsn _confirmable = 0;
    lsn _last_end = 0;
    std::uint64_t _unfinished = 0;
};

}  // namespace ferry::wal
