#pragma once
// Private: the WAL source's reader thread. It keeps reading the replication stream and
// assembling its events into a bounded queue while the claiming thread produces and checks the
// lease, so the walsender is not held up by the relay's batch cycle (ADR 0070, eleventh-session
// amendment: without it the socket buffer filled whenever the claimer was busy, and the
// walsender waited).
//
// Rules:
//  - **Order.** Events come out in the order the stream delivered them, whole.
//  - **Bounded.** The queue holds at most `max_messages` committed messages or `max_bytes` of
//    their payloads (whichever comes first, and never less than one event); when it is full the
//    reader stops reading, which pushes back on the server, and still sends a status update
//    every second so the server does not time the connection out.
//  - **Errors after the events.** A stream error is raised to the taker once it has taken every
//    event read before the error (they are complete; a restarted stream replays from the
//    confirmed position anyway).
//  - **Confirmation** is only ever what the taker hands to acknowledge(); the reader applies the
//    highest one it was given on its next turn (within `idle_wait` when idle), or at once and
//    before acknowledge() returns when asked to (the negative control's confirm on receipt).
//
// Threads: the constructor starts the thread; take(), acknowledge() and the accessors are for
// one other thread (the claimer); stop() (also the destructor) joins.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

#include "ferry/wal/assembler.hpp"
#include "ferry/wal/lsn.hpp"

namespace ferry::relay::detail {

/// What the reader thread reads from: the stream and its assembler (wal_source), or a test's
/// script. Used by the reader thread only.
class wal_feed {
public:
    virtual ~wal_feed() = default;
    /// The next assembled event, nullopt when none within `timeout`. Throws on stream errors.
    virtual std::optional<wal::wal_event> next(std::chrono::milliseconds timeout) = 0;
    /// Everything up to `flushed` is handled; with `send_now` a status update goes out at once.
    virtual void acknowledge(wal::lsn flushed, bool send_now) = 0;
    /// The confirmed position and the server's clock (pg_timestamp) as last seen.
    [[nodiscard]] virtual wal::lsn confirmed() const = 0;
    [[nodiscard]] virtual std::int64_t last_send_time() const = 0;
};

struct wal_reader_limits {
    std::size_t max_messages = 4096;
    std::size_t max_bytes = 32U << 20U;
    /// How long the reader waits for the stream when it has nothing in hand.
    std::chrono::milliseconds idle_wait{10};
};

class wal_reader {
public:
    wal_reader(wal_feed& feed, wal_reader_limits limits);
    ~wal_reader();
    wal_reader(const wal_reader&) = delete;
    wal_reader& operator=(const wal_reader&) = delete;

    /// Moves every queued event to the end of `out`, in order. Waits until `until` for one when
    /// none is queued. Rethrows the reader's error once nothing read before it is left.
    /// Returns the number of events moved.
    std::size_t take(std::deque<wal::wal_event>& out, std::chrono::steady_clock::time_point until);

    /// Hands the reader the highest position it may confirm. With `wait_sent` it returns only
    /// after the reader sent it to the server (or stopped, or 2 s passed).
    void acknowledge(wal::lsn flushed, bool wait_sent = false);

    /// Stops and joins the thread (idempotent). The feed is not touched after it returns.
    void stop() noexcept;

    [[nodiscard]] wal::lsn confirmed() const noexcept { return _confirmed.load(); }
    [[nodiscard]] std::int64_t last_send_time() const noexcept { return _send_time.load(); }

private:
    void run();
    [[nodiscard]] bool full() const noexcept;  // under _mu
    void apply_ack(bool force_send);

    wal_feed& _feed;
    wal_reader_limits _limits;

    std::mutex _mu;
    std::condition_variable _cv;  // events queued, room made, ack sent, error, stop
    std::deque<wal::wal_event> _queue;
    std::size_t _queued_messages = 0;
    std::size_t _queued_bytes = 0;
    std::exception_ptr _error;
    bool _stop = false;
    wal::lsn _ack = 0;                // highest position handed over
    std::uint64_t _send_request = 0;  // acknowledge(wait_sent) calls
    std::uint64_t _send_done = 0;     // ... answered by the reader

    std::atomic<wal::lsn> _confirmed{0};
    std::atomic<std::int64_t> _send_time{0};
    std::thread _thread;
};

}  // namespace ferry::relay::detail
