#pragma once
// Which migrations a migrate() call applies: the pure part of the migrator (no SQL), so the
// ownership rules of ADR 0015 have unit tests.
//
// A migration belongs to the module whose `sql/` folder holds it. A module may need other
// modules' tables (the relay's retry_parked() inserts into the outbox); migrating a module
// migrates the modules it needs. A few migrations written before modules had folders also touch
// tables of modules their owner does not need (0080 indexes tables of the outbox, the relay and
// the consumer): the manifest lists them, and such a migration
// waits until every module it touches is migrated or being migrated.

#include <set>
#include <string>
#include <vector>

#include "ferry/outbox/migrate.hpp"

namespace ferry::outbox::detail {

struct module_entry {
    std::string name;
    std::vector<std::string> needs;  // modules whose tables this module's migrations or runtime use
};

/// The schema modules and what each needs.
[[nodiscard]] const std::vector<module_entry>& module_manifest();

/// Modules touched by a migration besides its owner and the modules its owner needs (the
/// manifest of legacy cross-module migrations); empty for every other migration.
[[nodiscard]] std::vector<std::string> extra_touches(int version);

/// `only` with every module it needs (transitively); every module when `only` is empty.
/// Throws ferry::error "outbox.migrate_module" naming an unknown module.
[[nodiscard]] std::set<std::string> closure(const std::vector<std::string>& only);

/// The migrations to apply, ascending: not yet applied, owned by a module of `selected`, and
/// touching only modules in `selected` or `installed` (modules with a migration applied before).
[[nodiscard]] std::vector<const migration*> plan(const std::vector<migration>& all,
                                                 const std::set<int>& applied,
                                                 const std::set<std::string>& selected);

/// Modules with at least one migration in `applied`, sorted.
[[nodiscard]] std::vector<std::string> installed_modules(const std::vector<migration>& all,
                                                         const std::set<int>& applied);

}  // namespace ferry::outbox::detail
