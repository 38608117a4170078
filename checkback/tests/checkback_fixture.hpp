#pragma once
// A migrated schema, a writer, and helpers to prepare half messages and read their state.

#include <gtest/gtest.h>

#include <memory>
#include <pqxx/pqxx>
#include <thread>

#include "ferry/checkback/scheduler.hpp"
#include "ferry/outbox/half.hpp"
#include "ferry/outbox/migrate.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/scoped_schema.hpp"

class CheckbackFixture : public ::testing::Test {
protected:
    void SetUp() override {
        _schema = std::make_unique<ferry::test::scoped_schema>("checkback");
        _conn = std::make_unique<pqxx::connection>(ferry::test::pg_dsn());
        (void)ferry::outbox::migrate(*_conn, schema());
        ferry::outbox::writer_options o;
        o.schema = schema();
        _writer = std::make_unique<ferry::outbox::writer>(o);
    }

    const std::string& schema() const { return _schema->name(); }
    pqxx::connection& conn() { return *_conn; }
    const ferry::outbox::writer& writer() const { return *_writer; }

    ferry::outbox::message_id prepare(const std::string& tx_ref,
                                      ferry::outbox::half_options o = {}) {
        if (!o.check_first_after) o.check_first_after = std::chrono::milliseconds(0);
        if (!o.check_interval) o.check_interval = std::chrono::milliseconds(100);
        ferry::outbox::message m;
        m.topic = "payments";
        m.key = "pay-" + tx_ref;
        m.payload = "{}";
        return ferry::outbox::prepare(writer(), conn(), m, tx_ref, o);
    }

    struct row {
        std::string state;
        int check_count;
        std::string last_check_result;
        std::string decided_by;
        long in_outbox;
    };
    row read(const ferry::outbox::message_id& id) {
        pqxx::nontransaction tx{conn()};
        const auto r = tx.exec(
            "SELECT state, check_count, coalesce(last_check_result, ''), coalesce(decided_by, ''), "
            "(SELECT count(*) FROM \"" +
            schema() +
            "\".outbox o WHERE o.message_id = h.message_id) "
            "FROM \"" +
            schema() + "\".half_message h WHERE message_id = '" + id.to_string() + "'")[0];
        return {r[0].as<std::string>(), r[1].as<int>(), r[2].as<std::string>(),
                r[3].as<std::string>(), r[4].as<long>()};
    }

    ferry::checkback::scheduler_options scheduler_opts() const {
        ferry::checkback::scheduler_options o;
        o.dsn = ferry::test::pg_dsn();
        o.schema = schema();
        o.tick = std::chrono::milliseconds(50);
        return o;
    }

    ferry::checkback::callback_options callback_opts(
        std::chrono::milliseconds timeout = std::chrono::milliseconds(2000)) const {
        ferry::checkback::callback_options o;
        o.dsn = ferry::test::pg_dsn();
        o.schema = schema();
        o.timeout = timeout;
        return o;
    }

    ferry::outbox::responder_options responder_opts(const std::string& instance,
                                                    const std::string& group = "payments") const {
        ferry::outbox::responder_options o;
        o.dsn = ferry::test::pg_dsn();
        o.schema = schema();
        o.producer_group = group;
        o.instance_id = instance;
        o.poll_interval = std::chrono::milliseconds(20);
        return o;
    }

    // Waits until pred() or the timeout; returns pred().
    template <typename Pred>
    static bool eventually(Pred pred,
                           std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < end) {
            if (pred()) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return pred();
    }

private:
    std::unique_ptr<ferry::test::scoped_schema> _schema;
    std::unique_ptr<pqxx::connection> _conn;
    std::unique_ptr<ferry::outbox::writer> _writer;
};
