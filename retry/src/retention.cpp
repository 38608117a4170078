// Retention of dead letters (retention.hpp).

#include "ferry/retry/retention.hpp"

#include <pqxx/pqxx>

#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/retention_sql.hpp"

namespace ferry::retry {

retention::table dead_letter_retention(const std::string& schema,
                                       std::chrono::milliseconds window) {
    // Index: dead_letter_replayed_idx (0080).
    return internal::retained_table(
        quote_identifier(schema, "postgres.schema"), "dead_letter", "retention.dead_letter", window,
        "id", "replayed_at IS NOT NULL AND " + internal::older_than_window("replayed_at"),
        "dead_at");
}

}  // namespace ferry::retry
