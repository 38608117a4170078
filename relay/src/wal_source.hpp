#pragma once
// Private: the WAL source (relay.source: wal, ADR 0070). It streams the logical decoding
// messages producers emit with <schema>.enqueue_wal / emit_wal from a pgoutput slot, in commit
// order, and records what became of them in the same tables as polling mode: published rows in
// the ledger, parked rows in `parked`, expired rows in `expired`. Nothing is read from or
// deleted in the outbox table.
//
// The rules that make it as safe as polling mode:
//  - **Only the lease holder streams.** No stream is started before a claim has seen the lease
//    ours; every claim checks the lease again (with the parked keys, one statement), and a lost
//    lease closes the stream at once. A new holder that finds the slot still streamed by the
//    former holder (a paused process keeps its walsender until wal_sender_timeout) terminates
//    that walsender: the lease decides, and a fenced former holder can confirm nothing.
//  - **Confirm only what is recorded.** A message's ticket (wal::confirm_tracker) is finished
//    when its mark committed (published in the ledger after Kafka's ack, parked or expired);
//    the slot is confirmed only up to the end of a transaction whose messages, and all earlier
//    ones, are finished. A crash replays from the confirmed position: duplicates are bounded by
//    what was received and not yet confirmed, and nothing is lost.
//  - **Unfinished rows are yielded again**, in stream order, before anything new, exactly as
//    the outbox table would show them to the next poll: a transient failure, a row held behind a
//    failure of its key, a batch whose mark failed.
//  - **A parked key holds its later messages.** They cannot wait in the stream (the slot could
//    not move past them), so they are parked too, in order, with the reason (KEY_PARKED);
//    `retry_parked` re-emits a key's parked messages in order (migration 0072).
//  - **Nothing is skipped silently.** A Ferry message that does not decode (wrong prefix
//    variant, bad frame, unsupported version, non-transactional) is parked with its reason
//    (WAL_MESSAGE_INVALID) and its raw content.
//  - **Expiry** is judged by the server's clock in the stream (send_time), as polling judges it
//    by clock_timestamp().
//  - **A lost slot** (missing or invalidated) is wal.slot_lost: reported on every claim and in
//    ferry_wal_slot_lost, never recreated.
//
// Threads: claim() and reset_claim_session() run on the publisher's claiming thread (which starts
// and stops the stream), mark() and reset_mark_session() on its marking threads (one per lane,
// each with its own session; marks of different lanes run at once); `_mu` guards what they all
// touch (the window of unfinished rows and the confirm tracker). While a stream runs, its
// reader thread (wal_reader) reads it and assembles the events; the claimer takes them from the
// reader's queue and hands back what may be confirmed.

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "binary_session.hpp"
#include "ferry/common/metrics.hpp"
#include "ferry/relay/options.hpp"
#include "ferry/wal/assembler.hpp"
#include "ferry/wal/confirm_tracker.hpp"
#include "ferry/wal/stream.hpp"
#include "id_window.hpp"
#include "pg_session.hpp"
#include "source.hpp"
#include "wal_reader.hpp"

namespace ferry::relay::detail {

/// The WAL source's series (registered only in WAL mode).
struct wal_metrics {
    explicit wal_metrics(ferry::metrics::registry& m);

    ferry::metrics::gauge slot_lag_bytes;
    ferry::metrics::gauge slot_lost;
    ferry::metrics::gauge unconfirmed;
    ferry::metrics::gauge confirmed_lsn;
    ferry::metrics::counter received;
    ferry::metrics::counter rejected;
    ferry::metrics::counter stream_starts;
    ferry::metrics::counter snapshot_waits;
};

class wal_source final : public source {
public:
    /// `quoted_schema`: the schema, already validated and quoted.
    wal_source(const relay_options& options, std::string quoted_schema,
               ferry::metrics::counter reconnects, wal_metrics& metrics);
    ~wal_source() override;

    [[nodiscard]] bool prefetches_claims() const noexcept override { return true; }
    claim_result claim(int group, std::int64_t epoch, std::size_t limit,
                       const std::vector<std::int64_t>& exclude, double min_remaining_ms,
                       bool may_wait) override;
    mark_outcome mark(const mark_request& request, std::size_t lane) override;
    void reset_claim_session() noexcept override;
    void reset_mark_session(std::size_t lane) noexcept override { _marks.at(lane)->reset(); }
    [[nodiscard]] bool waits_for_rows() const noexcept override { return true; }

private:
    struct entry {
        source_row row;  // as yielded (payload kept: a row may be yielded again, or parked)
        std::optional<std::int64_t> expires_at_us;
        wal::confirm_tracker::ticket ticket = 0;
        bool finished_early = false;  // the negative control's confirm on receipt
        std::uint32_t xid = 0;        // the transaction that emitted it
    };
    struct rejected_entry {
        wal::rejected_message message;
        wal::confirm_tracker::ticket ticket = 0;
    };
    struct lease_view {
        bool ours = false;
        double remaining_ms = 0;
        /// Every transaction of the rows is visible to the lookup (see check_lease).
        bool visible = true;
        std::map<std::pair<std::string, std::string>, std::int64_t> parked;  // key -> parked id
    };

    lease_view check_lease(int group, std::int64_t epoch, const std::vector<source_row>& rows,
                           const std::vector<std::int64_t>& xids);
    void start_stream();
    void drop_stream() noexcept;
    void read_stream(std::vector<source_row>& rows, std::size_t limit,
                     std::chrono::milliseconds wait);
    /// Parks the undecodable messages read so far (fenced); false when the lease was lost.
    bool park_rejected(int group, std::int64_t epoch);
    [[nodiscard]] std::int64_t server_now_us() const;
    /// After a mark's commit: its rows leave the window and their tickets may be confirmed
    /// (unless the stream restarted since: the new stream yields them again).
    mark_outcome finish_mark(
        std::uint64_t generation,
        const std::vector<std::pair<std::int64_t, wal::confirm_tracker::ticket>>& finished);

    const relay_options& _o;
    std::string _q;
    wal_metrics& _wm;
    pg_session _claim;
    std::vector<std::unique_ptr<binary_session>>
        _marks;  // one per mark lane (libpq: binary arrays)

    // Claiming thread only.
    std::unique_ptr<wal::replication_stream> _stream;
    std::unique_ptr<wal::transaction_assembler> _assembler;
    std::unique_ptr<wal_feed> _feed;      // the stream and assembler, for the reader
    std::unique_ptr<wal_reader> _reader;  // reads while a stream runs; stopped first
    std::deque<wal::wal_event> _pending;  // taken from the reader, not yet yielded
    std::vector<rejected_entry> _rejected;
    std::int64_t _next_id = 0;
    // The highest position this source confirmed: a restarted stream starts there, since the
    // server saves a slot's confirmed position to disk only at checkpoints (ADR 0070 rule 6).
    wal::lsn _resume_from = 0;

    // Both threads, under _mu.
    std::mutex _mu;
    wal::confirm_tracker _tracker;
    id_window<entry> _window;       // yielded and not yet finished, by id (stream order)
    std::uint64_t _generation = 0;  // a new stream starts a new generation
};

}  // namespace ferry::relay::detail
