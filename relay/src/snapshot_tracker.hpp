#pragma once
// Private: which position the snapshot source may record, given rows that finish out of order
// (ADR 0080). Pure logic, no I/O, like wal::confirm_tracker.
//
// The source reads one lease group's outbox in epochs: the rows of the transactions visible in
// a snapshot S1 and not in the previous one S0, in id order. Epochs are read one after the
// other, so the order in which rows are added here (their tickets) is the order of (epoch, id).
// Rows finish in any order (Kafka acknowledges partitions independently, a failed row waits, a
// delayed row waits for its time). A durable position names the first unfinished row:
//   - every row of the epochs before it is finished, so the position's s0 is that epoch's S0;
//   - inside its epoch, every row with an id up to after_id is finished.
// When every row added is finished and the last epoch was read to its end, the position is
// that epoch's S1 with no epoch open. Rows finished above the position are published again
// after a crash: duplicates are bounded by the rows in flight, nothing is skipped.
//
//   tracker.reset(loaded);                     // the group's durable position
//   auto e = tracker.open_epoch(s0, s1);        // s0: tracker.next_s0()
//   auto t = tracker.add(e, outbox_id);          // for each row read, in id order
//   tracker.close_epoch(e);                      // when the epoch's last listed id was read
//   auto p = tracker.durable_with({t, ...});     // what a mark of these rows may record
//   tracker.finish(t);                           // once that mark committed
//
// Single-threaded: the owner serializes calls.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

namespace ferry::relay::detail {

/// A durable position (snapshot_position's s0, s1, after_id; migration 0109). Snapshots are in
/// pg_snapshot's text form.
struct snapshot_point {
    std::string s0;
    std::optional<std::string> s1;
    std::int64_t after_id = 0;

    friend bool operator==(const snapshot_point&, const snapshot_point&) = default;
};

class snapshot_tracker {
public:
    using ticket = std::uint64_t;

    /// Forgets everything and starts from `from`.
    void reset(snapshot_point from);

    /// The S0 of the next epoch: the last epoch's S1 (or the position's s0 when none is open).
    [[nodiscard]] const std::string& next_s0() const;
    /// When the position has an epoch open (s1 set), the next epoch must be that one, resumed
    /// after `resume_after()`; returns its S1, else nullopt.
    [[nodiscard]] std::optional<std::string> resume_s1() const;
    [[nodiscard]] std::int64_t resume_after() const;

    /// Opens the next epoch (s0 must be next_s0()); returns its number.
    std::int64_t open_epoch(std::string s0, std::string s1);
    /// Every listed row of `epoch` was added.
    void close_epoch(std::int64_t epoch);
    /// The next row of the open epoch, in id order (ids must grow within an epoch).
    ticket add(std::int64_t epoch, std::int64_t outbox_id);
    /// A row's mark committed. Unknown or repeated tickets throw std::logic_error.
    void finish(ticket t);

    /// The position once every finished row and `also` are finished (a mark computes it before
    /// it commits, and records it in the same transaction).
    [[nodiscard]] snapshot_point durable_with(const std::vector<ticket>& also) const;
    [[nodiscard]] snapshot_point durable() const { return durable_with({}); }

    [[nodiscard]] std::size_t unfinished() const noexcept { return _unfinished; }
    /// Rows and epochs held (not yet folded into the position).
    [[nodiscard]] std::size_t held() const noexcept { return _entries.size() + _epochs.size(); }

private:
    struct entry {
        std::int64_t epoch = 0;
        std::int64_t id = 0;
        bool finished = false;
    };
    struct epoch_info {
        std::int64_t number = 0;
        std::string s0, s1;
        std::int64_t start_after = 0;  // resumed epoch: ids up to this were finished before
        bool closed = false;
        std::int64_t last_added = 0;
        std::size_t added = 0;
    };
    [[nodiscard]] const epoch_info* find_epoch(std::int64_t number) const;
    [[nodiscard]] snapshot_point inside(const epoch_info& e, std::int64_t after) const;
    void fold();

    snapshot_point _start;
    std::deque<epoch_info> _epochs;  // from the epoch of the first held row (or the last one)
    std::deque<entry> _entries;
    ticket _front = 0;  // ticket of _entries.front()
    ticket _next = 0;
    std::int64_t _next_epoch = 1;
    // The folded prefix: its last row's epoch and id (epoch 0: nothing folded yet).
    std::int64_t _prefix_epoch = 0;
    std::int64_t _prefix_id = 0;
    std::size_t _unfinished = 0;
};

}  // namespace ferry::relay::detail
