// Retention of the outbox module's tables and the runner for every module's (retention.hpp).

#include "ferry/outbox/retention.hpp"

#include <utility>

#include "ferry/common/error.hpp"
#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/internal/retention_sql.hpp"

namespace ferry::outbox {

namespace {

const char* const k_rows_help = "Rows in a table with a retention window (or measured only).";
const char* const k_oldest_help =
    "Age of the oldest row of a retained table, by the database clock.";
const char* const k_deleted_help = "Rows the retention job deleted, by table.";

}  // namespace

retention::table half_message_retention(const std::string& schema,
                                        std::chrono::milliseconds window) {
    // Only decided rows: pending ones wait for their producer or a check-back, parked ones for
    // an operator. Index: half_message_decided_idx (0080).
    return internal::retained_table(
        quote_identifier(schema, "postgres.schema"), "half_message", "retention.half_message",
        window, "message_id",
        "state IN ('committed', 'rolled_back') AND " + internal::older_than_window("decided_at"),
        "prepared_at");
}

retention::table expired_retention(const std::string& schema, std::chrono::milliseconds window) {
    return internal::retained_table(quote_identifier(schema, "postgres.schema"), "expired",
                                    "retention.expired", window, "id",
                                    internal::older_than_window("expired_at"), "expired_at");
}

retention::table parked_measure(const std::string& schema) {
    // No window: retry and discard delete the row.
    auto t = internal::retained_table(quote_identifier(schema, "postgres.schema"), "parked", "",
                                      std::chrono::milliseconds(0), "id", "", "parked_at");
    t.prune_batch = nullptr;
    return t;
}

retention_runner::retention_runner(std::vector<retention::table> tables,
                                   retention_runner_options options)
    : _tables(std::move(tables)), _o(std::move(options)) {
    if (_o.batch < 1) {
        throw ferry::error(error_kind::permanent, "retention.invalid",
                           "retention.batch: must be at least 1", "retention.batch");
    }
    auto& m = ferry::metrics::or_process(_o.metrics);
    for (const auto& t : _tables) {
        if (t.prune_batch && t.window.count() <= 0) {
            throw ferry::error(
                error_kind::permanent, "retention.invalid",
                t.window_key + ": the window of table " + t.name + " must be positive",
                t.window_key);
        }
        const ferry::metrics::labels l{{"table", t.name}};
        _series.push_back(
            series{m.add_gauge("ferry_retention_rows", k_rows_help, l),
                   m.add_gauge("ferry_retention_oldest_age_seconds", k_oldest_help, l),
                   m.add_counter("ferry_retention_deleted_total", k_deleted_help, l)});
    }
}

retention_runner::~retention_runner() { stop(); }

std::vector<retention_result> retention_runner::run_once(pqxx::connection& conn,
                                                         const std::string& only) {
    if (!only.empty()) {
        bool known = false;
        std::string names;
        for (const auto& t : _tables) {
            known = known || t.name == only;
            names += (names.empty() ? "" : ", ") + t.name;
        }
        if (!known) {
            throw ferry::error(error_kind::permanent, "retention.unknown_table",
                               "no retained table named \"" + only + "\" (known: " + names + ")",
                               "table");
        }
    }
    std::vector<retention_result> out;
    for (std::size_t i = 0; i < _tables.size(); ++i) {
        const auto& t = _tables[i];
        if (!only.empty() && t.name != only) continue;
        retention_result r;
        r.table = t.name;
        r.window_key = t.window_key;
        r.window = t.window;
        r.pruned = static_cast<bool>(t.prune_batch);
        try {
            // Each batch commits on its own: locks are held for one batch only, and a stop
            // between batches loses nothing.
            while (r.pruned && !_stopping) {
                pqxx::work tx{conn};
                const long long n = t.prune_batch(tx, _o.batch);
                tx.commit();
                ++r.batches;
                r.deleted += n;
                _series[i].deleted.inc(static_cast<double>(n));
                if (n < _o.batch) break;
            }
            pqxx::read_transaction tx{conn};
            r.after = t.measure(tx);
        } catch (...) {
            internal::rethrow_translated("retention of " + t.name, "retention");
        }
        _series[i].rows.set(static_cast<double>(r.after.rows));
        _series[i].oldest.set(r.after.oldest_age_seconds);
        out.push_back(std::move(r));
    }
    return out;
}

void retention_runner::start(std::string dsn, std::chrono::milliseconds interval,
                             std::chrono::milliseconds connect_timeout) {
    if (_thread.joinable()) return;
    _stopping = false;
    _thread = std::thread([this, dsn = std::move(dsn), interval, connect_timeout] {
        loop(dsn, interval, connect_timeout);
    });
}

void retention_runner::stop() {
    {
        const std::lock_guard lock(_mutex);
        _stopping = true;
    }
    _cv.notify_all();
    if (_thread.joinable()) _thread.join();
}

void retention_runner::loop(const std::string& dsn, std::chrono::milliseconds interval,
                            std::chrono::milliseconds connect_timeout) {
    std::unique_ptr<pqxx::connection> conn;
    while (!_stopping) {
        try {
            if (!conn) {
                internal::session_settings s;
                s.connect_timeout = connect_timeout;
                s.application_name = "ferry-retention";
                // A batch is small; a statement this slow means something else is wrong.
                s.statement_timeout = std::chrono::minutes(5);
                conn = internal::connect_unique(dsn, s, "retention");
            }
            auto results = run_once(*conn);
            if (_o.on_run) _o.on_run(results);
        } catch (const std::exception& e) {
            conn.reset();
            if (_o.on_error) _o.on_error(e.what());
        }
        std::unique_lock lock(_mutex);
        _cv.wait_for(lock, interval, [this] { return _stopping.load(); });
    }
}

}  // namespace ferry::outbox
