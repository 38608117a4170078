#include "ferry/outbox/migrate.hpp"

#include <cstdint>
#include <cstdio>
#include <map>
#include <set>

#include "ferry/common/error.hpp"
#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"
#include "migration_plan.hpp"

namespace ferry::outbox {
namespace {

std::string checksum(const std::string& text) {
    std::uint64_t h = 1469598103934665603ULL;  // FNV-1a 64
    for (unsigned char c : text) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

std::string render(const std::string& sql, const std::string& quoted_schema) {
    std::string out = sql;
    const std::string placeholder = "@SCHEMA@";
    for (auto pos = out.find(placeholder); pos != std::string::npos;
         pos = out.find(placeholder, pos + quoted_schema.size())) {
        out.replace(pos, placeholder.size(), quoted_schema);
    }
    return out;
}

}  // namespace

const std::vector<std::string>& schema_modules() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> out;
        for (const auto& m : detail::module_manifest()) out.push_back(m.name);
        return out;
    }();
    return names;
}

std::vector<std::string> modules_for(const std::vector<std::string>& only) {
    const auto selected = detail::closure(only);
    return {selected.begin(), selected.end()};
}

migration_result migrate(pqxx::connection& conn, const std::string& schema) {
    return migrate(conn, schema, migrate_options{});
}

migration_result migrate(pqxx::connection& conn, const std::string& schema,
                         const migrate_options& options) {
    const auto q = quote_identifier(schema, "schema");
    const auto selected = detail::closure(options.only);  // throws before connecting work
    migration_result result;
    try {
        pqxx::work tx{conn};
        // Serialize concurrent migrators of this schema. Taken before CREATE SCHEMA, which is
        // not safe to run concurrently even with IF NOT EXISTS.
        (void)internal::exec(
            tx, "SELECT pg_advisory_xact_lock(hashtext('ferry.migrate'), hashtext($1))", schema);
        tx.exec("CREATE SCHEMA IF NOT EXISTS " + q);
        tx.exec("CREATE TABLE IF NOT EXISTS " + q +
                ".schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
        std::map<int, std::string> recorded;
        for (const auto& row :
             tx.exec("SELECT version, checksum FROM " + q + ".schema_migrations")) {
            recorded.emplace(row[0].as<int>(), row[1].as<std::string>());
        }
        std::set<int> applied;
        for (const auto& m : migrations()) {
            const auto it = recorded.find(m.version);
            if (it == recorded.end()) continue;
            if (it->second != checksum(m.sql)) {
                throw ferry::error(
                    error_kind::permanent, "outbox.migration_checksum",
                    "migration " + std::to_string(m.version) + " (" + m.name +
                        ") was applied to schema " + schema +
                        " with different SQL than this build carries; refusing to continue",
                    "schema");
            }
            applied.insert(m.version);
        }
        for (const auto* m : detail::plan(migrations(), applied, selected)) {
            tx.exec(render(m->sql, q));
            (void)internal::exec(
                tx,
                "INSERT INTO " + q +
                    ".schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                m->version, m->name, checksum(m->sql));
            result.applied.push_back(m->version);
            applied.insert(m->version);
        }
        result.current_version =
            tx.exec("SELECT coalesce(max(version), 0) FROM " + q + ".schema_migrations")[0][0]
                .as<int>();
        result.modules = detail::installed_modules(migrations(), applied);
        tx.commit();
    } catch (...) {
        internal::rethrow_translated("migrate", "outbox");
    }
    return result;
}

int current_version(pqxx::connection& conn, const std::string& schema) {
    const auto q = quote_identifier(schema, "schema");
    try {
        pqxx::read_transaction tx{conn};
        const auto exists =
            internal::exec(tx, "SELECT to_regclass($1) IS NOT NULL", q + ".schema_migrations")[0][0]
                .as<bool>();
        if (!exists) return 0;
        return tx.exec("SELECT coalesce(max(version), 0) FROM " + q + ".schema_migrations")[0][0]
            .as<int>();
    } catch (...) {
        internal::rethrow_translated("current_version", "outbox");
    }
}

}  // namespace ferry::outbox
