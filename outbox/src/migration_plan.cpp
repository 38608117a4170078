#include "migration_plan.hpp"

#include <algorithm>
#include <map>

#include "ferry/common/error.hpp"

namespace ferry::outbox::detail {

const std::vector<module_entry>& module_manifest() {
    // Order: how `ferryctl migrate --help` lists them. `needs` is what a database migrated for
    // the module alone must also hold for the module's runtime and migrations to work.
    static const std::vector<module_entry> modules = {
        {"outbox", {}},  // enqueue, half messages, the check-back mailbox
        // relay/sql/0010 rebuilds `published` with the columns reconcile/sql/0006 added, so the
        // relay's migrations build on reconcile's; ferry-relay also runs reconciliation.
        {"relay", {"outbox", "wal", "reconcile"}},  // leases, published ledger, parked, expired
        {"wal", {"outbox", "relay"}},               // WAL mode: slot registry, emit_wal, requeue
        {"reconcile", {"outbox", "relay"}},         // runs, items; the ledger's payload columns
        {"consumer", {}},                           // inbox, retry, dead letters, partition owners
    };
    return modules;
}

std::vector<std::string> extra_touches(int version) {
    // Migrations written before each module had its own sql/ folder, whose SQL reaches past the
    // owner's needs. Never add to this list: a new migration touches only its module's tables and
    // those of the modules it needs (ADR 0015; migration_plan_test checks every migration).
    static const std::map<int, std::vector<std::string>> legacy = {
        {80, {"relay", "consumer"}},  // outbox/sql/0080 indexes parked and dead_letter
    };
    const auto it = legacy.find(version);
    return it == legacy.end() ? std::vector<std::string>{} : it->second;
}

std::set<std::string> closure(const std::vector<std::string>& only) {
    const auto& manifest = module_manifest();
    auto entry = [&](const std::string& name) -> const module_entry& {
        for (const auto& m : manifest) {
            if (m.name == name) return m;
        }
        std::string known;
        for (const auto& m : manifest) known += (known.empty() ? "" : ", ") + m.name;
        throw ferry::error(error_kind::permanent, "outbox.migrate_module",
                           "only: unknown module \"" + name + "\" (modules: " + known + ")",
                           "only");
    };
    std::set<std::string> out;
    if (only.empty()) {
        for (const auto& m : manifest) out.insert(m.name);
        return out;
    }
    std::vector<std::string> todo(only.begin(), only.end());
    while (!todo.empty()) {
        const auto name = todo.back();
        todo.pop_back();
        const auto& m = entry(name);
        if (!out.insert(m.name).second) continue;
        for (const auto& n : m.needs) todo.push_back(n);
    }
    return out;
}

std::vector<const migration*> plan(const std::vector<migration>& all, const std::set<int>& applied,
                                   const std::set<std::string>& selected) {
    std::set<std::string> available = selected;
    for (const auto& m : all) {
        if (applied.count(m.version) != 0) available.insert(m.module);
    }
    std::vector<const migration*> out;
    for (const auto& m : all) {
        if (applied.count(m.version) != 0 || selected.count(m.module) == 0) continue;
        const auto touches = extra_touches(m.version);
        const bool ready = std::all_of(touches.begin(), touches.end(),
                                       [&](const auto& t) { return available.count(t) != 0; });
        if (ready) out.push_back(&m);
    }
    std::sort(out.begin(), out.end(),
              [](const migration* a, const migration* b) { return a->version < b->version; });
    return out;
}

std::vector<std::string> installed_modules(const std::vector<migration>& all,
                                           const std::set<int>& applied) {
    std::set<std::string> out;
    for (const auto& m : all) {
        if (applied.count(m.version) != 0) out.insert(m.module);
    }
    return {out.begin(), out.end()};
}

}  // namespace ferry::outbox::detail
