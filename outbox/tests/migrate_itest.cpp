// Versioned, idempotent migrations that are safe to run concurrently.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
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
// folders (written by the migrator of that time, with FERRY_WRITE_EXPECTED_CATALOG=1). A full
// migration today must give exactly the same catalog for the same migrations.
TEST(MigrateTest, FullMigrationGivesTheRecordedCatalog) {
    test::scoped_schema schema("migrate_golden");
    pqxx::connection conn{test::pg_dsn()};
    (void)outbox::migrate(conn, schema.name());
    const auto dump = test::catalog_dump(conn, schema.name());
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
    std::stringstream text;
    text << in.rdbuf();
    std::string actual = versions + "\n";
    for (const auto& line : dump) actual += line + "\n";
    EXPECT_EQ(text.str(), actual);
}
