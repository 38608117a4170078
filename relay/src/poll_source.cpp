// The polling source's claim: one statement checks the lease on the database clock and reads
// the group's visible rows, so a batch costs one round trip before producing.

#include "poll_source.hpp"

#include <algorithm>
#include <cmath>

#include "ferry/common/error.hpp"
#include "ferry/internal/pg_array.hpp"
#include "ferry/internal/pq.hpp"
#include "marker.hpp"

namespace ferry::relay::detail {

poll_source::poll_source(const relay_options& options, std::string quoted_schema,
                         ferry::metrics::counter reconnects)
    : _o(options), _q(std::move(quoted_schema)), _claim(options, reconnects, "claim") {
    for (std::size_t lane = 0; lane < std::max<std::size_t>(options.mark_lanes, 1); ++lane) {
        _marks.push_back(std::make_unique<pg_session>(
            options, reconnects, "mark", pg_session_tuning{.asynchronous_commit = true}));
    }
    // The mark need not wait for its WAL flush (the mark session's synchronous_commit is off,
    // one round trip less than a SET LOCAL in every mark): a mark that a database crash loses
    // leaves its rows in the outbox, and they are published again, exactly as after a relay
    // crash between Kafka's ack and the mark (consumers absorb the duplicates by
    // ferry-message-id). Other sessions see the commit at once either way (ADR 0002, "Pipeline").
    //
    // $1 instance, $2 epoch, $3 group, $4 limit, $5 excluded ids, $6 the least remaining lease
    // time (ms) worth publishing in, $7 the largest excluded id; $8 the group's shards, only
    // when there is more than one group (one group owns every shard).
    //
    // The lease row comes first and always (LEFT JOIN LATERAL): no lease row or another owner
    // or epoch reads no rows. Rows of the previous batch that is still being marked are
    // skipped: ids above the largest excluded one skip the membership test, so it runs only
    // for the excluded rows themselves and for late commits below them, against a hash of the
    // excluded ids (a hashed subplan: one lookup a row, whatever the batch size).
    //
    // The statement is planned at every claim (a custom plan: a generic plan made while the
    // outbox was empty scans and sorts the whole table, and would go on doing so once a backlog
    // builds up; ADR 0002, tenth session). Planning stays cheap because no
    // large constant array reaches the planner: one group omits the shard test, and the
    // excluded ids sit in a subquery instead of an `= ANY` whose every element the planner
    // would estimate (ADR 0002, tenth session). A row's key is looked up in parked only while
    // something is parked at all (an uncorrelated subquery, run once): a probe per row, even of
    // an empty index, cost more than the rest of the snapshot source's read.
    const auto claim_sql = [this](bool by_shard) {
        return "WITH lease AS (SELECT coalesce(owner = $1 AND epoch = $2, false) AS ours, "
               "coalesce(extract(epoch FROM (expires_at - clock_timestamp())) * 1000, 0)::float8 "
               "AS remaining_ms FROM " +
               _q +
               ".relay_lease WHERE lease_group = $3) "
               "SELECT lease.ours, lease.remaining_ms, c.* FROM lease LEFT JOIN LATERAL ("
               "SELECT o.id, o.message_id::text, o.topic, o.key, o.payload, o.headers::text, "
               "date_part('epoch', o.created_at), "
               "(o.expires_at IS NOT NULL AND o.expires_at <= clock_timestamp()), o.ctid::text "
               "FROM " +
               _q + ".outbox o WHERE lease.ours AND lease.remaining_ms >= $6 " +
               (by_shard ? "AND o.shard = ANY($8::smallint[]) " : "") +
               "AND o.available_at <= clock_timestamp() "
               "AND (o.id > $7 OR o.id NOT IN (SELECT unnest($5::bigint[]))) "
               "AND (NOT (SELECT EXISTS (SELECT 1 FROM " +
               _q + ".parked)) OR NOT EXISTS (SELECT 1 FROM " + _q +
               ".parked p WHERE p.topic = o.topic AND p.key = o.key)) "
               "ORDER BY o.id LIMIT $4) c ON true";
    };
    _claim_sql = claim_sql(options.lease_groups > 1);
}

claim_result poll_source::claim(int group, std::int64_t epoch, std::size_t limit,
                                const std::vector<std::int64_t>& exclude, double min_remaining_ms,
                                bool /*may_wait: never waits*/) {
    claim_result out;
    if (!_mode_checked) {
        // A snapshot relay keeps published rows in the outbox (migration 0109): polling them
        // would publish every retained row again.
        const auto r =
            _claim.exec("ferry_relay_snapshot_mode",
                        "SELECT EXISTS (SELECT 1 FROM " + _q + ".snapshot_position)", {});
        if (r.rows() > 0 && r.boolean(0, 0)) {
            throw ferry::error(
                error_kind::permanent, "relay.source_mismatch",
                "schema " + _o.schema +
                    " is served by relay.source: snapshot (snapshot_position has rows), whose "
                    "published rows stay in the outbox; a polling relay would publish them "
                    "again. Run it with relay.source: snapshot, or see docs/operations.md, "
                    "Switching sources",
                "relay.source");
        }
        _mode_checked = true;
    }
    std::int64_t max_excluded = 0;
    for (const auto id : exclude) max_excluded = std::max(max_excluded, id);
    // Prepared: an idle relay polls every poll_min, and planning this statement costs more
    // than running it on an empty outbox. The result is binary (binary_session): the payloads
    // arrive as their bytes, not hex.
    std::vector<std::string> params = {_o.instance_id,
                                       std::to_string(epoch),
                                       std::to_string(group),
                                       std::to_string(limit),
                                       internal::array_literal(exclude),
                                       std::to_string(min_remaining_ms),
                                       std::to_string(max_excluded)};
    if (_o.lease_groups > 1) params.push_back(shard_array_literal(group, _o.lease_groups));
    const auto r = _claim.exec("ferry_relay_claim", _claim_sql, params);
    if (r.rows() == 0 || r.is_null(0, 0) || !r.boolean(0, 0)) return out;
    out.lease_ours = true;
    out.lease_remaining_ms = r.float8(0, 1);
    if (r.is_null(0, 2)) return out;  // no rows (or too little lease time left)
    const int n = r.rows();
    out.rows.reserve(static_cast<std::size_t>(n));
    const auto text = [&r](int row, int col) { return std::string(r.bytes(row, col)); };
    for (int i = 0; i < n; ++i) {
        source_row c;
        c.id = r.int8(i, 2);
        c.message_id = text(i, 3);
        c.topic = text(i, 4);
        c.key = text(i, 5);
        c.payload = text(i, 6);
        c.headers_json = text(i, 7);
        // date_part('epoch') is a float8 (cheaper on the server than to_char or a numeric
        // extract); it carries the microseconds exactly enough to round back to them.
        c.created_at_us = std::llround(r.float8(i, 8) * 1e6);
        c.expired = r.boolean(i, 9);
        c.ctid = text(i, 10);
        out.rows.push_back(std::move(c));
    }
    return out;
}

mark_outcome poll_source::mark(const mark_request& request, std::size_t lane) {
    return mark_batch(_marks.at(lane)->get(), _q, _o.instance_id, request, _o.ledger_payloads);
}

}  // namespace ferry::relay::detail
