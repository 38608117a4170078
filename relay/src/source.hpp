#pragma once
// Private: where the relay's messages come from, and where it reports what became of them.
//
// A source yields committed rows of one lease group to publish (claim) and later takes back
// the outcome of a batch (mark): published rows with their Kafka partition and offset, rows to
// park, rows that expired. The publisher calls claim() on its claiming thread and mark() on its
// marking thread (each method from one thread only), so an implementation keeps one session
// per method.
//
// Implementations: poll_source (poll_source.cpp), which reads the outbox table in id order and
// moves marked rows to the ledger, parked and expired tables (marker.cpp); wal_source
// (wal_source.cpp), which streams logical decoding messages and records marked rows in the same
// tables (ADR 0070). The publisher, the planner and the sink are the same for both.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ferry::relay::detail {

/// One committed message to publish.
struct source_row {
    std::int64_t id = 0;
    /// The polling source: the row's physical address when claimed (`ctid` as text, e.g.
    /// "(12,3)"), so the mark finds it without an index lookup. Empty for the WAL source.
    std::string ctid;
    std::string message_id;
    std::string topic;  // outbox topic (not yet mapped to a Kafka topic)
    std::string key;
    std::string payload;
    std::string headers_json;
    std::int64_t created_at_us = 0;  // microseconds since the Unix epoch
    bool expired = false;
    /// Non-empty: the source refuses to publish this row and it is parked with this error code
    /// and reason, in its place in the key's order (the WAL source's messages of a key that is
    /// parked: they cannot wait in the stream, ADR 0070). Never produced.
    std::string refused_code;
    std::string refused_reason;
};

struct claim_result {
    /// The lease is this instance's at the requested epoch (checked on the database clock in
    /// the same statement that read the rows). False: no rows, the group is lost.
    bool lease_ours = false;
    /// Milliseconds the lease has left, by the database clock (0 when not ours).
    double lease_remaining_ms = 0;
    /// At most `limit` rows, in publishing order; empty when the lease has too little time left
    /// to publish (below `min_remaining_ms`).
    std::vector<source_row> rows;
};

struct mark_request {
    int group = 0;
    std::int64_t epoch = 0;
    struct published_row {
        std::int64_t id = 0;
        std::int32_t partition = -1;
        std::int64_t offset = -1;
        std::string ctid;  // source_row::ctid (empty: find the row by id)
    };
    struct parked_row {
        std::int64_t id = 0;
        std::string reason;
        std::string error_code;
    };
    std::vector<published_row> publish;
    std::vector<std::int64_t> expire;
    std::vector<parked_row> park;
    /// When the last delivery report of the batch arrived (system clock, microseconds since the
    /// epoch; 0 when unknown). Recorded as the ledger row's acked_at (migration 0108).
    std::int64_t acked_at_us = 0;
    /// Runs inside the mark's transaction, after the fence check and the statements, before
    /// COMMIT (the "during_mark" fault point). May be empty.
    std::function<void()> before_commit;
};

enum class mark_outcome { marked, fenced };

class source {
public:
    virtual ~source() = default;

    /// Rows of `group` to publish, in order, at most `limit`, none of `exclude` (rows of a batch
    /// still being marked, or in flight), and none at all unless the lease is ours at `epoch`
    /// with at least `min_remaining_ms` left. A source that waits for rows (waits_for_rows)
    /// waits only when `may_wait`; a prefetched claim takes what has already arrived. A claim
    /// whose rows are never marked (a prefetch the publisher drops) leaves them to be yielded
    /// again, in order, by a later claim that does not exclude them. Throws on a database
    /// error (the caller resets the session).
    virtual claim_result claim(int group, std::int64_t epoch, std::size_t limit,
                               const std::vector<std::int64_t>& exclude, double min_remaining_ms,
                               bool may_wait) = 0;

    /// Records a batch's outcome, fenced by the lease: `fenced` (nothing recorded) when the
    /// group is no longer this instance's at `request.epoch` or has expired. Throws on a
    /// database error (nothing recorded; the rows are published again later). `lane` (below
    /// relay_options::mark_lanes) picks the session: marks on different lanes may run at once,
    /// one thread per lane.
    virtual mark_outcome mark(const mark_request& request, std::size_t lane) = 0;

    /// Drop the claiming (or one lane's marking) session after an error; the next call
    /// reconnects.
    virtual void reset_claim_session() noexcept = 0;
    virtual void reset_mark_session(std::size_t lane) noexcept = 0;

    /// True when claim() itself waits (up to poll_max) for rows to arrive, as a stream does:
    /// the publisher then does not sleep after an empty claim.
    [[nodiscard]] virtual bool waits_for_rows() const noexcept { return false; }
    /// True when the publisher may claim the next batch while the current one's delivery
    /// reports are awaited (claim(..., may_wait = false) on another thread, then dropped if the
    /// batch did not fully publish). Worth it for sources that claim from memory (snapshot,
    /// WAL); the polling source's claim is a read of the outbox that would compete with the
    /// marks for the database (measured slower, ADR 0070 twenty-second amendment).
    [[nodiscard]] virtual bool prefetches_claims() const noexcept { return false; }
};

}  // namespace ferry::relay::detail
