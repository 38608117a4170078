#pragma once
// Versioned, idempotent schema migrations, embedded in the library from outbox/sql/.
//
// migrate() takes a transaction-scoped advisory lock keyed on the schema name, so two processes
// migrating at once serialize: the second sees the first's work and applies nothing. All pending
// migrations apply in one transaction; a failure leaves the schema as it was.

#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "ferry/common/error.hpp"  // every call here throws ferry::error

namespace ferry::outbox {

struct migration {
    int version;
    std::string name;
    std::string sql;  // with the placeholder @SCHEMA@ for the quoted schema name
};

struct migration_result {
    std::vector<int> applied;  // versions applied by this call, ascending
    int current_version = 0;   // schema version after the call
};

/// The migrations compiled into this library, ascending by version.
[[nodiscard]] const std::vector<migration>& migrations();

/// Applies every pending migration to `schema` over `conn`. Throws ferry::error.
[[nodiscard]] migration_result migrate(pqxx::connection& conn, const std::string& schema);

/// Schema version recorded in `schema`, or 0 when it has never been migrated.
[[nodiscard]] int current_version(pqxx::connection& conn, const std::string& schema);

}  // namespace ferry::outbox
