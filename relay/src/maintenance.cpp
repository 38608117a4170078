// The relay's maintenance thread: the outbox gauges and the published ledger's retention, on
// their own thread and session, so that slow statements over a large backlog never delay lease
// renewal (issue 10, hole 4).

#include "maintenance.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <limits>
#include <utility>
#include <vector>

#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/internal/snapshot_sql.hpp"
#include "ferry/wal/slot.hpp"
#include "log_text.hpp"

namespace ferry::relay::detail {

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;
using clock = std::chrono::steady_clock;

namespace {

std::string utc_literal(std::int64_t epoch_s) {
    const std::time_t t = static_cast<std::time_t>(epoch_s);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[40];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S+00", &tm);
    return buf;
}

// One DDL statement of the ledger's maintenance. A lock that readers hold past lock_timeout
// (a long reconciliation scan) defers the work to the next cycle instead of queueing the
// relay's marks behind it. Returns false when deferred.
bool ledger_ddl(pqxx::connection& conn, const std::string& sql) {
    try {
        pqxx::work tx{conn};
        tx.exec(sql);
        tx.commit();
        return true;
    } catch (const pqxx::broken_connection&) {
        throw;
    } catch (const pqxx::sql_error& e) {
        spdlog::warn("event=ledger_ddl_deferred sqlstate={} error=\"{}\"", e.sqlstate(),
                     one_line(e.what()));
        return false;
    }
}

}  // namespace

maintenance::maintenance(const relay_options& options, std::string quoted_schema,
                         relay_state& state, relay_metrics& metrics, wal_metrics* wal)
    : _o(options),
      _q(std::move(quoted_schema)),
      _state(state),
      _m(metrics),
      _wal(wal),
      _session(options, metrics.pg_reconnects, "maintenance") {}

unpublished_backlog count_unpublished(pqxx::transaction_base& tx, const std::string& q,
                                      bool snapshot) {
    // Every outbox row is unpublished, except with relay.source: snapshot, which keeps published
    // rows until they are trimmed: there, the rows its positions do not call finished
    // (snapshot_unfinished(): per row, the SQL function cost 1.3 s per 200k retained rows, taken
    // from a draining relay at every refresh).
    std::string where;
    std::string min_txid = "0";
    std::int64_t after_id = std::numeric_limits<std::int64_t>::max();
    if (snapshot) {
        // Only two ranges can hold an unfinished row: ids past the lowest open epoch's after_id,
        // and txids from the lowest xmin of each group's newest snapshot (s1 while an epoch is
        // open, else s0). A row outside both is below its group's after_id and was committed
        // before that snapshot, so it is finished. A group without a position has no bound.
        const auto b = internal::exec(
            tx,
            "SELECT coalesce(min(pg_snapshot_xmin(coalesce(s1, s0)))::text, '0'), "
            "coalesce(min(after_id) FILTER (WHERE s1 IS NOT NULL), 9223372036854775807), "
            "coalesce(count(*) = max(lease_groups), false) FROM " +
                q + ".snapshot_position");
        if (b[0][2].as<bool>()) {
            min_txid = b[0][0].as<std::string>();
            after_id = b[0][1].as<std::int64_t>();
        }
        where = " WHERE (o.txid >= $1::xid8 OR o.id > $2::int8) AND " +
                internal::snapshot_unfinished(q, "o");
    }
    const std::string sql =
        "SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(o.created_at)), "
        "0)::float8 FROM " +
        q + ".outbox o" + where;
    const auto r = snapshot ? internal::exec(tx, sql, min_txid, after_id) : internal::exec(tx, sql);
    return {r[0][0].as<double>(), r[0][1].as<double>()};
}

void maintenance::refresh_stats(pqxx::connection& conn) {
    pqxx::read_transaction tx{conn};
    // Gauges are background work: a parallel scan of a large backlog would take cores from the
    // relay's own claim and mark sessions exactly when it is draining.
    tx.exec("SET LOCAL max_parallel_workers_per_gather = 0");
    const auto backlog = count_unpublished(tx, _q, _o.source == "snapshot");
    const auto r = internal::exec(
        tx,
        "SELECT (SELECT count(*) FROM " + _q + ".parked), (SELECT count(*) FROM " + _q +
            ".expired), (SELECT coalesce(max(n_dead_tup), 0) FROM pg_stat_user_tables WHERE "
            "schemaname = $1 AND relname = 'outbox')",
        _o.schema);
    _m.pending.set(backlog.pending);
    _m.oldest.set(backlog.oldest_seconds);
    _m.parked_gauge.set(r[0][0].as<double>());
    _m.expired_gauge.set(r[0][1].as<double>());
    _m.dead_tuples.set(r[0][2].as<double>());
}

// WAL mode: the slot's lag (WAL written after its confirmed position) and whether it is lost.
// A lost slot is logged once per loss, with what to do; the relay never recreates it.
void maintenance::refresh_wal_slot(pqxx::connection& conn) {
    const auto slot = wal::inspect_slot(conn, _o.wal_slot);
    const bool lost = !slot || slot->lost();
    _wal->slot_lost.set(lost ? 1 : 0);
    if (slot && slot->lag_bytes) _wal->slot_lag_bytes.set(static_cast<double>(*slot->lag_bytes));
    if (lost && !_slot_lost_logged) {
        spdlog::error(
            "event=wal_slot_lost slot={} state={} (messages committed after its last confirmed "
            "position may be unpublishable; the relay will not recreate it: see "
            "docs/operations.md, \"WAL slot lost\")",
            _o.wal_slot, slot ? slot->wal_status : std::string("missing"));
    }
    _slot_lost_logged = lost;
    // A WAL-mode relay never reads the outbox table: rows there come from a producer writing in
    // table mode (outbox.mode: table, enqueue() instead of enqueue_wal) and wait for a polling
    // relay. Say so, once per occurrence, instead of letting them sit unnoticed.
    const bool rows = _m.pending.value() > 0;
    if (rows && !_outbox_rows_logged) {
        spdlog::error(
            "event=outbox_rows_in_wal_mode rows={} (a producer writes to the outbox table while "
            "relay.source is wal: these rows are published only by a polling relay; switch the "
            "producer to outbox.mode: wal / enqueue_wal)",
            _m.pending.value());
    }
    _outbox_rows_logged = rows;
}

void maintenance::run() {
    const ms stats_period = std::max<ms>(_o.lease_ttl / 3, 100ms);
    const ms ledger_period = std::clamp<ms>(ledger_width() / 2, 500ms, 60s);
    auto last_ledger = clock::now() - 1h;
    ms backoff = 100ms;
    while (!_state.stopping()) {
        try {
            auto& conn = _session.get();
            try {
                refresh_stats(conn);
            } catch (const pqxx::broken_connection&) {
                throw;
            } catch (const std::exception& e) {
                // Typically statement_timeout over a huge backlog: the gauges go stale, the
                // ledger retention below still runs.
                spdlog::warn("event=stats_error error=\"{}\"", one_line(e.what()));
            }
            if (_wal != nullptr) refresh_wal_slot(conn);
            if (clock::now() - last_ledger >= ledger_period) {
                maintain_ledger(conn);
                last_ledger = clock::now();
            }
            backoff = 100ms;
            _state.sleep_for(std::min(stats_period, ledger_period));
        } catch (const std::exception& e) {
            _session.reset();
            spdlog::warn("event=maintenance_error error=\"{}\" retry_in_ms={}", one_line(e.what()),
                         backoff.count());
            _state.sleep_for(backoff);
            backoff = std::min<ms>(backoff * 2, 5s);
        }
    }
}

// Width of one ledger partition: a quarter of the retention, between 1 s and 1 day, so a
// row lives at most retention + width (+ one maintenance period).
ms maintenance::ledger_width() const {
    return std::clamp<ms>(
        std::chrono::duration_cast<std::chrono::seconds>(_o.published_retention / 4), 1s, 24h);
}

// Ledger retention by partitions (migration 0010, ADR 0010): create range partitions ahead
// of the database clock, drop those whose upper bound is past the retention, and trim the
// default partition (rows outside every range) with bounded deletes. One instance at a
// time (advisory lock); DDL waits at most lock_timeout for readers, then retries later.
void maintenance::maintain_ledger(pqxx::connection& conn) {
    {
        pqxx::nontransaction tx{conn};
        const auto got = internal::exec(
            tx, "SELECT pg_try_advisory_lock(hashtext('ferry.relay.ledger'), hashtext($1))",
            _o.schema);
        if (!got[0][0].as<bool>()) return;
        tx.exec("SET lock_timeout = 500");
    }
    struct unlock_guard {
        pqxx::connection& conn;
        const std::string& schema;
        ~unlock_guard() {
            try {
                pqxx::nontransaction tx{conn};
                tx.exec("SET lock_timeout = 0");
                (void)internal::exec(
                    tx, "SELECT pg_advisory_unlock(hashtext('ferry.relay.ledger'), hashtext($1))",
                    schema);
            } catch (...) {
                // A broken session releases its advisory locks itself.
            }
        }
    } unlock{conn, _o.schema};

    const std::int64_t width =
        std::chrono::duration_cast<std::chrono::seconds>(ledger_width()).count();
    const std::int64_t retention_s =
        std::chrono::duration_cast<std::chrono::seconds>(_o.published_retention).count();
    std::int64_t now_s = 0;
    {
        pqxx::nontransaction tx{conn};
        now_s = tx.exec("SELECT floor(extract(epoch FROM clock_timestamp()))::bigint")[0][0]
                    .as<std::int64_t>();
    }
    int dropped = 0;
    int created = 0;
    long trimmed = 0;
    // The ledger's two tables (migration 0090): a row per batch, and the per-message rows of
    // earlier versions. Both are partitioned the same way and kept for the same time.
    for (const std::string table : {"published_batch", "published"}) {
        const std::string prefix = table + "_p";
        std::vector<std::pair<std::int64_t, std::string>> ranged;  // (upper bound, name)
        std::int64_t max_upper = 0;
        {
            pqxx::nontransaction tx{conn};
            const auto r = internal::exec(
                tx,
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = "
                "to_regclass($1) AND n.nspname = $2 AND c.relname ~ ('^' || $3 || "
                "'[0-9]+_[0-9]+$')",
                _q + "." + table, _o.schema, prefix);
            for (const auto& row : r) {
                const auto name = row[0].as<std::string>();
                const std::int64_t upper = std::stoll(name.substr(name.rfind('_') + 1));
                ranged.emplace_back(upper, name);
                max_upper = std::max(max_upper, upper);
            }
        }
        // Drop partitions wholly past the retention.
        for (const auto& [upper, name] : ranged) {
            if (upper > now_s - retention_s) continue;
            if (!ledger_ddl(conn, "DROP TABLE IF EXISTS " + _q + "." +
                                      quote_identifier(name, "partition"))) {
                break;
            }
            ++dropped;
        }
        // Create partitions up to three widths ahead. After a gap (no partition covers now),
        // start at the next boundary a second ahead: rows already in the default partition for
        // the current range would make the creation fail.
        std::int64_t from = max_upper;
        if (from <= now_s) from = ((now_s + 1) / width + 1) * width;
        while (from < now_s + 3 * width) {
            const std::int64_t to = from + width;
            const auto name = prefix + std::to_string(from) + "_" + std::to_string(to);
            if (!ledger_ddl(conn, "CREATE TABLE IF NOT EXISTS " + _q + "." +
                                      quote_identifier(name, "partition") + " PARTITION OF " + _q +
                                      "." + table + " FOR VALUES FROM ('" + utc_literal(from) +
                                      "') TO ('" + utc_literal(to) + "')")) {
                break;
            }
            ++created;
            from = to;
        }
        // Rows outside every range: bounded deletes, as before partitioning.
        for (int i = 0; i < 20; ++i) {
            pqxx::work tx{conn};
            const auto r =
                internal::exec(tx,
                               "DELETE FROM " + _q + "." + table +
                                   "_default WHERE ctid = ANY(ARRAY(SELECT ctid "
                                   "FROM " +
                                   _q + "." + table +
                                   "_default WHERE published_at < clock_timestamp() - $1::bigint * "
                                   "interval '1 millisecond' LIMIT 5000))",
                               std::to_string(_o.published_retention.count()));
            tx.commit();
            trimmed += static_cast<long>(r.affected_rows());
            if (r.affected_rows() < 5000) break;
        }
    }
    if (dropped > 0 || created > 0 || trimmed > 0) {
        spdlog::debug("event=ledger_maintained dropped={} created={} trimmed_default={}", dropped,
                      created, trimmed);
    }
    if (_o.source == "snapshot") trim_snapshot_outbox(conn);
}

// relay.source: snapshot keeps published rows in the outbox (they are its ledger's content) and
// trims them here, with its pointer ledger, once they are older than published_retention:
// bounded deletes of rows every group's position calls finished. A row is finished for its
// group when its transaction is visible in the group's s0; below the lowest s0's xmin every row
// is. Nothing is trimmed until every group of this configuration has a position written with
// it (a group that never ran has published nothing). Called under the ledger's advisory lock.
void maintenance::trim_snapshot_outbox(pqxx::connection& conn) {
    std::string below;
    {
        pqxx::nontransaction tx{conn};
        const auto r = internal::exec(tx,
                                      "SELECT count(*) = $1 AND bool_and(lease_groups = $1), "
                                      "min(pg_snapshot_xmin(s0))::text FROM " +
                                          _q + ".snapshot_position WHERE lease_group < $1",
                                      _o.lease_groups);
        if (r[0][0].is_null() || !r[0][0].as<bool>() || r[0][1].is_null()) return;
        below = r[0][1].as<std::string>();
    }
    const auto retention_ms = std::to_string(_o.published_retention.count());
    long rows = 0, batches = 0;
    for (int i = 0; i < 20; ++i) {
        pqxx::work tx{conn};
        const auto r = internal::exec(
            tx,
            "DELETE FROM " + _q + ".outbox WHERE id = ANY(ARRAY(SELECT id FROM " + _q +
                ".outbox WHERE txid < $1::xid8 AND created_at < clock_timestamp() - "
                "$2::bigint * interval '1 millisecond' LIMIT 5000))",
            below, retention_ms);
        tx.commit();
        rows += static_cast<long>(r.affected_rows());
        if (r.affected_rows() < 5000) break;
    }
    for (int i = 0; i < 20; ++i) {
        pqxx::work tx{conn};
        const auto r = internal::exec(
            tx,
            "DELETE FROM " + _q +
                ".snapshot_batch WHERE batch_id = ANY(ARRAY(SELECT batch_id "
                "FROM " +
                _q +
                ".snapshot_batch WHERE published_at < clock_timestamp() - $1::bigint * "
                "interval '1 millisecond' LIMIT 5000))",
            retention_ms);
        tx.commit();
        batches += static_cast<long>(r.affected_rows());
        if (r.affected_rows() < 5000) break;
    }
    if (rows > 0 || batches > 0) {
        spdlog::debug("event=snapshot_outbox_trimmed rows={} ledger_batches={}", rows, batches);
    }
}

}  // namespace ferry::relay::detail
