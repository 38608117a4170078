// The snapshot source (snapshot_source.hpp has the rules): list an epoch, read it by id range,
// yield unfinished rows first, record marks with the position, never delete.

#include "snapshot_source.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>

#include "fault_points.hpp"
#include "ferry/common/error.hpp"
#include "ferry/internal/pg_array.hpp"
#include "ferry/internal/pq.hpp"
#include "marker.hpp"

namespace ferry::relay::detail {

// Named, not anonymous: unity builds put this file in one translation unit with the WAL
// source, whose anonymous namespace has names of its own.
namespace snapshot_sql {

constexpr const char* k_key_parked = "KEY_PARKED";
// The position of a group that never published: nothing is visible in it, so the first epoch
// holds every row committed before the first snapshot.
constexpr const char* k_nothing_seen = "1:1:";

std::int64_t system_now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::int64_t to_us(double epoch_seconds) { return std::llround(epoch_seconds * 1e6); }

// The lease on the database clock, as every claim statement starts: $1 instance, $2 epoch,
// $3 group.
std::string lease_cte(const std::string& q) {
    return "WITH lease AS (SELECT coalesce(owner = $1 AND epoch = $2, false) AS ours, "
           "coalesce(extract(epoch FROM (expires_at - clock_timestamp())) * 1000, 0)::float8 "
           "AS remaining_ms, date_part('epoch', clock_timestamp()) AS now FROM " +
           q + ".relay_lease WHERE lease_group = $3)";
}

}  // namespace snapshot_sql

snapshot_source::snapshot_source(const relay_options& options, std::string quoted_schema,
                                 ferry::metrics::counter reconnects)
    : _o(options),
      _q(std::move(quoted_schema)),
      // Generic plans: a custom plan of the listing or the read cost 5-6 ms to make on a
      // retained table of 60k rows (the planner probes the index ends for the actual range of
      // txid and id, where rows are being inserted), ten times the statement's run. Generic
      // plans without sequential scans are the same index scans whatever the table's size was
      // when they were made (ADR 0080, eighteenth-session amendment).
      _claim(options, reconnects, "claim", /*generic_plans=*/true) {
    // A lost mark commit loses nothing: the rows stay in the outbox and the position stays
    // where it was, so they are published again (as after a crash between Kafka's ack and the
    // mark). The mark therefore need not wait for its WAL flush, like polling's.
    for (std::size_t lane = 0; lane < std::max<std::size_t>(options.mark_lanes, 1); ++lane) {
        _marks.push_back(std::make_unique<pg_session>(
            options, reconnects, "mark", pg_session_tuning{.asynchronous_commit = true}));
    }
    // The rows of the epoch (S0, S1]: their transaction is visible in S1, and it was at or past
    // S0's xmax or in progress in S0. {s0} and {s1} are replaced by SQL expressions.
    _in_epoch =
        "((o.txid >= pg_snapshot_xmax({s0}) AND o.txid < pg_snapshot_xmax({s1})) OR o.txid = "
        "ANY(ARRAY(SELECT pg_snapshot_xip({s0})))) AND pg_visible_in_snapshot(o.txid, {s1})";
    if (fault::snapshot_without_in_progress()) {
        // Negative control (test builds only): a transaction in progress in S0 is in no epoch.
        _in_epoch =
            "o.txid >= pg_snapshot_xmax({s0}) AND o.txid < pg_snapshot_xmax({s1}) AND "
            "pg_visible_in_snapshot(o.txid, {s1})";
    }
}

std::string snapshot_source::epoch_filter(const std::string& s0, const std::string& s1) const {
    std::string filter = _in_epoch;
    for (const auto& [from, to] : {std::pair{std::string("{s0}"), s0}, {std::string("{s1}"), s1}}) {
        for (auto at = filter.find(from); at != std::string::npos; at = filter.find(from, at)) {
            filter.replace(at, from.size(), to);
            at += to.size();
        }
    }
    return filter;
}

snapshot_source::group_state& snapshot_source::state(int group) {
    std::lock_guard lock(_mu);
    auto& g = _groups[group];
    if (!g) g = std::make_unique<group_state>();
    return *g;
}

std::string snapshot_source::shard_param(int group) const {
    return shard_array_literal(group, _o.lease_groups);
}

void snapshot_source::reset_claim_session() noexcept {
    _claim.reset();
    // Start again from the recorded positions: what the window held is read again.
    std::lock_guard lock(_mu);
    for (auto& [group, g] : _groups) g->lease_epoch = -1;
}

bool snapshot_source::load(int group, std::int64_t epoch, group_state& g) {
    const auto sql = snapshot_sql::lease_cte(_q) +
                     " SELECT lease.ours, p.s0::text, p.s1::text, p.after_id, p.seq, "
                     "p.lease_groups::int8 FROM lease LEFT JOIN " +
                     _q + ".snapshot_position p ON p.lease_group = $3 AND lease.ours";
    const std::vector<std::string> params = {_o.instance_id, std::to_string(epoch),
                                             std::to_string(group)};
    auto r = _claim.exec("ferry_relay_snapshot_load", sql, params);
    if (r.rows() == 0 || !r.boolean(0, 0)) return false;
    if (r.is_null(0, 1)) {
        // The group's first snapshot relay: nothing is finished yet.
        (void)_claim.exec(
            "ferry_relay_snapshot_create",
            snapshot_sql::lease_cte(_q) + " INSERT INTO " + _q +
                ".snapshot_position (lease_group, lease_groups, s0) SELECT $3, $4, '" +
                snapshot_sql::k_nothing_seen +
                "' FROM lease WHERE lease.ours ON CONFLICT DO NOTHING RETURNING lease_group",
            {_o.instance_id, std::to_string(epoch), std::to_string(group),
             std::to_string(_o.lease_groups)});
        r = _claim.exec("ferry_relay_snapshot_load", sql, params);
        if (r.rows() == 0 || !r.boolean(0, 0) || r.is_null(0, 1)) return false;
    }
    const auto groups = r.int8(0, 5);
    if (groups != _o.lease_groups) {
        throw ferry::error(
            error_kind::permanent, "relay.snapshot_groups",
            "snapshot_position of lease group " + std::to_string(group) + " was written with " +
                std::to_string(groups) + " lease groups, and relay.lease_groups is " +
                std::to_string(_o.lease_groups) +
                ": a key would move to another group's position (change relay.lease_groups "
                "back, or let every group finish and reset the positions; docs/operations.md)",
            "relay.lease_groups");
    }
    snapshot_point p;
    p.s0 = std::string(r.bytes(0, 1));
    if (!r.is_null(0, 2)) p.s1 = std::string(r.bytes(0, 2));
    p.after_id = r.int8(0, 3);
    const auto seq = r.int8(0, 4);
    std::lock_guard lock(_mu);
    ++g.generation;
    g.tracker.reset(std::move(p));
    g.window.clear();
    g.seq = std::max(g.seq, seq);
    g.epoch_open = false;
    g.listed.clear();
    g.cursor = 0;
    g.lease_epoch = epoch;
    return true;
}

snapshot_source::lease_view snapshot_source::open_epoch(int group, std::int64_t epoch,
                                                        group_state& g) {
    std::string s0;
    std::string resume;
    std::int64_t after = 0;
    {
        std::lock_guard lock(_mu);
        s0 = g.tracker.next_s0();
        resume = g.tracker.resume_s1().value_or("");
        after = g.tracker.resume_after();
    }
    const auto filter = epoch_filter("$4::pg_snapshot", "snap.s1");
    const bool by_shard = _o.lease_groups > 1;
    // $4 S0, $5 the open epoch's S1 ('' for a new snapshot), $6 the group's shards (more than
    // one group). The snapshot is the statement's own, so the listing sees exactly the
    // transactions it calls visible.
    //
    // One row: the lease, the snapshot (taken once: MATERIALIZED, so it is not re-evaluated in
    // the scan's filter) and the epoch's ids as one bigint[] (no row per id). The only terms a
    // plan can look up by index are the txid terms: with an id term (an ORDER BY id, or the
    // resumed epoch's "id > after"), a generic plan made while the table was nearly empty walks
    // the primary key over the whole retained table and filters by txid (5.8 ms at the median
    // on 60k rows at 5k msg/s, against 0.9 ms). The ids are sorted, and a resumed epoch's
    // finished ids dropped, here.
    const auto sql = snapshot_sql::lease_cte(_q) +
                     ", snap AS MATERIALIZED (SELECT coalesce(NULLIF($5, '')::pg_snapshot, "
                     "pg_current_snapshot()) AS s1) SELECT lease.ours, lease.remaining_ms, "
                     "lease.now, snap.s1::text, CASE WHEN lease.ours THEN ARRAY(SELECT o.id FROM " +
                     _q + ".outbox o WHERE " + filter +
                     (by_shard ? " AND o.shard = ANY($6::smallint[])" : "") +
                     ") END FROM lease CROSS JOIN snap";
    std::vector<std::string> params = {_o.instance_id, std::to_string(epoch), std::to_string(group),
                                       s0, resume};
    if (by_shard) params.push_back(shard_param(group));
    const auto r = _claim.exec("ferry_relay_snapshot_list", sql, params);
    lease_view v;
    if (r.rows() == 0 || !r.boolean(0, 0)) return v;
    v.ours = true;
    v.remaining_ms = r.float8(0, 1);
    auto ids = r.int8_array(0, 4);
    std::sort(ids.begin(), ids.end());
    ids.erase(ids.begin(), std::upper_bound(ids.begin(), ids.end(), after));
    std::lock_guard lock(_mu);
    g.clock_offset_us = snapshot_sql::to_us(r.float8(0, 2)) - snapshot_sql::system_now_us();
    g.epoch_number = g.tracker.open_epoch(s0, std::string(r.bytes(0, 3)));
    g.s0 = std::move(s0);
    g.s1 = std::string(r.bytes(0, 3));
    g.listed = std::move(ids);
    g.cursor = 0;
    g.epoch_open = true;
    if (g.listed.empty()) {
        g.tracker.close_epoch(g.epoch_number);
        g.epoch_open = false;
    }
    return v;
}

snapshot_source::lease_view snapshot_source::read_rows(int group, std::int64_t epoch,
                                                       group_state& g, std::size_t n) {
    const auto from = g.cursor;
    const auto to = std::min(g.listed.size(), from + n);
    const auto filter = epoch_filter("$6::pg_snapshot", "$7::pg_snapshot");
    const bool by_shard = _o.lease_groups > 1;
    // One id range of the listing, filtered by the same terms (so exactly the listed rows),
    // in id order, in binary; with each row the oldest parked message of its key, if any. The
    // per-row lookup runs only when something is parked at all (an uncorrelated subquery, run
    // once): 1000 probes of even an empty index cost more than the rest of the read.
    const auto sql =
        snapshot_sql::lease_cte(_q) +
        " SELECT lease.ours, lease.remaining_ms, lease.now, c.* FROM lease LEFT JOIN LATERAL "
        "(SELECT o.id, o.message_id::text, o.topic, o.key, o.payload, o.headers::text, "
        "date_part('epoch', o.created_at), date_part('epoch', o.available_at), "
        "date_part('epoch', o.expires_at), CASE WHEN (SELECT EXISTS (SELECT 1 FROM " +
        _q + ".parked)) THEN (SELECT min(p.id) FROM " + _q +
        ".parked p WHERE p.topic = o.topic AND p.key = o.key) END FROM " + _q +
        ".outbox o WHERE lease.ours AND o.id BETWEEN $4 AND $5 AND " + filter +
        (by_shard ? " AND o.shard = ANY($8::smallint[])" : "") + " ORDER BY o.id) c ON true";
    std::vector<std::string> params = {_o.instance_id,
                                       std::to_string(epoch),
                                       std::to_string(group),
                                       std::to_string(g.listed[from]),
                                       std::to_string(g.listed[to - 1]),
                                       g.s0,
                                       g.s1};
    if (by_shard) params.push_back(shard_param(group));
    const auto r = _claim.exec("ferry_relay_snapshot_read", sql, params);
    lease_view v;
    if (r.rows() == 0 || !r.boolean(0, 0)) return v;
    v.ours = true;
    v.remaining_ms = r.float8(0, 1);
    const auto text = [&r](int row, int col) { return std::string(r.bytes(row, col)); };
    std::lock_guard lock(_mu);
    g.clock_offset_us = snapshot_sql::to_us(r.float8(0, 2)) - snapshot_sql::system_now_us();
    for (int i = 0; i < r.rows(); ++i) {
        if (r.is_null(i, 3)) break;  // no rows (deleted by hand since the listing)
        entry e;
        e.outbox_id = r.int8(i, 3);
        e.row.message_id = text(i, 4);
        e.row.topic = text(i, 5);
        e.row.key = text(i, 6);
        e.row.payload = text(i, 7);
        e.row.headers_json = text(i, 8);
        e.row.created_at_us = snapshot_sql::to_us(r.float8(i, 9));
        e.available_at_us = snapshot_sql::to_us(r.float8(i, 10));
        if (!r.is_null(i, 11)) e.expires_at_us = snapshot_sql::to_us(r.float8(i, 11));
        if (!r.is_null(i, 12)) e.parked_id = r.int8(i, 12);
        e.ticket = g.tracker.add(g.epoch_number, e.outbox_id);
        e.row.id = ++g.next_row;
        g.window.insert(e.row.id, std::move(e));
    }
    g.cursor = to;
    if (g.cursor == g.listed.size()) {
        g.tracker.close_epoch(g.epoch_number);
        g.epoch_open = false;
        g.listed.clear();
        g.cursor = 0;
    }
    return v;
}

snapshot_source::lease_view snapshot_source::check_parked(
    int group, std::int64_t epoch, group_state& g,
    const std::vector<std::pair<std::string, std::string>>& keys,
    std::map<std::pair<std::string, std::string>, std::int64_t>& parked) {
    std::size_t bytes = 0;
    for (const auto& [t, k] : keys) bytes += t.size() + k.size();
    internal::array_builder topics(keys.size(), bytes), key_list(keys.size(), bytes);
    for (const auto& [t, k] : keys) {
        topics.add(t);
        key_list.add(k);
    }
    const auto sql = snapshot_sql::lease_cte(_q) +
                     " SELECT lease.ours, lease.remaining_ms, lease.now, h.topic, h.key, "
                     "h.first_id FROM lease LEFT JOIN LATERAL (SELECT p.topic, p.key, min(p.id) "
                     "AS first_id FROM " +
                     _q +
                     ".parked p JOIN unnest($4::text[], $5::text[]) AS b(topic, key) ON "
                     "p.topic = b.topic AND p.key = b.key WHERE lease.ours GROUP BY p.topic, "
                     "p.key) h ON true";
    const auto r = _claim.exec("ferry_relay_snapshot_lease", sql,
                               {_o.instance_id, std::to_string(epoch), std::to_string(group),
                                std::move(topics).take(), std::move(key_list).take()});
    lease_view v;
    if (r.rows() == 0 || !r.boolean(0, 0)) return v;
    v.ours = true;
    v.remaining_ms = r.float8(0, 1);
    {
        std::lock_guard lock(_mu);
        g.clock_offset_us = snapshot_sql::to_us(r.float8(0, 2)) - snapshot_sql::system_now_us();
    }
    for (int i = 0; i < r.rows(); ++i) {
        if (r.is_null(i, 3)) continue;
        parked.emplace(std::make_pair(std::string(r.bytes(i, 3)), std::string(r.bytes(i, 4))),
                       r.int8(i, 5));
    }
    return v;
}

bool snapshot_source::refill(int group, group_state& g, const std::vector<std::int64_t>& ids) {
    std::vector<std::pair<std::int64_t, std::int64_t>> lent;  // (outbox id, window id)
    {
        std::lock_guard lock(_mu);
        for (const auto id : ids) {
            const auto& e = g.window.at(id);
            if (e.lent) lent.emplace_back(e.outbox_id, id);
        }
    }
    if (lent.empty()) return true;
    std::sort(lent.begin(), lent.end());
    std::vector<std::int64_t> outbox_ids;
    outbox_ids.reserve(lent.size());
    for (const auto& [outbox_id, id] : lent) outbox_ids.push_back(outbox_id);
    const auto r = _claim.exec("ferry_relay_snapshot_refill",
                               "SELECT o.id, o.message_id::text, o.payload, o.headers::text FROM " +
                                   _q + ".outbox o WHERE o.id = ANY($1::int8[])",
                               {internal::array_literal(outbox_ids)});
    std::size_t found = 0;
    std::lock_guard lock(_mu);
    for (int i = 0; i < r.rows(); ++i) {
        const auto outbox_id = r.int8(i, 0);
        const auto at =
            std::lower_bound(lent.begin(), lent.end(), std::make_pair(outbox_id, std::int64_t{0}));
        if (at == lent.end() || at->first != outbox_id) continue;
        auto* e = g.window.find(at->second);
        if (e == nullptr || !e->lent) continue;
        e->row.message_id = std::string(r.bytes(i, 1));
        e->row.payload = std::string(r.bytes(i, 2));
        e->row.headers_json = std::string(r.bytes(i, 3));
        e->lent = false;
        ++found;
    }
    if (found == lent.size()) {
        spdlog::info("event=snapshot_refill group={} rows={} (rows yielded again, read back)",
                     group, found);
        return true;
    }
    // Deleted by hand while in the window: start again from the position, whose listing no
    // longer has it (as a row deleted before it was read).
    spdlog::warn(
        "event=snapshot_rows_vanished group={} count={} (rows in the relay's window are no longer "
        "in the outbox; the group's position is loaded again)",
        group, lent.size() - found);
    g.lease_epoch = -1;
    return false;
}

void snapshot_source::yield(group_state& g, std::size_t limit,
                            const std::vector<std::int64_t>& exclude,
                            std::vector<std::int64_t>& out_ids) {
    const auto now_us = snapshot_sql::system_now_us() + g.clock_offset_us;
    std::set<std::pair<std::string, std::string>> held;  // keys behind a row not yet due
    g.window.for_each_until([&](std::int64_t id, entry& e) {
        if (out_ids.size() >= limit) return false;
        if (std::binary_search(exclude.begin(), exclude.end(), id)) return true;
        if (!held.empty() && held.count({e.row.topic, e.row.key}) > 0) return true;
        if (e.available_at_us > now_us) {
            held.emplace(e.row.topic, e.row.key);
            return true;
        }
        out_ids.push_back(id);
        return true;
    });
}

claim_result snapshot_source::claim(int group, std::int64_t epoch, std::size_t limit,
                                    const std::vector<std::int64_t>& exclude_in,
                                    double min_remaining_ms, bool /*may_wait: never waits*/) {
    auto& g = state(group);
    if (g.lease_epoch != epoch && !load(group, epoch, g)) return {};
    std::vector<std::int64_t> exclude(exclude_in);
    std::sort(exclude.begin(), exclude.end());

    std::vector<std::int64_t> ids;
    std::int64_t first_new = 0;  // rows above this were read by this claim
    {
        std::lock_guard lock(_mu);
        yield(g, limit, exclude, ids);
        first_new = g.next_row;
    }
    std::optional<lease_view> lease;
    if (ids.size() < limit) {
        const auto t0 = std::chrono::steady_clock::now();
        if (!g.epoch_open) lease = open_epoch(group, epoch, g);
        const auto t1 = std::chrono::steady_clock::now();
        if ((!lease || lease->ours) && g.epoch_open) {
            lease = read_rows(group, epoch, g, limit - ids.size());
        }
        const auto us = [](auto d) {
            return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
        };
        spdlog::debug("event=snapshot_read group={} list_us={} read_us={}", group, us(t1 - t0),
                      us(std::chrono::steady_clock::now() - t1));
        if (lease && !lease->ours) {
            std::lock_guard lock(_mu);
            g.lease_epoch = -1;
            return {};
        }
        std::lock_guard lock(_mu);
        ids.clear();
        yield(g, limit, exclude, ids);
    }

    // Rows read by an earlier claim may have had their key parked since: look again, with the
    // lease (a claim that read nothing checks it here).
    std::vector<std::pair<std::string, std::string>> recheck;
    {
        std::lock_guard lock(_mu);
        for (const auto id : ids) {
            if (id > first_new) continue;
            const auto& e = g.window.at(id);
            recheck.emplace_back(e.row.topic, e.row.key);
        }
    }
    std::map<std::pair<std::string, std::string>, std::int64_t> parked;
    if (!recheck.empty() || !lease) lease = check_parked(group, epoch, g, recheck, parked);
    if (!lease->ours) {
        std::lock_guard lock(_mu);
        g.lease_epoch = -1;
        return {};
    }
    claim_result out;
    out.lease_ours = true;
    out.lease_remaining_ms = lease->remaining_ms;
    if (lease->remaining_ms < min_remaining_ms) return out;  // the rows wait in the window

    // Rows yielded before (their batch failed, or its mark did) were lent: read them back.
    if (!refill(group, g, ids)) return out;

    std::lock_guard lock(_mu);
    const auto now_us = snapshot_sql::system_now_us() + g.clock_offset_us;
    out.rows.reserve(ids.size());
    for (const auto id : ids) {
        auto& e = g.window.at(id);
        auto parked_id = e.parked_id;
        if (id <= first_new) {
            const auto it = parked.find({e.row.topic, e.row.key});
            parked_id = it == parked.end() ? 0 : it->second;
            e.parked_id = parked_id;
        }
        // The large strings move into the claim (the window keeps what yield, the parked
        // check and mark need); a copy of each row's payload was a third of the relay's
        // allocations per message.
        auto message_id = std::move(e.row.message_id);
        auto payload = std::move(e.row.payload);
        auto headers_json = std::move(e.row.headers_json);
        e.lent = true;
        out.rows.push_back(e.row);
        auto& row = out.rows.back();
        row.message_id = std::move(message_id);
        row.payload = std::move(payload);
        row.headers_json = std::move(headers_json);
        row.expired = e.expires_at_us && *e.expires_at_us <= now_us;
        if (parked_id != 0) {
            row.refused_code = snapshot_sql::k_key_parked;
            row.refused_reason = "held behind parked message " + std::to_string(parked_id) +
                                 " of its key (retry or discard it with ferryctl parked)";
        }
    }
    return out;
}

mark_outcome snapshot_source::mark(const mark_request& request, std::size_t lane) {
    auto& g = state(request.group);
    std::vector<std::int64_t> pub_ids, pub_offsets, exp_ids, park_ids;
    std::vector<int> pub_parts;
    std::vector<std::string> park_reasons, park_codes;
    std::vector<std::pair<std::int64_t, snapshot_tracker::ticket>> finished;
    std::vector<snapshot_tracker::ticket> tickets;
    snapshot_point point;
    std::int64_t seq = 0;
    std::uint64_t generation = 0;
    {
        std::lock_guard lock(_mu);
        generation = g.generation;
        // A row missing from the window belongs to a state that was reloaded since it was
        // claimed (another lease epoch, or after an error): it is read again from the recorded
        // position, so it is not recorded here (the lease fence decides for the others).
        const auto find = [&](std::int64_t id) -> const entry* {
            const auto* e = g.window.find(id);
            if (e == nullptr) return nullptr;
            finished.emplace_back(id, e->ticket);
            tickets.push_back(e->ticket);
            return e;
        };
        for (const auto& p : request.publish) {
            const auto* e = find(p.id);
            if (e == nullptr) continue;
            pub_ids.push_back(e->outbox_id);
            pub_parts.push_back(p.partition);
            pub_offsets.push_back(p.offset);
        }
        for (const auto id : request.expire) {
            if (const auto* e = find(id)) exp_ids.push_back(e->outbox_id);
        }
        for (const auto& p : request.park) {
            const auto* e = find(p.id);
            if (e == nullptr) continue;
            park_ids.push_back(e->outbox_id);
            park_reasons.push_back(p.reason);
            park_codes.push_back(p.error_code);
        }
        if (finished.empty()) return mark_outcome::marked;
        point = g.tracker.durable_with(tickets);
        seq = ++g.seq;
    }

    const std::string position_sql =
        "UPDATE " + _q +
        ".snapshot_position SET s0 = $1::pg_snapshot, s1 = NULLIF($2, '')::pg_snapshot, "
        "after_id = $3, seq = $4, updated_at = clock_timestamp() WHERE lease_group = $5 AND "
        "seq < $4";
    const auto s1 = point.s1.value_or("");
    // The ledger row points at the rows; acked_at is when the batch's last report arrived.
    const std::string batch_columns =
        ".snapshot_batch (relay_epoch, lease_group, ids, partitions, offsets, acked_at) ";
    const auto acked = [](const char* p) {
        return std::string("timestamptz 'epoch' + NULLIF(") + p +
               "::bigint, 0) * interval '1 microsecond'";
    };

    // A mark that only publishes (nearly every mark): fence, ledger row and position in one
    // statement in its own implicit transaction, as polling's mark.
    if (!pub_ids.empty() && exp_ids.empty() && park_ids.empty() && !fault::during_mark_pending()) {
        pqxx::nontransaction tx{_marks.at(lane)->get()};
        const auto r = internal::exec_cached(
            tx, "ferry_relay_snapshot_mark",
            "WITH fence AS MATERIALIZED (SELECT owner = $1 AND epoch = $2 AND expires_at > "
            "clock_timestamp() AS ok FROM " +
                _q + ".relay_lease WHERE lease_group = $3 FOR KEY SHARE), ins AS (INSERT INTO " +
                _q + batch_columns + "SELECT $2, $3, $4::bigint[], $5::int[], $6::bigint[], " +
                acked("$7") + " FROM fence WHERE fence.ok RETURNING 1), pos AS (UPDATE " + _q +
                ".snapshot_position SET s0 = $8::pg_snapshot, s1 = NULLIF($9, '')::pg_snapshot, "
                "after_id = $10, seq = $11, updated_at = clock_timestamp() WHERE lease_group = "
                "$3 AND seq < $11 AND (SELECT ok FROM fence) RETURNING 1) SELECT ok FROM fence",
            _o.instance_id, request.epoch, request.group, internal::array_literal(pub_ids),
            internal::array_literal(pub_parts), internal::array_literal(pub_offsets),
            request.acked_at_us, point.s0, s1, point.after_id, seq);
        if (r.empty() || r[0][0].is_null() || !r[0][0].as<bool>()) return mark_outcome::fenced;
    } else {
        pqxx::work tx{_marks.at(lane)->get()};
        if (!lease_fence(tx, _q, _o.instance_id, request.epoch, request.group)) {
            tx.abort();
            return mark_outcome::fenced;
        }
        if (!pub_ids.empty()) {
            (void)internal::exec_cached(
                tx, "ferry_relay_snapshot_mark_published",
                "INSERT INTO " + _q + batch_columns +
                    "VALUES ($1, $2, $3::bigint[], $4::int[], $5::bigint[], " + acked("$6") + ")",
                request.epoch, request.group, internal::array_literal(pub_ids),
                internal::array_literal(pub_parts), internal::array_literal(pub_offsets),
                request.acked_at_us);
        }
        if (!exp_ids.empty()) {
            (void)internal::exec_cached(tx, "ferry_relay_snapshot_mark_expired",
                                        "INSERT INTO " + _q + ".expired (" + k_copied_columns +
                                            ") SELECT " + k_copied_columns + " FROM " + _q +
                                            ".outbox WHERE id = ANY($1::bigint[])" +
                                            k_expired_conflict,
                                        internal::array_literal(exp_ids));
        }
        if (!park_ids.empty()) {
            // The rows stay in the outbox (finished); `parked` gets their copy under the outbox
            // id, so a key's parked rows sort in their order.
            (void)internal::exec_cached(
                tx, "ferry_relay_snapshot_mark_parked",
                "WITH info AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS "
                "t(id, reason, code)) INSERT INTO " +
                    _q + ".parked (" + k_copied_columns + ", reason, error_code) SELECT " +
                    k_copied_columns + ", info.reason, info.code FROM " + _q +
                    ".outbox o JOIN info USING (id)" + parked_conflict(_q),
                internal::array_literal(park_ids), internal::array_literal(park_reasons),
                internal::array_literal(park_codes));
        }
        (void)internal::exec_cached(tx, "ferry_relay_snapshot_position", position_sql, point.s0, s1,
                                    point.after_id, seq, request.group);
        if (request.before_commit) request.before_commit();
        tx.commit();
    }

    std::lock_guard lock(_mu);
    if (generation != g.generation) return mark_outcome::marked;  // reloaded meanwhile
    for (const auto& [id, ticket] : finished) {
        g.tracker.finish(ticket);
        g.window.erase(id);
    }
    return mark_outcome::marked;
}

}  // namespace ferry::relay::detail
