// The reconciliation job. Producer-side kinds are computed inside PostgreSQL (INSERT ... SELECT
// into reconcile_item), so they cost no client memory. The consumer side may be another database
// or Redis, so "missing" walks the published ledger in keyset chunks and asks the consumer side
// about one chunk at a time (one SQL query, one Redis pipeline): memory is O(chunk_size).
#include "ferry/reconcile/reconcile.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <unordered_set>

#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pg_array.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/internal/snapshot_sql.hpp"
#include "ferry/reconcile/retention.hpp"
#include "ferry/wal/slot.hpp"
#include "redis_lookup.hpp"

namespace ferry::reconcile {
namespace {

using internal::array_literal;
using internal::exec;

/// Every reconciliation session: named in pg_stat_activity, and no statement runs for ever.
internal::session_settings session(const reconcile_options& o) {
    internal::session_settings s;
    s.connect_timeout = o.connect_timeout;
    s.statement_timeout = std::chrono::minutes(10);
    s.application_name = "ferry-reconcile";
    return s;
}

std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()); }

constexpr const char* rfc3339 =
    "to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

std::string ts(const std::string& expr) {
    char buf[256];
    std::snprintf(buf, sizeof buf, rfc3339, expr.c_str());
    return buf;
}

struct ledger_row {
    std::string id, topic, key, created_at, published_at;
    /// published_at at full precision (timestamptz text): finds this copy again.
    std::string published_exact;
};

class job {
public:
    job(const reconcile_options& o, pqxx::connection& conn, std::int64_t run_id, std::string ws,
        std::string we)
        : _o(o),
          _conn(conn),
          _q(quote_identifier(o.schema, "reconcile.schema")),
          _run(run_id),
          _ws(std::move(ws)),
          _we(std::move(we)) {}

    void producer_side() {
        pqxx::work tx{_conn};
        const std::string ins = "INSERT INTO " + _q +
                                ".reconcile_item (run_id, kind, group_id, message_id, topic, key, "
                                "created_at, event_at, detail, action) ";
        // Committed, never published: the relay is down, fenced off, or cannot keep up.
        (void)exec(tx,
                   ins +
                       "SELECT $1, 'stuck_unpublished', NULL, message_id, topic, key, "
                       "created_at, available_at, 'unpublished for ' || "
                       "round(extract(epoch FROM clock_timestamp() - available_at)) || "
                       "' s', 'none' FROM " +
                       _q +
                       ".outbox o WHERE available_at < "
                       "clock_timestamp() - $2::bigint * interval '1 millisecond' AND " +
                       internal::snapshot_unfinished(_q, "o") + " ON CONFLICT DO NOTHING",
                   _run, ms(_o.stuck_unpublished));
        // Undecided although its first check-back was due more than `grace` ago: neither the
        // producer nor the check-back resolved it. Halves parked in the window are reported too.
        (void)exec(tx,
                   ins +
                       "SELECT $1, 'stuck_half', NULL, message_id, topic, key, prepared_at, "
                       "coalesce(decided_at, prepared_at), CASE WHEN state = 'parked' THEN "
                       "'parked after ' || check_count || ' check-backs' ELSE "
                       "'undecided after ' || check_count || ' check-backs; last result: ' "
                       "|| coalesce(last_check_result, 'none') END, 'none' FROM " +
                       _q +
                       ".half_message WHERE (state = 'pending' AND prepared_at + "
                       "check_first_after < clock_timestamp() - $2::bigint * "
                       "interval '1 millisecond') OR (state = 'parked' AND decided_at >= "
                       "$3::timestamptz AND decided_at < $4::timestamptz) "
                       "ON CONFLICT DO NOTHING",
                   _run, ms(_o.grace), _ws, _we);
        // Parked rows wait for an operator whenever they were parked: report all of them.
        (void)exec(tx,
                   ins +
                       "SELECT $1, 'parked', NULL, message_id, topic, key, created_at, "
                       "parked_at, reason || ' [' || error_code || ']', 'none' FROM " +
                       _q + ".parked ON CONFLICT DO NOTHING",
                   _run);
        (void)exec(tx,
                   ins +
                       "SELECT $1, 'expired', NULL, message_id, topic, key, created_at, "
                       "expired_at, 'expired at ' || coalesce(expires_at::text, '?') || "
                       "' before it was published', 'none' FROM " +
                       _q +
                       ".expired WHERE expired_at >= $2::timestamptz AND expired_at < "
                       "$3::timestamptz ON CONFLICT DO NOTHING",
                   _run, _ws, _we);
        tx.commit();
    }

    // WAL mode (ADR 0070, rule 10): a committed message that is not published yet has no outbox
    // row; it waits in the WAL behind the confirmed position of the relay's slot. So the run
    // records the state of every slot registered for the schema, and a registered slot that is
    // missing, lost or unusable becomes an item `slot_lost`, with the last confirmed position on
    // record (the slot's own, else the one an earlier run recorded): the one way a committed
    // message can go unpublished in WAL mode. Nothing here creates or repairs a slot.
    void wal_side() {
        std::vector<std::string> names;
        std::string database;
        {
            pqxx::nontransaction tx{_conn};
            for (const auto& r :
                 exec(tx, "SELECT slot_name FROM " + _q + ".wal_slot ORDER BY slot_name")) {
                names.push_back(r[0].as<std::string>());
            }
            database = exec(tx, "SELECT current_database()::text")[0][0].as<std::string>();
        }
        struct problem {
            std::string slot;
            std::string what;
            std::string confirmed;  // empty: the slot has none
        };
        std::vector<problem> problems;
        auto slots = nlohmann::json::array();
        for (const auto& name : names) {
            const auto info = wal::inspect_slot(_conn, name);
            nlohmann::json s = {{"slot", name}};
            std::string state = "ok", what, confirmed;
            if (!info) {
                state = "missing";
                what = "missing (dropped, or never created in this database)";
            } else {
                s["wal_status"] = info->wal_status;
                s["active"] = info->active;
                if (info->confirmed_flush_lsn) {
                    confirmed = wal::format_lsn(*info->confirmed_flush_lsn);
                    s["confirmed_flush_lsn"] = confirmed;
                }
                if (info->lag_bytes) s["lag_bytes"] = *info->lag_bytes;
                if (info->safe_wal_size) s["safe_wal_size"] = *info->safe_wal_size;
                if (info->plugin != "pgoutput" || info->database != database) {
                    state = "unusable";
                    what = "unusable: a slot of plugin \"" + info->plugin + "\" in database \"" +
                           info->database + "\", not a pgoutput slot of this database";
                } else if (info->lost()) {
                    state = "lost";
                    what = info->wal_status == "lost"
                               ? "lost (wal_status lost: PostgreSQL removed WAL it still needed)"
                               : "without a confirmed position";
                }
            }
            s["state"] = state;
            slots.push_back(std::move(s));
            if (state != "ok") problems.push_back({name, what, confirmed});
        }
        pqxx::work tx{_conn};
        (void)exec(tx, "UPDATE " + _q + ".reconcile_run SET wal_slots = $2::jsonb WHERE id = $1",
                   _run, slots.dump());
        for (const auto& p : problems) {
            (void)exec(
                tx,
                "WITH known AS (SELECT 1 AS pri, $3::text AS lsn, clock_timestamp() AS at WHERE $3 "
                "<> '' UNION ALL (SELECT 2, e->>'confirmed_flush_lsn', r.started_at FROM " +
                    _q +
                    ".reconcile_run AS r, jsonb_array_elements(r.wal_slots) AS e WHERE r.id < $1 "
                    "AND e->>'slot' = $2 AND e ? 'confirmed_flush_lsn' ORDER BY r.id DESC LIMIT "
                    "1)), last AS (SELECT lsn, at FROM known ORDER BY pri LIMIT 1) INSERT INTO " +
                    _q +
                    ".reconcile_item (run_id, kind, event_at, detail) SELECT $1, 'slot_lost', "
                    "last.at, 'WAL slot ' || $2 || ' is ' || $4 || '; ' || CASE WHEN last.lsn IS "
                    "NULL THEN 'no confirmed position is on record, so any message committed "
                    "since the slot was registered may be unpublished' ELSE 'messages committed "
                    "after its last confirmed position ' || last.lsn || ' may never be "
                    "published' END || '; see docs/operations.md, \"WAL slot lost\"' FROM (SELECT "
                    "1) AS one LEFT JOIN last ON true",
                _run, p.slot, p.confirmed, p.what);
        }
        tx.commit();
    }

    void consumer_side(const group_options& g) {
        std::unique_ptr<pqxx::connection> cdb_holder;
        pqxx::connection* cdb_ptr = nullptr;
        std::string cq;
        if (!g.dsn.empty()) {
            cdb_holder = internal::connect_unique(g.dsn, session(_o), "reconcile");
            cdb_ptr = cdb_holder.get();
            cq = quote_identifier(g.schema, "reconcile.groups.schema");
        }
        std::optional<redis_lookup> redis;
        if (!g.redis_url.empty()) redis.emplace(g.redis_url, g.redis_key_prefix, g.group);
        const bool use_inbox = cdb_ptr != nullptr && !g.redis_only;
        if (!use_inbox && !redis) {
            throw ferry::error(error_kind::permanent, "reconcile.group",
                               "group " + g.group +
                                   ": neither an inbox database nor Redis is "
                                   "configured, nothing tells what it processed",
                               "reconcile.groups");
        }
        const std::string topics = array_literal(g.topics);
        const bool all_topics = g.topics.empty();

        if (cdb_ptr) dead_letters(g, *cdb_ptr, cq, topics, all_topics);

        redis_lookup* rl = redis ? &*redis : nullptr;
        walk_published_rows(g, cdb_ptr, cq, use_inbox, rl, topics, all_topics);
        walk_published_batches(g, cdb_ptr, cq, use_inbox, rl, topics, all_topics);
        duplicates(g, cdb_ptr, cq, use_inbox, redis ? &*redis : nullptr, topics, all_topics);
    }

    /// The per-message ledger rows of `published` (written before migration 0090, or by hand)
    /// in the window, in keyset chunks of (published_at, message_id).
    void walk_published_rows(const group_options& g, pqxx::connection* cdb, const std::string& cq,
                             bool use_inbox, redis_lookup* redis, const std::string& topics,
                             bool all_topics) {
        std::string last_ts = _ws;
        std::string last_id = "00000000-0000-0000-0000-000000000000";
        for (;;) {
            std::vector<ledger_row> chunk;
            {
                pqxx::read_transaction tx{_conn};
                const auto r = exec(
                    // Columns qualified: an unqualified ORDER BY published_at would sort by
                    // the text output column of the same name, forcing a full scan per chunk.
                    tx,
                    "SELECT p.message_id::text, p.topic, p.key, " + ts("p.created_at") + ", " +
                        ts("p.published_at") + ", p.published_at::text FROM " + _q +
                        ".published p WHERE p.published_at >= $1::timestamptz AND "
                        "p.published_at < $2::timestamptz AND (p.published_at, p.message_id) "
                        "> ($1::timestamptz, $3::uuid) AND ($4 OR p.topic = ANY($5::text[])) "
                        "ORDER BY p.published_at, p.message_id LIMIT $6",
                    last_ts, _we, last_id, all_topics, topics, _o.chunk_size);
                chunk.reserve(r.size());
                for (const auto& row : r) {
                    chunk.push_back({row[0].as<std::string>(), row[1].as<std::string>(),
                                     row[2].as<std::string>(), row[3].as<std::string>(),
                                     row[4].as<std::string>(), row[5].as<std::string>()});
                    last_ts = row[5].as<std::string>();
                    last_id = chunk.back().id;
                }
            }
            if (chunk.empty()) break;
            _scanned += static_cast<std::int64_t>(chunk.size());
            check_chunk(g, chunk, cdb, cq, use_inbox, redis);
            if (static_cast<std::int64_t>(chunk.size()) < _o.chunk_size) break;
        }
    }

    /// The batch rows of `published_batch` (migration 0090, ADR 0011) in the window, whole
    /// batches at a time in keyset order of (published_at, batch_id), about chunk_size
    /// messages a chunk. Each batch is expanded once; rows of other topics come back flagged
    /// so that a chunk without a match still moves the keyset on.
    void walk_published_batches(const group_options& g, pqxx::connection* cdb,
                                const std::string& cq, bool use_inbox, redis_lookup* redis,
                                const std::string& topics, bool all_topics) {
        std::string last_ts = _ws;
        std::string last_batch = "0";
        for (;;) {
            std::vector<ledger_row> chunk;
            bool any = false;
            {
                pqxx::read_transaction tx{_conn};
                const auto r = exec(
                    tx,
                    "SELECT x.message_id::text, x.topic, x.key, " + ts("x.created_at") + ", " +
                        ts("b.published_at") +
                        ", b.published_at::text, b.batch_id::text, ($5 OR x.topic = "
                        "ANY($6::text[])) FROM (SELECT s.* FROM (SELECT b.published_at, "
                        "b.batch_id, b.message_ids, b.topics, b.keys, b.created_ats, "
                        "sum(b.message_count) OVER (ORDER BY b.published_at, b.batch_id ROWS "
                        "UNBOUNDED PRECEDING) - b.message_count AS before FROM " +
                        _q +
                        ".published_batch b WHERE b.published_at >= $1::timestamptz AND "
                        "b.published_at < $2::timestamptz AND (b.published_at, b.batch_id) > "
                        "($1::timestamptz, $3::bigint) ORDER BY b.published_at, b.batch_id "
                        "LIMIT $4) AS s WHERE s.before < $4) AS b CROSS JOIN LATERAL "
                        "unnest(b.message_ids, b.topics, b.keys, b.created_ats) WITH ORDINALITY "
                        "AS x(message_id, topic, key, created_at, n) ORDER BY b.published_at, "
                        "b.batch_id, x.n",
                    last_ts, _we, last_batch, _o.chunk_size, all_topics, topics);
                for (const auto& row : r) {
                    any = true;
                    last_ts = row[5].as<std::string>();
                    last_batch = row[6].as<std::string>();
                    if (!row[7].as<bool>()) continue;
                    chunk.push_back({row[0].as<std::string>(), row[1].as<std::string>(),
                                     row[2].as<std::string>(), row[3].as<std::string>(),
                                     row[4].as<std::string>(), row[5].as<std::string>()});
                }
            }
            if (!any) break;
            if (chunk.empty()) continue;
            _scanned += static_cast<std::int64_t>(chunk.size());
            check_chunk(g, chunk, cdb, cq, use_inbox, redis);
        }
    }

    std::int64_t scanned() const { return _scanned; }
    std::int64_t redriven() const { return _redriven; }

private:
    /// Ids of `ids` the consumer side knows: applied (inbox or Redis "done"), waiting in retry,
    /// or dead-lettered.
    std::unordered_set<std::string> known(const group_options& g,
                                          const std::vector<std::string>& ids,
                                          pqxx::connection* cdb, const std::string& cq,
                                          bool use_inbox, redis_lookup* redis) {
        std::unordered_set<std::string> out;
        if (cdb) {
            pqxx::read_transaction tx{*cdb};
            std::string sql = "SELECT m::text FROM unnest($2::uuid[]) AS m WHERE ";
            if (use_inbox) {
                sql += "EXISTS (SELECT 1 FROM " + cq +
                       ".inbox i WHERE i.group_id = $1 AND i.message_id = m) OR ";
            }
            sql +=
                "EXISTS (SELECT 1 FROM " + cq +
                ".retry r WHERE r.group_id = $1 AND r.message_id = m) OR EXISTS (SELECT 1 FROM " +
                cq + ".dead_letter d WHERE d.group_id = $1 AND d.message_id = m)";
            for (const auto& row : exec(tx, sql, g.group, array_literal(ids))) {
                out.insert(row[0].as<std::string>());
            }
        }
        if (redis && !use_inbox) {
            std::vector<std::string> rest;
            for (const auto& id : ids) {
                if (!out.count(id)) rest.push_back(id);
            }
            const auto done = redis->done(rest);
            for (std::size_t i = 0; i < rest.size(); ++i) {
                if (done[i]) out.insert(rest[i]);
            }
        }
        return out;
    }

    void check_chunk(const group_options& g, const std::vector<ledger_row>& chunk,
                     pqxx::connection* cdb, const std::string& cq, bool use_inbox,
                     redis_lookup* redis) {
        std::vector<std::string> ids;
        ids.reserve(chunk.size());
        for (const auto& r : chunk) ids.push_back(r.id);
        const auto seen = known(g, ids, cdb, cq, use_inbox, redis);
        std::vector<const ledger_row*> missing;
        std::set<std::string> once;
        for (const auto& r : chunk) {
            if (!seen.count(r.id) && once.insert(r.id).second) missing.push_back(&r);
        }
        if (missing.empty()) return;

        pqxx::work tx{_conn};
        std::vector<std::string> mids;
        for (const auto* m : missing) mids.push_back(m->id);
        // Published again after the window (a re-drive of an earlier run, or a relay retry):
        // in flight, not missing. Already back in the outbox: a re-drive is pending.
        std::set<std::string> in_flight, pending;
        for (const auto& row :
             exec(tx,
                  // The ledger after the window is expanded once (a hashed subplan), not
                  // once per id: batch rows have no message_id index (ADR 0011).
                  "SELECT m::text, m IN (SELECT p.message_id FROM " + _q +
                      ".ledger p WHERE p.published_at >= $2::timestamptz AND p.message_id = "
                      "ANY($1::uuid[])), " +
                      _q + ".outbox_pending(m) FROM unnest($1::uuid[]) AS m",
                  array_literal(mids), _we)) {
            if (row[1].as<bool>())
                in_flight.insert(row[0].as<std::string>());
            else if (row[2].as<bool>())
                pending.insert(row[0].as<std::string>());
        }
        std::vector<std::string> to_redrive, redrive_at;
        std::vector<std::string> i_id, i_topic, i_key, i_created, i_pub, i_action;
        for (const auto* m : missing) {
            if (in_flight.count(m->id)) continue;
            std::string action = "report_only";
            if (pending.count(m->id)) {
                action = "redrive_pending";
            } else if (_o.redrive) {
                if (_redriven + static_cast<std::int64_t>(to_redrive.size()) < _o.redrive_cap) {
                    to_redrive.push_back(m->id);
                    redrive_at.push_back(m->published_exact);
                    action = "redrive";  // resolved below
                } else {
                    action = "cap_reached";
                }
            }
            i_id.push_back(m->id);
            i_topic.push_back(m->topic);
            i_key.push_back(m->key);
            i_created.push_back(m->created_at);
            i_pub.push_back(m->published_at);
            i_action.push_back(action);
        }
        std::set<std::string> redriven_now;
        if (!to_redrive.empty()) {
            // The original message_id, payload and headers queued again through requeue()
            // (migration 0074: an outbox row in polling mode, a logical decoding message in WAL
            // mode): consumers' dedup makes a second delivery harmless; the key's later
            // messages are not held. The payload comes from the copy the walk found, looked
            // up by its exact published_at (an index probe; batch rows have no message_id
            // index, ADR 0011).
            for (const auto& row :
                 exec(tx,
                      "SELECT l.message_id::text FROM (SELECT DISTINCT ON (message_id) "
                      "message_id, topic, key, payload, headers, created_at FROM " +
                          _q +
                          ".ledger WHERE message_id = ANY($1::uuid[]) AND published_at = "
                          "ANY($2::timestamptz[]) AND payload IS NOT NULL ORDER BY message_id, "
                          "published_at DESC) AS l "
                          "WHERE " +
                          _q +
                          ".requeue(l.message_id, l.topic, l.key, l.payload, l.headers, "
                          "clock_timestamp())",
                      array_literal(to_redrive), array_literal(redrive_at))) {
                redriven_now.insert(row[0].as<std::string>());
            }
            _redriven += static_cast<std::int64_t>(redriven_now.size());
        }
        for (std::size_t i = 0; i < i_id.size(); ++i) {
            if (i_action[i] == "redrive") {
                i_action[i] = redriven_now.count(i_id[i]) ? "redriven" : "no_payload_in_ledger";
            }
        }
        if (!i_id.empty()) {
            (void)exec(tx,
                       "INSERT INTO " + _q +
                           ".reconcile_item (run_id, kind, group_id, "
                           "message_id, topic, key, created_at, event_at, detail, action) SELECT "
                           "$1, 'missing', $2, t.id, t.topic, t.key, t.created, t.pub, "
                           "'published, but not processed, not in retry and not dead-lettered', "
                           "t.action FROM unnest($3::uuid[], $4::text[], $5::text[], "
                           "$6::timestamptz[], $7::timestamptz[], $8::text[]) AS t(id, topic, "
                           "key, created, pub, action) ON CONFLICT DO NOTHING",
                       _run, g.group, array_literal(i_id), array_literal(i_topic),
                       array_literal(i_key), array_literal(i_created), array_literal(i_pub),
                       array_literal(i_action));
        }
        tx.commit();
    }

    /// Messages published more than once in the window that the group applied: duplicates the
    /// consumer absorbed (a relay crash between the Kafka ack and the mark, or a re-drive).
    void duplicates(const group_options& g, pqxx::connection* cdb, const std::string& cq,
                    bool use_inbox, redis_lookup* redis, const std::string& topics,
                    bool all_topics) {
        std::string last = "00000000-0000-0000-0000-000000000000";
        for (;;) {
            std::vector<ledger_row> rows;
            std::vector<std::string> counts;
            {
                pqxx::read_transaction tx{_conn};
                for (const auto& row :
                     exec(tx,
                          "SELECT p.message_id::text, min(p.topic), min(p.key), " +
                              ts("min(p.created_at)") + ", " + ts("max(p.published_at)") +
                              ", count(*) FROM " + _q +
                              ".ledger p WHERE p.published_at >= $1::timestamptz AND "
                              "p.published_at < $2::timestamptz AND p.message_id > $3::uuid "
                              "AND ($4 OR p.topic = ANY($5::text[])) GROUP BY p.message_id "
                              "HAVING count(*) > 1 ORDER BY p.message_id LIMIT $6",
                          _ws, _we, last, all_topics, topics, _o.chunk_size)) {
                    rows.push_back({row[0].as<std::string>(), row[1].as<std::string>(),
                                    row[2].as<std::string>(), row[3].as<std::string>(),
                                    row[4].as<std::string>(), std::string()});
                    counts.push_back(row[5].as<std::string>());
                    last = rows.back().id;
                }
            }
            if (rows.empty()) return;
            std::vector<std::string> ids;
            for (const auto& r : rows) ids.push_back(r.id);
            std::unordered_set<std::string> applied;
            if (use_inbox) {
                pqxx::read_transaction tx{*cdb};
                for (const auto& row :
                     exec(tx,
                          "SELECT message_id::text FROM " + cq +
                              ".inbox WHERE group_id = $1 AND message_id = ANY($2::uuid[])",
                          g.group, array_literal(ids))) {
                    applied.insert(row[0].as<std::string>());
                }
            } else if (redis) {
                const auto done = redis->done(ids);
                for (std::size_t i = 0; i < ids.size(); ++i) {
                    if (done[i]) applied.insert(ids[i]);
                }
            }
            std::vector<std::string> i_id, i_topic, i_key, i_created, i_pub, i_detail;
            for (std::size_t i = 0; i < rows.size(); ++i) {
                if (!applied.count(rows[i].id)) continue;  // "missing" covers it
                i_id.push_back(rows[i].id);
                i_topic.push_back(rows[i].topic);
                i_key.push_back(rows[i].key);
                i_created.push_back(rows[i].created_at);
                i_pub.push_back(rows[i].published_at);
                i_detail.push_back("published " + counts[i] + " times, applied once" +
                                   (use_inbox ? "" : " (Redis only: see ADR 0005)"));
            }
            if (!i_id.empty()) {
                pqxx::work tx{_conn};
                (void)exec(tx,
                           "INSERT INTO " + _q +
                               ".reconcile_item (run_id, kind, group_id, "
                               "message_id, topic, key, created_at, event_at, detail, action) "
                               "SELECT $1, 'duplicate_absorbed', $2, t.id, t.topic, t.key, "
                               "t.created, t.pub, t.detail, 'none' FROM unnest($3::uuid[], "
                               "$4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[], "
                               "$8::text[]) AS t(id, topic, key, created, pub, detail) "
                               "ON CONFLICT DO NOTHING",
                           _run, g.group, array_literal(i_id), array_literal(i_topic),
                           array_literal(i_key), array_literal(i_created), array_literal(i_pub),
                           array_literal(i_detail));
                tx.commit();
            }
            if (static_cast<std::int64_t>(rows.size()) < _o.chunk_size) return;
        }
    }

    /// Unresolved dead letters of the group (not replayed), copied in chunks by id.
    void dead_letters(const group_options& g, pqxx::connection& cdb, const std::string& cq,
                      const std::string& topics, bool all_topics) {
        (void)topics;
        (void)all_topics;  // dead letters carry the Kafka topic; every one of the group counts
        std::int64_t last = 0;
        for (;;) {
            std::vector<std::string> i_id, i_topic, i_key, i_at, i_detail;
            {
                pqxx::read_transaction tx{cdb};
                for (const auto& row :
                     exec(tx,
                          "SELECT id, coalesce(message_id::text, ''), topic, "
                          "coalesce(key, ''), " +
                              ts("dead_at") +
                              ", reason || ' (attempts ' "
                              "|| attempts || ', ' || topic || '/' || partition || '@' || "
                              "\"offset\" || ')' FROM " +
                              cq +
                              ".dead_letter WHERE group_id = $1 "
                              "AND replayed_at IS NULL AND id > $2 ORDER BY id LIMIT $3",
                          g.group, last, _o.chunk_size)) {
                    last = row[0].as<std::int64_t>();
                    i_id.push_back(row[1].as<std::string>());
                    i_topic.push_back(row[2].as<std::string>());
                    i_key.push_back(row[3].as<std::string>());
                    i_at.push_back(row[4].as<std::string>());
                    i_detail.push_back(row[5].as<std::string>());
                }
            }
            if (i_id.empty()) return;
            pqxx::work tx{_conn};
            (void)exec(tx,
                       "INSERT INTO " + _q +
                           ".reconcile_item (run_id, kind, group_id, "
                           "message_id, topic, key, event_at, detail, action) SELECT $1, "
                           "'dead_lettered', $2, nullif(t.id, '')::uuid, t.topic, t.key, t.at, "
                           "t.detail, 'none' FROM unnest($3::text[], $4::text[], $5::text[], "
                           "$6::timestamptz[], $7::text[]) AS t(id, topic, key, at, detail) "
                           "ON CONFLICT DO NOTHING",
                       _run, g.group, array_literal(i_id), array_literal(i_topic),
                       array_literal(i_key), array_literal(i_at), array_literal(i_detail));
            tx.commit();
            if (static_cast<std::int64_t>(i_id.size()) < _o.chunk_size) return;
        }
    }

    const reconcile_options& _o;
    pqxx::connection& _conn;
    std::string _q;
    std::int64_t _run;
    std::string _ws, _we;
    std::int64_t _scanned = 0;
    std::int64_t _redriven = 0;
};

}  // namespace

const std::vector<std::string>& kinds() {
    static const std::vector<std::string> k{
        "missing",       "stuck_unpublished",  "stuck_half", "parked",   "expired",
        "dead_lettered", "duplicate_absorbed", "redriven",   "slot_lost"};
    return k;
}

std::string scope_of(const reconcile_options& o) {
    std::vector<std::string> names;
    for (const auto& g : o.groups) names.push_back(g.group);
    std::sort(names.begin(), names.end());
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ",") + n;
    return s;
}

run_result run(const reconcile_options& o) {
    if (o.chunk_size <= 0 || o.window.count() <= 0 || o.grace.count() < 0 || o.redrive_cap < 0) {
        throw ferry::error(error_kind::permanent, "reconcile.options",
                           "chunk_size and window must be positive, grace and redrive_cap not "
                           "negative",
                           "reconcile");
    }
    const std::string q = quote_identifier(o.schema, "reconcile.schema");
    run_result result;
    try {
        const auto conn_holder = internal::connect_unique(o.dsn, session(o), "reconcile");
        auto& conn = *conn_holder;
        // Session lock, keyed on the schema: held for the whole run, released when this
        // connection closes (also if the process dies), so a crashed run never blocks the next.
        {
            pqxx::nontransaction nt{conn};
            if (!exec(nt, "SELECT pg_try_advisory_lock(hashtext('ferry.reconcile'), hashtext($1))",
                      o.schema)[0][0]
                     .as<bool>()) {
                result.status = run_status::busy;
                spdlog::info("reconcile: another run holds the lock for schema {}; skipping",
                             o.schema);
                return result;
            }
        }
        const auto scope = scope_of(o);
        {
            pqxx::work tx{conn};
            const auto r =
                exec(tx,
                     "WITH w AS (SELECT clock_timestamp() - $1::bigint * interval '1 millisecond' "
                     "AS we) INSERT INTO " +
                         q +
                         ".reconcile_run (scope, window_start, window_end, "
                         "redrive, owner) SELECT $2, we - $3::bigint * interval '1 millisecond', "
                         "we, $4, "
                         "$5 FROM w RETURNING id, window_start::text, window_end::text, " +
                         ts("window_start") + ", " + ts("window_end"),
                     ms(o.grace), scope, ms(o.window), o.redrive, o.owner);
            tx.commit();
            result.run_id = r[0][0].as<std::int64_t>();
            result.window_start = r[0][3].as<std::string>();
            result.window_end = r[0][4].as<std::string>();
            job j(o, conn, result.run_id, r[0][1].as<std::string>(), r[0][2].as<std::string>());
            try {
                j.producer_side();
                j.wal_side();
                for (const auto& g : o.groups) j.consumer_side(g);
            } catch (const std::exception& e) {
                try {
                    pqxx::work ftx{conn};
                    (void)exec(ftx,
                               "UPDATE " + q +
                                   ".reconcile_run SET status = 'failed', "
                                   "finished_at = clock_timestamp(), error = $2 WHERE id = $1",
                               result.run_id, std::string(e.what()));
                    ftx.commit();
                } catch (...) {
                }
                throw;
            }
            result.scanned = j.scanned();
            result.redriven = j.redriven();
        }
        pqxx::work tx{conn};
        for (const auto& k : kinds()) result.counts[k] = 0;
        for (const auto& row : exec(tx,
                                    "SELECT kind, count(*) FROM " + q +
                                        ".reconcile_item WHERE run_id = $1 GROUP BY kind",
                                    result.run_id)) {
            result.counts[row[0].as<std::string>()] = row[1].as<std::int64_t>();
        }
        result.counts["redriven"] = result.redriven;
        std::string counts = "{";
        for (const auto& [k, v] : result.counts) {
            counts += (counts.size() > 1 ? ",\"" : "\"") + k + "\":" + std::to_string(v);
        }
        counts += "}";
        (void)exec(tx,
                   "UPDATE " + q +
                       ".reconcile_run SET status = 'succeeded', finished_at = "
                       "clock_timestamp(), scanned = $2, redriven = $3, counts = $4::jsonb "
                       "WHERE id = $1",
                   result.run_id, result.scanned, result.redriven, counts);
        tx.commit();
        // Reports past reconcile.retention, in bounded batches (retention.hpp): never one
        // cascading DELETE holding the report tables for the whole backlog.
        constexpr long long k_batch = 5000;
        for (const auto& t : report_retention(o.schema, o.retention)) {
            for (long long n = k_batch; n == k_batch;) {
                pqxx::work ptx{conn};
                n = t.prune_batch(ptx, k_batch);
                ptx.commit();
            }
        }
        spdlog::info("reconcile: run {} window [{}, {}) scanned {} ledger rows, {} re-driven",
                     result.run_id, result.window_start, result.window_end, result.scanned,
                     result.redriven);
        return result;
    } catch (...) {
        internal::rethrow_translated("reconcile", "reconcile");
    }
}

}  // namespace ferry::reconcile
