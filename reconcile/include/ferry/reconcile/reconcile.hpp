#pragma once
// The reconciliation job (DESIGN.md §2 invariants 2 and 7, ADR 0005): compares what producers
// committed and published with what each consumer group processed, stores a report in the
// producer's schema (reconcile_run / reconcile_item) and re-drives lost messages.
//
// run() is a plain blocking call: it opens its own connections (producer DB, each consumer DB,
// Redis where configured), works through the published ledger in chunks of `chunk_size` rows
// (memory is bounded by the chunk, not the window) and closes them before returning. It may be
// called from any thread; concurrent calls, in one process or many, against one schema are
// serialized by a PostgreSQL session advisory lock: the loser returns run_status::busy at once
// instead of waiting, so one window is never reconciled twice at the same time.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ferry/common/error.hpp"

namespace ferry::reconcile {

/// One consumer group to check, and where its side of the story lives.
struct group_options {
    std::string group;
    /// Outbox (logical) topics the group subscribes to; empty means every topic.
    std::vector<std::string> topics;
    /// Consumer database (inbox, retry, dead_letter). May equal the producer's. Empty with
    /// redis_only: no SQL look-ups at all for this group.
    std::string dsn;
    std::string schema = "ferry";
    /// Redis dedup store, for groups whose "processed" record is a Redis "done" key.
    std::string redis_url;
    std::string redis_key_prefix = "ferry:dedup";
    /// True when the group dedups in Redis only (no inbox): processed = Redis says "done".
    /// Such a group only knows what Redis still remembers (done_window); see ADR 0005.
    bool redis_only = false;
};

struct reconcile_options {
    std::string dsn;  // producer database: outbox, ledger, half messages, report tables
    std::string schema = "ferry";
    std::chrono::milliseconds connect_timeout{5000};
    std::vector<group_options> groups;

    /// The ledger window checked: [end - window, end) with end = now - grace.
    std::chrono::milliseconds window{std::chrono::hours(1)};
    /// Messages published (or failed, or prepared) more recently than this are in flight.
    std::chrono::milliseconds grace{std::chrono::minutes(5)};
    /// An outbox row still unpublished this long after it became available is stuck.
    std::chrono::milliseconds stuck_unpublished{std::chrono::minutes(5)};

    bool redrive = true;
    std::int64_t redrive_cap = 10000;  // re-drives per run; the rest are reported "cap_reached"
    std::int64_t chunk_size = 10000;
    /// Runs (and their items) older than this are deleted at the end of each run.
    std::chrono::milliseconds retention{std::chrono::hours(24 * 30)};
    /// Recorded in reconcile_run.owner (host/instance), for operators.
    std::string owner;
};

enum class run_status { succeeded, busy };

struct run_result {
    run_status status = run_status::succeeded;
    std::int64_t run_id = 0;
    std::string window_start;  // RFC 3339, UTC
    std::string window_end;
    std::int64_t scanned = 0;                    // ledger rows read
    std::int64_t redriven = 0;                   // messages put back into the outbox
    std::map<std::string, std::int64_t> counts;  // items by kind
};

/// The item kinds, in report order.
[[nodiscard]] const std::vector<std::string>& kinds();

/// Runs one reconciliation. Throws ferry::error (connection, schema not migrated, ...); a run
/// that fails half way is recorded with status 'failed' and its error when the database allows.
[[nodiscard]] run_result run(const reconcile_options& options);

/// Sorted, comma separated group names: the `scope` of a run.
[[nodiscard]] std::string scope_of(const reconcile_options& options);

}  // namespace ferry::reconcile
