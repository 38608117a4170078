// The SQL producer API (ferry.enqueue) for services in any language: same validation as the
// C++ writer, same atomicity.
#include "outbox_fixture.hpp"

class SqlApiTest : public OutboxFixture {
protected:
    // Runs `call` (a SELECT of the schema's enqueue) and returns the error text, or "" on success.
    std::string try_enqueue(const std::string& args) {
        try {
            pqxx::work tx{conn()};
            tx.exec("SELECT \"" + schema() + "\".enqueue(" + args + ")");
            tx.commit();
            return "";
        } catch (const pqxx::sql_error& e) {
            EXPECT_EQ(e.sqlstate(), "22023") << e.what();
            return e.what();
        }
    }
};

TEST_F(SqlApiTest, EnqueueReturnsAVersion7IdAndCommitsWithTheTransaction) {
    std::string id;
    {
        pqxx::work tx{conn()};
        id = tx.exec("SELECT \"" + schema() +
                     "\".enqueue('orders', 'order-1', '\\x00ff'::bytea, "
                     "'{\"traceparent\":\"t\"}')::text")[0][0]
                 .as<std::string>();
        tx.commit();
    }
    ASSERT_EQ(id.size(), 36u);
    EXPECT_EQ(id[14], '7');
    EXPECT_EQ(count_rows("message_id = '" + id +
                         "' AND payload = '\\x00ff'::bytea AND headers->>'traceparent' = 't'"),
              1);
    {
        pqxx::work tx{conn()};
        tx.exec("SELECT \"" + schema() + "\".enqueue('orders', 'order-2', 'x'::bytea)");
        tx.abort();
    }
    EXPECT_EQ(count_rows(), 1);
}

TEST_F(SqlApiTest, DelayAndExpiryArguments) {
    pqxx::work tx{conn()};
    tx.exec("SELECT \"" + schema() +
            "\".enqueue('orders', 'k', 'x'::bytea, '{}', interval '5 seconds', interval '1 hour')");
    tx.commit();
    EXPECT_EQ(count_rows("available_at - created_at = interval '5 seconds' AND expires_at - "
                         "created_at = interval '1 hour'"),
              1);
}

TEST_F(SqlApiTest, RejectsEveryBadInputNamingTheField) {
    struct bad_case {
        std::string args;
        std::string expected;
    };
    const std::vector<bad_case> cases = {
        {"'', 'k', 'x'::bytea", "topic: must not be empty"},
        {"repeat('a', 250), 'k', 'x'::bytea", "topic: 250 characters"},
        {"'orders/v1', 'k', 'x'::bytea", "topic: \"orders/v1\" has characters Kafka refuses"},
        {"'..', 'k', 'x'::bytea", "topic: \"..\""},
        {"'orders', repeat('k', 4097), 'x'::bytea", "key: 4097 bytes is over the limit of 4096"},
        {"'orders', NULL, 'x'::bytea", "key: must not be null"},
        {"'orders', 'k', decode(repeat('00', 1048577), 'hex')",
         "payload: 1048577 bytes is over the limit of 1048576"},
        {"'orders', 'k', NULL", "payload: must not be null"},
        {"'orders', 'k', 'x'::bytea, '[1,2]'", "headers: must be a JSON object"},
        {"'orders', 'k', 'x'::bytea, '{\"a\":{\"nested\":\"x\"}}'", "headers: \"a\" must be"},
        {"'orders', 'k', 'x'::bytea, '{\"n\":1}'", "headers: \"n\" must be"},
        {"'orders', 'k', 'x'::bytea, '{\"ferry-message-id\":\"x\"}'",
         "headers: \"ferry-message-id\""},
        {"'orders', 'k', 'x'::bytea, '{}', interval '-1 second'",
         "deliver_after: must not be negative"},
        {"'orders', 'k', 'x'::bytea, '{}', NULL, interval '0'", "expires_after: must be positive"},
    };
    for (const auto& c : cases) {
        const auto err = try_enqueue(c.args);
        EXPECT_NE(err.find(c.expected), std::string::npos)
            << "args: " << c.args << "\nerror: " << err;
    }
    EXPECT_EQ(count_rows(), 0);
}

TEST_F(SqlApiTest, LimitsComeFromTheSettingsTable) {
    {
        pqxx::work tx{conn()};
        tx.exec("UPDATE \"" + schema() +
                "\".settings SET value = 10 WHERE name = 'max_payload_bytes'");
        tx.commit();
    }
    EXPECT_EQ(try_enqueue("'orders', 'k', '0123456789'::bytea"), "");
    EXPECT_NE(try_enqueue("'orders', 'k', '0123456789a'::bytea")
                  .find("payload: 11 bytes is over the limit of 10"),
              std::string::npos);
    EXPECT_EQ(count_rows(), 1);
}

TEST_F(SqlApiTest, TableConstraintsGuardDirectInserts) {
    // A client that bypasses enqueue() still cannot store a topic Kafka would refuse.
    pqxx::work tx{conn()};
    EXPECT_THROW(
        tx.exec("INSERT INTO " + table() +
                " (message_id, topic, payload) VALUES (gen_random_uuid(), 'bad topic', 'x')"),
        pqxx::check_violation);
}
