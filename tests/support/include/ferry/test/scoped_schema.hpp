#pragma once

// A unique PostgreSQL schema name for one test, dropped (CASCADE) when the test ends.
//
// It does not create the schema: the outbox migrations do that, and a test that wants an empty
// schema runs CREATE SCHEMA itself. Lifecycle: the name is chosen at construction; the
// destructor connects to the same DSN and runs DROP SCHEMA IF EXISTS ... CASCADE, reporting
// (not throwing) failures to stderr. Not copyable or movable; one thread at a time.

#include <string>
#include <string_view>

namespace ferry::test {

class scoped_schema {
public:
    // The DSN defaults to pg_dsn() (so a missing FERRY_TEST_PG_DSN fails the test here).
    explicit scoped_schema(std::string_view prefix = "ferry_test");
    scoped_schema(std::string_view prefix, std::string dsn);
    ~scoped_schema();
    scoped_schema(const scoped_schema&) = delete;
    scoped_schema& operator=(const scoped_schema&) = delete;

    // Unquoted-safe identifier ([a-z0-9_], see unique_name()).
    [[nodiscard]] const std::string& name() const { return _name; }
    [[nodiscard]] const std::string& dsn() const { return _dsn; }

    // Drops the schema now (idempotent); the destructor then has nothing left to do.
    void drop();

private:
    std::string _dsn;
    std::string _name;
    bool _dropped = false;
};

}  // namespace ferry::test
