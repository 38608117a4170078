// Retention of reconciliation reports (retention.hpp).

#include "ferry/reconcile/retention.hpp"

#include <pqxx/pqxx>

#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/internal/retention_sql.hpp"

namespace ferry::reconcile {

std::vector<retention::table> report_retention(const std::string& schema,
                                               std::chrono::milliseconds window) {
    const std::string q = quote_identifier(schema, "postgres.schema");
    // Runs past the window, except the latest succeeded run of each scope.
    const std::string old_runs = "SELECT id FROM " + q + ".reconcile_run WHERE " +
                                 internal::older_than_window("started_at") +
                                 " AND id NOT IN (SELECT id FROM " + q + ".reconcile_latest)";
    retention::table items;
    items.name = "reconcile_item";
    items.window_key = "reconcile.retention";
    items.window = window;
    items.prune_batch = [q, old_runs, window](pqxx::transaction_base& tx, long long batch) {
        return internal::delete_batch(tx, q, "reconcile_item", "id", "run_id IN (" + old_runs + ")",
                                      window, batch);
    };
    // An item's age is its run's: the oldest run that still has items (index on run_id).
    items.measure = [q](pqxx::transaction_base& tx) {
        const auto r =
            tx.exec("SELECT (SELECT count(*) FROM " + q +
                    ".reconcile_item), coalesce((SELECT extract(epoch FROM clock_timestamp() - "
                    "started_at) FROM " +
                    q + ".reconcile_run WHERE id = (SELECT min(run_id) FROM " + q +
                    ".reconcile_item)), 0)::float8");
        return retention::table_stats{r[0][0].as<long long>(), r[0][1].as<double>()};
    };

    retention::table runs;
    runs.name = "reconcile_run";
    runs.window_key = "reconcile.retention";
    runs.window = window;
    runs.prune_batch = [q, old_runs, window](pqxx::transaction_base& tx, long long batch) {
        return internal::delete_batch(tx, q, "reconcile_run", "id",
                                      "id IN (" + old_runs + ") AND NOT EXISTS (SELECT 1 FROM " +
                                          q + ".reconcile_item i WHERE i.run_id = " + q +
                                          ".reconcile_run.id)",
                                      window, batch);
    };
    runs.measure = [q](pqxx::transaction_base& tx) {
        return internal::measure_table(tx, q, "reconcile_run", "started_at");
    };
    return {items, runs};
}

}  // namespace ferry::reconcile
