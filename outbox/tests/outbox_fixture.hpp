#pragma once
// Shared fixture for outbox integration tests: a migrated, unique schema on the harness's
// PostgreSQL, dropped when the test ends.

#include <gtest/gtest.h>

#include <memory>
#include <pqxx/pqxx>
#include <string>

#include "ferry/outbox/migrate.hpp"
#include "ferry/outbox/writer.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/scoped_schema.hpp"

class OutboxFixture : public ::testing::Test {
protected:
    void SetUp() override {
        _schema = std::make_unique<ferry::test::scoped_schema>("outbox");
        _conn = std::make_unique<pqxx::connection>(ferry::test::pg_dsn());
        const auto r = ferry::outbox::migrate(*_conn, schema());
        ASSERT_FALSE(r.applied.empty());
        ferry::outbox::writer_options o;
        o.schema = schema();
        _writer = std::make_unique<ferry::outbox::writer>(o);
    }

    const std::string& schema() const { return _schema->name(); }
    pqxx::connection& conn() { return *_conn; }
    const ferry::outbox::writer& writer() const { return *_writer; }
    std::string table() const { return "\"" + schema() + "\".outbox"; }

    long long count_rows(const std::string& where = "true") {
        pqxx::nontransaction tx{conn()};
        return tx.exec("SELECT count(*) FROM " + table() + " WHERE " + where)[0][0].as<long long>();
    }

    static ferry::outbox::message make(std::string key, std::string payload = "{}") {
        ferry::outbox::message m;
        m.topic = "orders";
        m.key = std::move(key);
        m.payload = std::move(payload);
        return m;
    }

private:
    std::unique_ptr<ferry::test::scoped_schema> _schema;
    std::unique_ptr<pqxx::connection> _conn;
    std::unique_ptr<ferry::outbox::writer> _writer;
};
