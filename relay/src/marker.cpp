#include "marker.hpp"

#include "fault_points.hpp"
#include "ferry/internal/pg_array.hpp"
#include "ferry/internal/pq.hpp"

namespace ferry::relay::detail {

using internal::array_builder;

bool lease_fence(pqxx::transaction_base& tx, const std::string& q, const std::string& instance_id,
                 std::int64_t epoch, int group) {
    const auto lease = internal::exec_cached(
        tx, "ferry_relay_fence",
        "SELECT owner = $1 AND epoch = $2 AND expires_at > clock_timestamp() FROM " + q +
            ".relay_lease WHERE lease_group = $3 FOR KEY SHARE",
        instance_id, epoch, group);
    return !lease.empty() && !lease[0][0].is_null() && lease[0][0].as<bool>();
}

mark_outcome mark_batch(pqxx::connection& conn, const std::string& q,
                        const std::string& instance_id, const mark_request& request,
                        bool keep_payloads) {
    // The polling source's mark session commits without waiting for the WAL flush
    // (poll_source.cpp); this function leaves durability to the session.
    //
    // Rows are found by their physical address from the claim (a TID scan, no index descent a
    // row) and must still hold the claimed id there; a row that is not (moved by an UPDATE, or
    // deleted by someone else) is left alone and published again later, never deleted in
    // another row's place. A request without addresses falls back to the ids.
    bool by_tid = !request.publish.empty();
    for (const auto& p : request.publish) by_tid = by_tid && !p.ctid.empty();
    array_builder tids(by_tid ? request.publish.size() : 0,
                       by_tid ? request.publish.size() * 12 : 0);
    std::vector<std::int64_t> ids;
    std::vector<int> parts;
    std::vector<std::int64_t> offsets;
    ids.reserve(request.publish.size());
    parts.reserve(request.publish.size());
    offsets.reserve(request.publish.size());
    for (const auto& p : request.publish) {
        if (by_tid) tids.add(p.ctid);
        ids.push_back(p.id);
        parts.push_back(p.partition);
        offsets.push_back(p.offset);
    }
    // One ledger row for the batch (migration 0090, ADR 0011): the deleted rows' columns as
    // parallel arrays, aggregated in one pass so element i of every array is the same message,
    // and the payloads back to back with their lengths (NULL without relay.ledger_payloads:
    // reconciliation then reports a lost message instead of re-driving it; ADR 0011).
    // With `owner` (the parameter holding the instance id) the statement also checks the lease,
    // FOR KEY SHARE like lease_fence, as a one-time filter of the DELETE (evaluated before any row
    // is deleted; the plan keeps its TID scan), and returns whether the lease was ours.
    // `acked`: the parameter holding request.acked_at_us (the ledger row's acked_at).
    const auto ledger = [&](const std::string& info, const std::string& match, const char* acked,
                            const char* owner) {
        const std::string payload_columns =
            keep_payloads ? "array_agg(octet_length(payload)), string_agg(payload, ''::bytea), "
                          : "NULL::int[], NULL::bytea, ";
        std::string sql = "WITH ";
        std::string fence_filter;
        if (owner != nullptr) {
            sql += std::string("fence AS MATERIALIZED (SELECT owner = ") + owner +
                   " AND epoch = $4 AND expires_at > clock_timestamp() AS ok FROM " + q +
                   ".relay_lease WHERE lease_group = $5 FOR KEY SHARE), ";
            fence_filter = " AND (SELECT ok FROM fence)";
        }
        sql += "info AS (" + info + "), moved AS (DELETE FROM " + q +
               ".outbox o USING info WHERE " + match + fence_filter +
               " RETURNING o.message_id, o.topic, o.key, o.created_at, o.payload, o.headers, "
               "info.part, info.off)";
        sql += owner != nullptr ? ", ins AS (" : " ";
        sql += "INSERT INTO " + q +
               ".published_batch (relay_epoch, lease_group, message_count, message_ids, "
               "topics, keys, partitions, offsets, created_ats, payload_lens, payloads, "
               "headers, acked_at) SELECT $4, $5, count(*), array_agg(message_id), "
               "array_agg(topic), array_agg(key), array_agg(part), array_agg(off), "
               "array_agg(created_at), " +
               payload_columns + "array_agg(headers), timestamptz 'epoch' + NULLIF(" + acked +
               "::bigint, 0) * interval '1 microsecond' FROM moved HAVING count(*) > 0";
        if (owner != nullptr) sql += " RETURNING 1) SELECT ok FROM fence";
        return sql;
    };
    const std::string suffix = keep_payloads ? "" : "_nopayload";
    // `owner...`: the instance id for a statement that fences inline, or nothing.
    const auto move_published = [&](pqxx::transaction_base& tx, const auto&... owner) {
        const bool inline_fence = sizeof...(owner) > 0;
        const std::string fenced = inline_fence ? "_fenced" : "";
        if (by_tid) {
            return internal::exec_cached(
                tx, "ferry_relay_mark_published_tid" + suffix + fenced,
                ledger("SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $6::tid[]) "
                       "AS t(id, part, off, tid)",
                       "o.ctid = info.tid AND o.id = info.id", "$7", inline_fence ? "$8" : nullptr),
                internal::array_literal(ids), internal::array_literal(parts),
                internal::array_literal(offsets), request.epoch, request.group,
                std::move(tids).take(), request.acked_at_us, owner...);
        }
        return internal::exec_cached(
            tx, "ferry_relay_mark_published" + suffix + fenced,
            ledger("SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS t(id, part, "
                   "off)",
                   "o.id = info.id", "$6", inline_fence ? "$7" : nullptr),
            internal::array_literal(ids), internal::array_literal(parts),
            internal::array_literal(offsets), request.epoch, request.group, request.acked_at_us,
            owner...);
    };
    // A mark that only publishes (nearly every mark) is one statement in its own implicit
    // transaction: fence, rows moved to the ledger and commit in one round trip instead of
    // four (BEGIN, fence, move, COMMIT). On a busy machine each round trip waited for the
    // server and then the relay to be scheduled, and the mark paces the drain (ADR 0002,
    // thirteenth amendment). The outcome is the transaction's: rows move if and only if the
    // lease was ours. Marks that expire or park rows keep the transaction, and so does a mark
    // while the during_mark fault point (test builds) waits to fire before a COMMIT.
    if (!request.publish.empty() && request.expire.empty() && request.park.empty() &&
        !fault::during_mark_pending()) {
        pqxx::nontransaction tx{conn};
        const auto r = move_published(tx, instance_id);
        if (r.empty() || r[0][0].is_null() || !r[0][0].as<bool>()) return mark_outcome::fenced;
        return mark_outcome::marked;
    }
    pqxx::work tx{conn};
    if (!lease_fence(tx, q, instance_id, request.epoch, request.group)) {
        tx.abort();
        return mark_outcome::fenced;
    }
    if (!request.publish.empty()) (void)move_published(tx);
    if (!request.expire.empty()) {
        (void)internal::exec_cached(
            tx, "ferry_relay_mark_expired",
            "WITH moved AS (DELETE FROM " + q +
                ".outbox WHERE id = ANY($1::bigint[]) RETURNING *) INSERT INTO " + q +
                ".expired (" + k_copied_columns + ") SELECT " + k_copied_columns + " FROM moved" +
                k_expired_conflict,
            internal::array_literal(request.expire));
    }
    if (!request.park.empty()) {
        std::vector<std::int64_t> park_ids;
        std::vector<std::string> reasons;
        std::vector<std::string> codes;
        for (const auto& p : request.park) {
            park_ids.push_back(p.id);
            reasons.push_back(p.reason);
            codes.push_back(p.error_code);
        }
        (void)internal::exec_cached(
            tx, "ferry_relay_mark_parked",
            "WITH info AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS "
            "t(id, reason, code)), moved AS (DELETE FROM " +
                q +
                ".outbox o USING info "
                "WHERE o.id = info.id RETURNING o.id, o.message_id, o.topic, o.key, "
                "o.payload, o.headers, o.created_at, o.available_at, o.expires_at, "
                "info.reason, info.code) INSERT INTO " +
                q + ".parked (" + k_copied_columns + ", reason, error_code) SELECT " +
                k_copied_columns + ", reason, code FROM moved" + parked_conflict(q),
            internal::array_literal(park_ids), internal::array_literal(reasons),
            internal::array_literal(codes));
    }
    if (request.before_commit) request.before_commit();
    tx.commit();
    return mark_outcome::marked;
}

}  // namespace ferry::relay::detail
