// Versioned, idempotent migrations that are safe to run concurrently.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "catalog_dump.hpp"
#include "ferry/common/error.hpp"
#include "ferry/outbox/migrate.hpp"
#include "ferry/outbox/status.hpp"
#include "ferry/outbox/writer.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/scoped_schema.hpp"

using namespace ferry;

TEST(MigrateTest, AppliesEveryMigrationOnceAndIsIdempotent) {
    test::scoped_schema schema("migrate");
    pqxx::connection conn{test::pg_dsn()};
    EXPECT_EQ(outbox::current_version(conn, schema.name()), 0);

    const auto first = outbox::migrate(conn, schema.name());
    ASSERT_EQ(first.applied.size(), outbox::migrations().size());
    EXPECT_EQ(first.current_version, outbox::migrations().back().version);

    const auto second = outbox::migrate(conn, schema.name());
    EXPECT_TRUE(second.applied.empty());
    EXPECT_EQ(second.current_version, first.current_version);
    EXPECT_EQ(outbox::current_version(conn, schema.name()), first.current_version);

    pqxx::nontransaction tx{conn};
    EXPECT_EQ(tx.exec("SELECT count(*) FROM \"" + schema.name() + "\".schema_migrations")[0][0]
                  .as<std::size_t>(),
              outbox::migrations().size());
}

TEST(MigrateTest, ConcurrentMigratorsSerializeAndApplyOnce) {
    test::scoped_schema schema("migrate_conc");
    constexpr int migrators = 8;
    std::atomic<int> applied_by{0}, errors{0};
    std::vector<std::thread> threads;
    std::atomic<bool> go{false};
    for (int i = 0; i < migrators; ++i) {
        threads.emplace_back([&] {
            try {
                pqxx::connection conn{test::pg_dsn()};
                while (!go.load()) std::this_thread::yield();
                const auto r = outbox::migrate(conn, schema.name());
                if (!r.applied.empty()) ++applied_by;
            } catch (const std::exception& e) {
                ADD_FAILURE() << e.what();
                ++errors;
            }
        });
    }
    go = true;
    for (auto& t : threads) t.join();
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(applied_by.load(), 1);
    pqxx::connection conn{test::pg_dsn()};
    EXPECT_EQ(outbox::current_version(conn, schema.name()), outbox::migrations().back().version);
}

TEST(MigrateTest, RefusesASchemaMigratedWithDifferentSql) {
    test::scoped_schema schema("migrate_sum");
    pqxx::connection conn{test::pg_dsn()};
    (void)outbox::migrate(conn, schema.name());
    {
        pqxx::work tx{conn};
        tx.exec("UPDATE \"" + schema.name() +
                "\".schema_migrations SET checksum = 'tampered' WHERE version = 1");
        tx.commit();
    }
    try {
        (void)outbox::migrate(conn, schema.name());
        FAIL() << "tampered migration accepted";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "outbox.migration_checksum");
        EXPECT_NE(std::string(e.what()).find("migration 1"), std::string::npos) << e.what();
    }
}

TEST(MigrateTest, RejectsAnInvalidSchemaNameBeforeTouchingTheDatabase) {
    pqxx::connection conn{test::pg_dsn()};
    try {
        (void)outbox::migrate(conn, "ferry; DROP SCHEMA public");
        FAIL();
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "config.invalid_identifier");
        EXPECT_EQ(e.field(), "schema");
    }
}

TEST(MigrateTest, TwoSchemasInOneDatabaseAreIndependent) {
    test::scoped_schema a("migrate_a"), b("migrate_b");
    pqxx::connection conn{test::pg_dsn()};
    (void)outbox::migrate(conn, a.name());
    (void)outbox::migrate(conn, b.name());
    outbox::writer_options o;
    o.schema = a.name();
    outbox::writer w{o};
    {
        pqxx::work tx{conn};
        outbox::message m;
        m.topic = "t";
        m.key = "k";
        (void)w.enqueue(tx, m);
        tx.commit();
    }
    EXPECT_EQ(outbox::read_status(conn, a.name()).pending, 1);
    EXPECT_EQ(outbox::read_status(conn, b.name()).pending, 0);
}

TEST(StatusTest, CountsPendingDelayedAndOldestAge) {
    test::scoped_schema schema("status");
    pqxx::connection conn{test::pg_dsn()};
    (void)outbox::migrate(conn, schema.name());
    auto s = outbox::read_status(conn, schema.name());
    EXPECT_EQ(s.pending, 0);
    EXPECT_EQ(s.oldest_pending_age_s, 0.0);
    {
        pqxx::work tx{conn};
        // Back-date one row so the age is deterministic.
        tx.exec("SELECT \"" + schema.name() + "\".enqueue('t', 'k', 'x'::bytea)");
        tx.exec("UPDATE \"" + schema.name() +
                "\".outbox SET created_at = clock_timestamp() - interval '90 seconds'");
        tx.exec("SELECT \"" + schema.name() +
                "\".enqueue('t', 'k', 'x'::bytea, '{}', interval '1 hour')");
        tx.commit();
    }
    s = outbox::read_status(conn, schema.name());
    EXPECT_EQ(s.pending, 2);
    EXPECT_EQ(s.delayed, 1);
    EXPECT_GE(s.oldest_pending_age_s, 90.0);
    EXPECT_LT(s.oldest_pending_age_s, 120.0);
    EXPECT_EQ(s.schema_version, outbox::migrations().back().version);
}

// The golden catalog: what a full migration gave before migrations moved into per-module
// folders (recorded by the migrator of that time; commit e600093). A full migration must give
// exactly this catalog. A new migration changes it on purpose: rerun this test with
// FERRY_WRITE_EXPECTED_CATALOG=1 and review the diff of expected_catalog.txt with the migration.
std::vector<std::string> full_catalog(const std::string& prefix) {
    test::scoped_schema schema(prefix);
    pqxx::connection conn{test::pg_dsn()};
    (void)outbox::migrate(conn, schema.name());
    return test::catalog_dump(conn, schema.name());
}

TEST(MigrateTest, FullMigrationGivesTheRecordedCatalog) {
    const auto dump = full_catalog("migrate_golden");
    std::string versions = "# versions:";
    for (const auto& m : outbox::migrations()) versions += " " + std::to_string(m.version);
    const std::string path = FERRY_EXPECTED_CATALOG;
    if (std::getenv("FERRY_WRITE_EXPECTED_CATALOG") != nullptr) {
        std::ofstream out(path);
        out << versions << "\n";
        for (const auto& line : dump) out << line << "\n";
    }
    std::ifstream in(path);
    ASSERT_TRUE(in) << path;
    std::string recorded_versions;
    std::getline(in, recorded_versions);
    EXPECT_EQ(recorded_versions, versions)
        << "the migrations changed: rerun with FERRY_WRITE_EXPECTED_CATALOG=1 and review the diff";
    std::vector<std::string> recorded;
    for (std::string line; std::getline(in, line);) recorded.push_back(line);
    std::string actual_text;
    for (const auto& line : dump) actual_text += line + "\n";
    std::vector<std::string> actual;
    std::istringstream split(actual_text);
    for (std::string line; std::getline(split, line);) actual.push_back(line);
    EXPECT_EQ(actual, recorded);
}

std::set<std::string> relations(pqxx::connection& conn, const std::string& schema) {
    pqxx::nontransaction tx{conn};
    std::set<std::string> out;
    for (const auto& r : tx.exec_params(
             "SELECT c.relname || ':' || c.relkind::text FROM pg_class c WHERE c.relnamespace = "
             "$1::regnamespace AND c.relkind IN ('r', 'p', 'v')",
             schema)) {
        out.insert(r[0].c_str());
    }
    for (const auto& r : tx.exec_params(
             "SELECT p.proname || ':f' FROM pg_proc p WHERE p.pronamespace = $1::regnamespace",
             schema)) {
        out.insert(r[0].c_str());
    }
    return out;
}

// ferryctl migrate --only consumer: the consumer's tables and nothing of the producer side; a
// later migration of the other modules completes it into exactly the full schema.
TEST(MigrateTest, ConsumerOnlyCreatesTheConsumersTablesAndCompletesToTheFullSchema) {
    test::scoped_schema schema("migrate_only");
    pqxx::connection conn{test::pg_dsn()};
    outbox::migrate_options only;
    only.only = {"consumer"};
    const auto r = outbox::migrate(conn, schema.name(), only);
    EXPECT_EQ(r.modules, std::vector<std::string>{"consumer"});
    EXPECT_EQ(relations(conn, schema.name()),
              (std::set<std::string>{"consumer_partition_owner:r", "dead_letter:r", "inbox:r",
                                     "retry:r", "schema_migrations:r"}));
    for (int v : r.applied) {
        const auto& all = outbox::migrations();
        const auto it =
            std::find_if(all.begin(), all.end(), [&](const auto& m) { return m.version == v; });
        ASSERT_NE(it, all.end());
        EXPECT_EQ(it->module, "consumer") << v;
    }
    EXPECT_TRUE(outbox::migrate(conn, schema.name(), only).applied.empty());  // idempotent

    only.only = {"relay"};  // the producer side; now 0080 finds every table it indexes
    const auto relay = outbox::migrate(conn, schema.name(), only);
    EXPECT_NE(std::find(relay.applied.begin(), relay.applied.end(), 80), relay.applied.end());
    (void)outbox::migrate(conn, schema.name());  // everything else (reconcile)
    EXPECT_EQ(test::catalog_dump(conn, schema.name()), full_catalog("migrate_ref"));
}

// Any module alone, then everything: the same schema as a full migration. Catches a module
// whose migrations build on another module's that its manifest entry does not name (the
// relay's 0010 rebuilds the ledger with the columns reconcile's 0006 added).
TEST(MigrateTest, EachModuleAloneThenFullGivesTheFullSchema) {
    const auto reference = full_catalog("migrate_ref2");
    for (const auto& module : outbox::schema_modules()) {
        test::scoped_schema schema("migrate_" + module);
        pqxx::connection conn{test::pg_dsn()};
        outbox::migrate_options only;
        only.only = {module};
        const auto first = outbox::migrate(conn, schema.name(), only);
        EXPECT_EQ(first.modules, outbox::modules_for(only.only)) << module;
        const auto rel = relations(conn, schema.name());
        EXPECT_EQ(rel.count("outbox:r"), module == "consumer" ? 0u : 1u) << module;
        EXPECT_EQ(rel.count("inbox:r"), module == "consumer" ? 1u : 0u) << module;
        EXPECT_EQ(rel.count("published:p"), module == "consumer" || module == "outbox" ? 0u : 1u)
            << module;
        (void)outbox::migrate(conn, schema.name());
        EXPECT_EQ(test::catalog_dump(conn, schema.name()), reference) << module;
    }
}

TEST(MigrateTest, UnknownModuleIsRefusedBeforeTouchingTheDatabase) {
    test::scoped_schema schema("migrate_bad");
    pqxx::connection conn{test::pg_dsn()};
    outbox::migrate_options only;
    only.only = {"consumers"};
    try {
        (void)outbox::migrate(conn, schema.name(), only);
        FAIL() << "unknown module accepted";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "outbox.migrate_module");
        EXPECT_EQ(e.field(), "only");
    }
    EXPECT_EQ(outbox::current_version(conn, schema.name()), 0);
}
