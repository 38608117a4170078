// Retention of the check-back mailbox (retention.hpp).

#include "ferry/checkback/retention.hpp"

#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/retention_sql.hpp"

namespace ferry::checkback {

retention::table check_request_retention(const std::string& schema,
                                         std::chrono::milliseconds window) {
    // Index: check_request_created_idx (0080).
    return internal::retained_table(
        quote_identifier(schema, "postgres.schema"), "check_request", "retention.check_request",
        window, "request_id",
        internal::older_than_window("created_at") +
            " AND (answered_at IS NOT NULL OR deadline < clock_timestamp())",
        "created_at");
}

}  // namespace ferry::checkback
