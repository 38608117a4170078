// Retention of the check-back mailbox (retention.hpp).

#include "ferry/checkback/retention.hpp"

#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/retention_sql.hpp"

namespace ferry::checkback {

retention::table check_request_retention(const std::string& schema,
                                         std::chrono::milliseconds window) {
    const std::string q = quote_identifier(schema, "postgres.schema");
    retention::table t;
    t.name = "check_request";
    t.window_key = "retention.check_request";
    t.window = window;
    // Index: check_request_created_idx (0080).
    t.prune_batch = [q, window](pqxx::transaction_base& tx, long long batch) {
        return internal::delete_batch(
            tx, q, "check_request", "request_id",
            internal::older_than_window("created_at") +
                " AND (answered_at IS NOT NULL OR deadline < clock_timestamp())",
            window, batch);
    };
    t.measure = [q](pqxx::transaction_base& tx) {
        return internal::measure_table(tx, q, "check_request", "created_at");
    };
    return t;
}

}  // namespace ferry::checkback
