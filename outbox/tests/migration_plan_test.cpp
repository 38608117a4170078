// The ownership rules of ADR 0015: which migrations a migrate() call applies, and a check of
// every migration's SQL that it reaches only tables and functions of its own module and of the
// modules that module needs.
#include "migration_plan.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <regex>

#include "ferry/common/error.hpp"
#include "ferry/outbox/migrate.hpp"

using namespace ferry::outbox;

namespace {

std::vector<int> versions(const std::vector<const migration*>& plan) {
    std::vector<int> out;
    for (const auto* m : plan) out.push_back(m->version);
    return out;
}

std::vector<int> owned_by(const std::set<std::string>& modules) {
    std::vector<int> out;
    for (const auto& m : migrations()) {
        if (modules.count(m.module) != 0) out.push_back(m.version);
    }
    return out;
}

}  // namespace

TEST(MigrationPlanTest, EveryMigrationHasAKnownModuleAndAUniqueVersion) {
    std::set<int> seen;
    const auto& known = schema_modules();
    for (const auto& m : migrations()) {
        EXPECT_TRUE(seen.insert(m.version).second) << m.version;
        EXPECT_NE(std::find(known.begin(), known.end(), m.module), known.end())
            << m.version << " " << m.module;
    }
    EXPECT_TRUE(std::is_sorted(migrations().begin(), migrations().end(),
                               [](const auto& a, const auto& b) { return a.version < b.version; }));
}

TEST(MigrationPlanTest, AFullMigrationAppliesEveryMigrationInVersionOrder) {
    const auto plan = detail::plan(migrations(), {}, detail::closure({}));
    std::vector<int> all;
    for (const auto& m : migrations()) all.push_back(m.version);
    EXPECT_EQ(versions(plan), all);
}

TEST(MigrationPlanTest, ConsumerOnlyAppliesTheConsumersMigrationsAndNothingElse) {
    const auto selected = detail::closure({"consumer"});
    EXPECT_EQ(selected, std::set<std::string>{"consumer"});
    const auto plan = versions(detail::plan(migrations(), {}, selected));
    EXPECT_EQ(plan, owned_by({"consumer"}));
    // The consumer's tables: inbox/retry/dead_letter, partition owners, the retention index.
    for (int v : {3, 20, 100}) {
        EXPECT_NE(std::find(plan.begin(), plan.end(), v), plan.end()) << v;
    }
}

TEST(MigrationPlanTest, AModuleBringsTheModulesItNeeds) {
    EXPECT_EQ(detail::closure({"relay"}),
              (std::set<std::string>{"outbox", "reconcile", "relay", "wal"}));
    EXPECT_EQ(detail::closure({"reconcile"}),
              (std::set<std::string>{"outbox", "reconcile", "relay", "wal"}));
    EXPECT_EQ(detail::closure({"outbox"}), std::set<std::string>{"outbox"});
    EXPECT_EQ(detail::closure({"outbox", "consumer"}),
              (std::set<std::string>{"consumer", "outbox"}));
}

TEST(MigrationPlanTest, UnknownModuleIsRefusedByName) {
    try {
        (void)detail::closure({"consumer", "inbox"});
        FAIL() << "unknown module accepted";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "outbox.migrate_module");
        EXPECT_EQ(e.kind(), ferry::error_kind::permanent);
        EXPECT_NE(std::string(e.what()).find("\"inbox\""), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("consumer"), std::string::npos) << e.what();
    }
}

TEST(MigrationPlanTest, ACrossModuleMigrationWaitsUntilEveryModuleItTouchesIsThere) {
    // 0080 (outbox) indexes parked (relay) and dead_letter (consumer).
    auto plan = versions(detail::plan(migrations(), {}, detail::closure({"outbox"})));
    EXPECT_EQ(std::count(plan.begin(), plan.end(), 80), 0);
    EXPECT_EQ(std::count(plan.begin(), plan.end(), 101), 1);  // its outbox part, for outbox alone
    // A consumer-only schema that later adds the relay: now every module 0080 touches is there.
    std::set<int> consumer_applied;
    for (int v : owned_by({"consumer"})) consumer_applied.insert(v);
    plan = versions(detail::plan(migrations(), consumer_applied, detail::closure({"relay"})));
    EXPECT_EQ(std::count(plan.begin(), plan.end(), 80), 1);
    for (int v : plan) EXPECT_EQ(consumer_applied.count(v), 0u) << v;
}

TEST(MigrationPlanTest, EveryMigrationReachesOnlyItsModuleAndTheModulesItNeeds) {
    // Owner of each object: the module of the first migration that creates (or renames to) it.
    const std::regex create(
        R"((?:CREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|FUNCTION|VIEW)\s+@SCHEMA@\.|RENAME\s+TO\s+)(\w+))",
        std::regex::icase);
    const std::regex reference(R"(@SCHEMA@\.(\w+))");
    std::map<std::string, std::string> owner;
    for (const auto& m : migrations()) {
        for (std::sregex_iterator it(m.sql.begin(), m.sql.end(), create), end; it != end; ++it) {
            owner.emplace((*it)[1].str(), m.module);
        }
    }
    ASSERT_EQ(owner.at("inbox"), "consumer");
    ASSERT_EQ(owner.at("published"), "relay");
    ASSERT_EQ(owner.at("outbox"), "outbox");
    for (const auto& m : migrations()) {
        auto allowed = detail::closure({m.module});
        for (const auto& t : detail::extra_touches(m.version)) allowed.insert(t);
        for (std::sregex_iterator it(m.sql.begin(), m.sql.end(), reference), end; it != end; ++it) {
            const auto name = (*it)[1].str();
            const auto o = owner.find(name);
            if (o == owner.end()) continue;  // an index or constraint name, not an object
            EXPECT_EQ(allowed.count(o->second), 1u)
                << "migration " << m.version << " (" << m.module << ") reaches " << name
                << " of module " << o->second
                << ": move it to that module's sql/ folder or give it a migration there";
        }
    }
}
