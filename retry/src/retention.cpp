// Retention of dead letters (retention.hpp).

#include "ferry/retry/retention.hpp"

#include <pqxx/pqxx>

#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/retention_sql.hpp"

namespace ferry::retry {

retention::table dead_letter_retention(const std::string& schema,
                                       std::chrono::milliseconds window) {
    const std::string q = quote_identifier(schema, "postgres.schema");
    retention::table t;
    t.name = "dead_letter";
    t.window_key = "retention.dead_letter";
    t.window = window;
    // Index: dead_letter_replayed_idx (0080).
    t.prune_batch = [q, window](pqxx::transaction_base& tx, long long batch) {
        return internal::delete_batch(
            tx, q, "dead_letter", "id",
            "replayed_at IS NOT NULL AND " + internal::older_than_window("replayed_at"), window,
            batch);
    };
    t.measure = [q](pqxx::transaction_base& tx) {
        return internal::measure_table(tx, q, "dead_letter", "dead_at");
    };
    return t;
}

}  // namespace ferry::retry
