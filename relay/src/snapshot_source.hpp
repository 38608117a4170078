#pragma once
// Private: the snapshot source (relay.source: snapshot, ADR 0080). It reads the outbox without
// deleting anything: each lease group takes a snapshot S1 of the database and publishes the
// rows of the transactions visible in S1 and not in the group's previous snapshot S0 (an
// epoch), in id order, then moves on to the next epoch. It records what became of them in a
// ledger row that points at the rows (snapshot_batch: ids, partitions, offsets), in `parked`
// and in `expired`, and the group's position (snapshot_position, migration 0109) in the same
// statement. The rows stay in the outbox until ferry-relay trims them after
// relay.published_retention.
//
// The rules that make it as safe as polling mode:
//  - **Every committed row is in exactly one epoch.** An epoch is the rows whose transaction is
//    visible in S1 and was not in S0: the txids from S0's xmax up to S1's, and those in progress
//    in S0. A transaction that commits late falls into a later epoch; a long transaction delays
//    only its own rows (ADR 0080, point 2, checked by bench/probes/snapshot_batches_check.sh).
//  - **Per-key order.** Epochs are published in snapshot order and each one in id order, never
//    in txid order: two transactions that serialize on a key insert their rows in commit order,
//    so the later one has the higher id and is never in an earlier epoch (ADR 0080, sixteenth
//    amendment).
//  - **Only the lease holder reads and marks.** Every read statement checks the lease; every mark
//    is fenced by it (FOR KEY SHARE, migration 0107). A new holder loads the position the last
//    one recorded.
//  - **Record only what is finished.** A row is finished when its mark committed (published
//    after Kafka's ack, parked or expired). The position names the first unfinished row
//    (snapshot_tracker), so a crash republishes at most the rows in flight and skips none.
//  - **Unfinished rows are yielded again**, in order, before anything new: a transient failure,
//    a row held behind a failure of its key, a batch whose mark failed.
//  - **A parked key holds its later rows.** Rows stay in the outbox, so they are parked too, in
//    order, with KEY_PARKED (as in WAL mode); retry_parked puts the key's rows back in order.
//  - **Delays and expiry** are judged on the database's clock. A row that is not yet available
//    waits in the source's window and holds the later rows of its key; other keys go on. The
//    position cannot pass it, so a crash while it waits republishes what was finished after it.
//
// Threads: claim() and reset_claim_session() run on the publisher's claiming thread, mark() and
// reset_mark_session() on its marking threads; `_mu` guards the groups' state they share.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "binary_session.hpp"
#include "ferry/common/metrics.hpp"
#include "ferry/relay/options.hpp"
#include "id_window.hpp"
#include "pg_session.hpp"
#include "snapshot_tracker.hpp"
#include "source.hpp"

namespace ferry::relay::detail {

class snapshot_source final : public source {
public:
    /// `quoted_schema`: the schema, already validated and quoted.
    snapshot_source(const relay_options& options, std::string quoted_schema,
                    ferry::metrics::counter reconnects);

    [[nodiscard]] bool prefetches_claims() const noexcept override { return true; }
    claim_result claim(int group, std::int64_t epoch, std::size_t limit,
                       const std::vector<std::int64_t>& exclude, double min_remaining_ms,
                       bool may_wait) override;
    mark_outcome mark(const mark_request& request, std::size_t lane) override;
    void reset_claim_session() noexcept override;
    void reset_mark_session(std::size_t lane) noexcept override { _marks.at(lane)->reset(); }

private:
    struct entry {
        source_row row;  // as yielded (the source's own id; the outbox id below)
        /// The row's message id, payload and headers were moved into a claim (the window keeps
        /// no copy): yielding it again reads them back first (refill).
        bool lent = false;
        std::int64_t outbox_id = 0;
        std::int64_t available_at_us = 0;
        std::optional<std::int64_t> expires_at_us;
        std::int64_t parked_id = 0;  // the oldest parked message of its key, when read
        snapshot_tracker::ticket ticket = 0;
    };
    struct group_state {
        std::int64_t lease_epoch = -1;  // the lease epoch this state was loaded under
        std::uint64_t generation = 0;   // a reload starts a new generation
        snapshot_tracker tracker;
        std::int64_t seq = 0;  // the highest position sequence loaded or computed
        // The open epoch's listing (ids in id order) and how far it was read.
        bool epoch_open = false;
        std::int64_t epoch_number = 0;
        std::string s0, s1;
        std::vector<std::int64_t> listed;
        std::size_t cursor = 0;
        id_window<entry> window;  // read and not yet finished, by the source's own ids
        std::int64_t next_row = 0;
        std::int64_t clock_offset_us = 0;  // database clock minus this host's
    };
    struct lease_view {
        bool ours = false;
        double remaining_ms = 0;
    };

    /// Loads the group's position (creating it when missing) if the lease is ours at `epoch`.
    bool load(int group, std::int64_t epoch, group_state& g);
    /// Takes the next epoch's listing (a new snapshot, or the position's open epoch).
    lease_view open_epoch(int group, std::int64_t epoch, group_state& g);
    /// Reads up to `n` more rows of the open epoch into the window.
    lease_view read_rows(int group, std::int64_t epoch, group_state& g, std::size_t n);
    /// The lease and, for `keys`, the oldest parked id of each.
    lease_view check_parked(int group, std::int64_t epoch, group_state& g,
                            const std::vector<std::pair<std::string, std::string>>& keys,
                            std::map<std::pair<std::string, std::string>, std::int64_t>& parked);
    /// Reads back the message id, payload and headers of the window's lent rows among `ids`.
    /// False when a row is no longer in the outbox (deleted by hand): the group's state is then
    /// reloaded from its position before the next claim.
    bool refill(int group, group_state& g, const std::vector<std::int64_t>& ids);
    /// Appends to `out` the window's rows that may go now, in order, at most `limit`.
    void yield(group_state& g, std::size_t limit, const std::vector<std::int64_t>& exclude,
               std::vector<std::int64_t>& out_ids);
    [[nodiscard]] std::string shard_param(int group) const;
    /// The epoch filter over outbox rows `o`, with the two snapshots as SQL expressions.
    [[nodiscard]] std::string epoch_filter(const std::string& s0, const std::string& s1) const;
    group_state& state(int group);

    const relay_options& _o;
    std::string _q;
    std::string _in_epoch;  // the epoch filter over $s0/$s1 placeholders
    binary_session _claim;
    std::vector<std::unique_ptr<pg_session>> _marks;  // one per mark lane

    std::mutex _mu;
    std::map<int, std::unique_ptr<group_state>> _groups;
};

}  // namespace ferry::relay::detail
