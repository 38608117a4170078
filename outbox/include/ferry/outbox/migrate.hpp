#pragma once
// Versioned, idempotent schema migrations. Each module owns its migrations in `<module>/sql/`
// (ADR 0015); every module's folder is embedded in this library, and this one migrator applies
// them in version order.
//
// migrate() takes a transaction-scoped advisory lock keyed on the schema name, so two processes
// migrating at once serialize: the second sees the first's work and applies nothing. All pending
// migrations apply in one transaction; a failure leaves the schema as it was.
//
// A full migration (no `only`) applies every migration. `only` limits it to some modules' tables
// (with the modules they need): a consumer-only database migrates `{"consumer"}` and gets the
// inbox, retry, dead-letter and partition-owner tables and nothing of the producer side. A later
// call with more modules (or a full one) adds the rest; the result is the same schema a full
// migration gives.
//
// Thread-safety: free functions; each call uses the connection it is given.

#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "ferry/common/error.hpp"  // every call here throws ferry::error

namespace ferry::outbox {

struct migration {
    int version;
    std::string name;
    std::string sql;     // with the placeholder @SCHEMA@ for the quoted schema name
    std::string module;  // the owning module: the folder `<module>/sql/` it comes from
};

struct migration_result {
    std::vector<int> applied;          // versions applied by this call, ascending
    int current_version = 0;           // highest version recorded in the schema after the call
    std::vector<std::string> modules;  // modules with migrations in the schema, sorted
};

struct migrate_options {
    /// Modules to migrate: outbox, relay, wal, reconcile, consumer (schema_modules()). Each
    /// brings the modules it needs (relay: outbox, wal, reconcile). Empty: every module.
    std::vector<std::string> only;
};

/// The migrations compiled into this library, ascending by version.
[[nodiscard]] const std::vector<migration>& migrations();

/// The modules that own migrations, in the order `ferryctl migrate --help` lists them.
[[nodiscard]] const std::vector<std::string>& schema_modules();

/// The modules a migration with `only` covers: those named and every module they need, sorted
/// (every module when `only` is empty). Throws ferry::error "outbox.migrate_module" (permanent,
/// field "only") naming an unknown module.
[[nodiscard]] std::vector<std::string> modules_for(const std::vector<std::string>& only);

/// Applies every pending migration to `schema` over `conn`. Throws ferry::error.
[[nodiscard]] migration_result migrate(pqxx::connection& conn, const std::string& schema);

/// Applies the pending migrations of `options.only` (all when empty). Throws ferry::error with
/// code "outbox.migrate_module" (permanent, field "only") for a module name it does not know.
[[nodiscard]] migration_result migrate(pqxx::connection& conn, const std::string& schema,
                                       const migrate_options& options);

/// Highest schema version recorded in `schema`, or 0 when it has never been migrated.
[[nodiscard]] int current_version(pqxx::connection& conn, const std::string& schema);

}  // namespace ferry::outbox
