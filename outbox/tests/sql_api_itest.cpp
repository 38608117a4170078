// The SQL producer API (ferry.enqueue) for services in any language: same validation as the
// C++ writer, same atomicity.
#include "outbox_fixture.hpp"

class SqlApiTest : public OutboxFixture {
protected:
    // Calls the schema's enqueue(args) and returns the error text, or "" on success.
    std::string try_enqueue(const std::string& args) {
        return try_sql("SELECT \"" + schema() + "\".enqueue(" + args + ")");
    }
    // Runs `sql` in a transaction and returns the error text, or "" on success.
    std::string try_sql(const std::string& sql) {
        try {
            pqxx::work tx{conn()};
            tx.exec(sql);
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

// One message per field: SQL expressions for enqueue()'s arguments, and the error naming the field.
struct bad_message {
    std::string topic, key, payload, headers = "'{}'", deliver_after = "NULL",
                                     expires_after = "NULL";
    std::string expected;
};

const std::vector<bad_message>& bad_messages() {
    static const std::vector<bad_message> cases = {
        {"''", "'k'", "'x'", "'{}'", "NULL", "NULL", "topic: must not be empty"},
        {"repeat('a', 250)", "'k'", "'x'", "'{}'", "NULL", "NULL", "topic: 250 characters"},
        {"'orders/v1'", "'k'", "'x'", "'{}'", "NULL", "NULL",
         "topic: \"orders/v1\" has characters Kafka refuses"},
        {"'..'", "'k'", "'x'", "'{}'", "NULL", "NULL", "topic: \"..\""},
        {"'orders'", "repeat('k', 4097)", "'x'", "'{}'", "NULL", "NULL",
         "key: 4097 bytes is over the limit of 4096"},
        {"'orders'", "NULL", "'x'", "'{}'", "NULL", "NULL", "key: must not be null"},
        {"'orders'", "'k'", "decode(repeat('00', 1048577), 'hex')", "'{}'", "NULL", "NULL",
         "payload: 1048577 bytes is over the limit of 1048576"},
        {"'orders'", "'k'", "NULL", "'{}'", "NULL", "NULL", "payload: must not be null"},
        {"'orders'", "'k'", "'x'", "'[1,2]'", "NULL", "NULL", "headers: must be a JSON object"},
        {"'orders'", "'k'", "'x'", "'{\"a\":{\"nested\":\"x\"}}'", "NULL", "NULL",
         "headers: \"a\" must be"},
        {"'orders'", "'k'", "'x'", "'{\"\":\"x\"}'", "NULL", "NULL", "headers: \"\" must be"},
        {"'orders'", "'k'", "'x'", "'{\"ferry-message-id\":\"x\"}'", "NULL", "NULL",
         "headers: \"ferry-message-id\""},
        {"'orders'", "'k'", "'x'", "jsonb_build_object('big', repeat('h', 65536))", "NULL", "NULL",
         "headers: 65547 bytes is over the limit of 65536"},
        {"'orders'", "'k'", "'x'", "'{}'", "interval '-1 second'", "NULL",
         "deliver_after: must not be negative"},
        {"'orders'", "'k'", "'x'", "'{}'", "NULL", "interval '0'",
         "expires_after: must be positive"},
    };
    return cases;
}

TEST_F(SqlApiTest, EveryFieldErrorIsTheSameThroughEnqueueAndEnqueueBatch) {
    for (const auto& c : bad_messages()) {
        const auto one = try_enqueue(c.topic + "::text, " + c.key + "::text, " + c.payload +
                                     "::bytea, " + c.headers + "::jsonb, " + c.deliver_after +
                                     "::interval, " + c.expires_after + "::interval");
        EXPECT_NE(one.find("ferry: " + c.expected), std::string::npos)
            << "enqueue, expected: " << c.expected << "\nerror: " << one;
        // The bad message is element 2 of 3: the error names the element, then the field.
        const auto batch = try_sql(
            "SELECT \"" + schema() + "\".enqueue_batch(ARRAY['orders', " + c.topic +
            ", 'orders'], ARRAY['k', " + c.key + ", 'k'], ARRAY['x'::bytea, " + c.payload +
            ", 'y'], ARRAY['{}'::jsonb, " + c.headers + ", '{}'], ARRAY[NULL::interval, " +
            c.deliver_after + ", NULL], ARRAY[NULL::interval, " + c.expires_after + ", NULL])");
        EXPECT_NE(batch.find("ferry: enqueue_batch: element 2: " + c.expected), std::string::npos)
            << "enqueue_batch, expected: " << c.expected << "\nerror: " << batch;
    }
    EXPECT_EQ(count_rows(), 0);
}

TEST_F(SqlApiTest, HeaderValuesThatLookReservedAreAccepted) {
    // The fast check flags any '"ferry-' in the headers' text; the detailed check must then let
    // a header *value* starting with "ferry-" through (only names are reserved).
    EXPECT_EQ(try_enqueue("'orders', 'k', 'x'::bytea, '{\"a\":\"ferry-x\",\"b\":\"\"}'"), "");
    EXPECT_EQ(try_sql("SELECT \"" + schema() +
                      "\".enqueue_batch(ARRAY['orders'], ARRAY['k'], ARRAY['x'::bytea], "
                      "ARRAY['{\"a\":\"ferry-x\"}'::jsonb])"),
              "");
    EXPECT_EQ(count_rows("headers->>'a' = 'ferry-x'"), 2);
}

TEST_F(SqlApiTest, EnqueueBatchWritesEveryElementInArrayOrder) {
    std::vector<std::string> ids;
    {
        pqxx::work tx{conn()};
        const auto r =
            tx.exec("SELECT unnest(\"" + schema() +
                    "\".enqueue_batch(ARRAY['orders', 'orders', 'audit', 'orders'], "
                    "ARRAY['k1', 'k2', 'k1', 'k1'], ARRAY['a'::bytea, 'b', 'c', '\\x00ff'], "
                    "ARRAY['{\"n\":\"0\"}'::jsonb, '{}', '{\"n\":\"2\"}', '{}'], "
                    "ARRAY[NULL, interval '5 seconds', NULL, NULL], "
                    "ARRAY[NULL, NULL, interval '1 hour', NULL]))::text");
        for (const auto& row : r) ids.push_back(row[0].as<std::string>());
        tx.commit();
    }
    ASSERT_EQ(ids.size(), 4u);
    pqxx::nontransaction tx{conn()};
    const auto rows = tx.exec(
        "SELECT message_id::text, topic, key, encode(payload, 'hex'), headers->>'n', "
        "extract(epoch FROM available_at - created_at)::float8, "
        "extract(epoch FROM expires_at - created_at)::float8 FROM " +
        table() + " ORDER BY id");
    ASSERT_EQ(rows.size(), 4u);
    const std::vector<std::string> topics = {"orders", "orders", "audit", "orders"};
    const std::vector<std::string> keys = {"k1", "k2", "k1", "k1"};
    const std::vector<std::string> payloads = {"61", "62", "63", "00ff"};
    for (std::size_t i = 0; i < 4; ++i) {
        EXPECT_EQ(rows[i][0].as<std::string>(), ids[i]) << i;
        EXPECT_EQ(ids[i][14], '7') << ids[i];
        EXPECT_EQ(rows[i][1].as<std::string>(), topics[i]) << i;
        EXPECT_EQ(rows[i][2].as<std::string>(), keys[i]) << i;
        EXPECT_EQ(rows[i][3].as<std::string>(), payloads[i]) << i;
    }
    EXPECT_EQ(rows[0][4].as<std::string>(), "0");
    EXPECT_TRUE(rows[1][4].is_null());
    EXPECT_EQ(rows[2][4].as<std::string>(), "2");
    EXPECT_DOUBLE_EQ(rows[0][5].as<double>(), 0.0);
    EXPECT_DOUBLE_EQ(rows[1][5].as<double>(), 5.0);
    EXPECT_TRUE(rows[0][6].is_null());
    EXPECT_DOUBLE_EQ(rows[2][6].as<double>(), 3600.0);
}

TEST_F(SqlApiTest, EnqueueBatchDefaultsAndEmptyBatch) {
    EXPECT_EQ(try_sql("SELECT \"" + schema() +
                      "\".enqueue_batch(ARRAY['orders', 'orders'], ARRAY['a', 'b'], "
                      "ARRAY['x'::bytea, 'y'])"),
              "");
    EXPECT_EQ(count_rows("headers = '{}' AND available_at = created_at AND expires_at IS NULL"), 2);
    pqxx::work tx{conn()};
    EXPECT_EQ(tx.exec("SELECT cardinality(\"" + schema() +
                      "\".enqueue_batch('{}'::text[], '{}'::text[], '{}'::bytea[]))")[0][0]
                  .as<int>(),
              0);
}

TEST_F(SqlApiTest, EnqueueBatchRejectsArraysOfDifferentLengthsNamingTheArray) {
    const std::string f = "SELECT \"" + schema() + "\".enqueue_batch(";
    EXPECT_NE(try_sql(f + "NULL, ARRAY['k'], ARRAY['x'::bytea])")
                  .find("ferry: enqueue_batch: topics: must not be null"),
              std::string::npos);
    EXPECT_NE(try_sql(f + "ARRAY['t', 'u'], ARRAY['k'], ARRAY['x'::bytea, 'y'])")
                  .find("ferry: enqueue_batch: keys: must be a one-dimensional array of 2 "
                        "elements like topics (got 1)"),
              std::string::npos);
    EXPECT_NE(try_sql(f + "ARRAY['t'], ARRAY['k'], NULL)")
                  .find("ferry: enqueue_batch: payloads: must be a one-dimensional array of 1 "
                        "elements like topics (got null)"),
              std::string::npos);
    EXPECT_NE(try_sql(f + "ARRAY['t'], ARRAY['k'], ARRAY['x'::bytea], ARRAY['{}'::jsonb, '{}'])")
                  .find("ferry: enqueue_batch: headers: must be NULL or a one-dimensional array"),
              std::string::npos);
    EXPECT_NE(try_sql(f + "ARRAY['t'], ARRAY['k'], ARRAY['x'::bytea], NULL, "
                          "ARRAY[interval '1s', interval '2s'])")
                  .find("ferry: enqueue_batch: deliver_after: must be NULL"),
              std::string::npos);
    EXPECT_NE(try_sql(f + "ARRAY['t'], ARRAY['k'], ARRAY['x'::bytea], NULL, NULL, "
                          "'{}'::interval[])")
                  .find("ferry: enqueue_batch: expires_after: must be NULL"),
              std::string::npos);
    EXPECT_NE(try_sql(f + "ARRAY[['t']], ARRAY['k'], ARRAY['x'::bytea])")
                  .find("ferry: enqueue_batch: topics: must be a one-dimensional array"),
              std::string::npos);
    EXPECT_EQ(count_rows(), 0);
}

TEST_F(SqlApiTest, LimitsAreReadOncePerTransaction) {
    // The limits are cached for the transaction: a change to `settings` applies from the next
    // transaction on, in this session and in others.
    pqxx::connection other{ferry::test::pg_dsn()};
    {
        pqxx::work tx{conn()};
        tx.exec("SELECT \"" + schema() + "\".enqueue('orders', 'k', '0123456789'::bytea)");
        {
            pqxx::work admin{other};
            admin.exec("UPDATE \"" + schema() +
                       "\".settings SET value = 5 WHERE name = 'max_payload_bytes'");
            admin.commit();
        }
        tx.exec("SELECT \"" + schema() + "\".enqueue('orders', 'k', '0123456789'::bytea)");
        tx.commit();
    }
    EXPECT_EQ(count_rows(), 2);
    EXPECT_NE(try_enqueue("'orders', 'k', '0123456789'::bytea")
                  .find("payload: 10 bytes is over the limit of 5"),
              std::string::npos);
    EXPECT_NE(try_sql("SELECT \"" + schema() +
                      "\".enqueue_batch(ARRAY['orders'], ARRAY['k'], ARRAY['012345'::bytea])")
                  .find("element 1: payload: 6 bytes is over the limit of 5"),
              std::string::npos);
    EXPECT_EQ(count_rows(), 2);
}

TEST_F(SqlApiTest, UuidV7HasVersionVariantTimestampAndSortsByTime) {
    pqxx::work tx{conn()};
    const auto s = "\"" + schema() + "\"";
    // Version nibble 7, variant 10, and the timestamp of now (within the test's slack).
    const auto r = tx.exec(
        "SELECT get_byte(uuid_send(u), 6) >> 4, get_byte(uuid_send(u), 8) >> 6, "
        "abs(('x' || substr(replace(u::text, '-', ''), 1, 12))::bit(48)::bigint - "
        "floor(date_part('epoch', clock_timestamp()) * 1000)::bigint) "
        "FROM (SELECT " +
        s + ".uuid_v7() AS u FROM generate_series(1, 200)) AS g");
    ASSERT_EQ(r.size(), 200u);
    for (const auto& row : r) {
        EXPECT_EQ(row[0].as<int>(), 7);
        EXPECT_EQ(row[1].as<int>(), 2);
        EXPECT_LT(row[2].as<long long>(), 60000);
    }
    // Ids made in later milliseconds sort later (uuid comparison is bytewise).
    const auto ordered = tx.exec("WITH ids AS (SELECT n, " + s +
                                 ".uuid_v7() AS u, pg_sleep(0.002) FROM generate_series(1, 20) n) "
                                 "SELECT bool_and(u > prev) FROM (SELECT u, lag(u) OVER "
                                 "(ORDER BY n) AS prev FROM ids) AS w WHERE prev IS NOT NULL");
    EXPECT_TRUE(ordered[0][0].as<bool>());
    // 10000 ids, no duplicates.
    EXPECT_EQ(
        tx.exec("SELECT count(DISTINCT " + s + ".uuid_v7()) FROM generate_series(1, 10000)")[0][0]
            .as<int>(),
        10000);
}

TEST_F(SqlApiTest, TableConstraintsGuardDirectInserts) {
    // A client that bypasses enqueue() still cannot store a topic Kafka would refuse, or headers
    // that are not a JSON object (migration 0104: the rules are domains on the columns now).
    const std::string long_topic(250, 't');
    auto refused = [&](const std::string& topic, const std::string& headers) {
        pqxx::work tx{conn()};
        try {
            tx.exec_params("INSERT INTO " + table() +
                               " (message_id, topic, payload, headers) VALUES "
                               "(gen_random_uuid(), $1, 'x', $2::jsonb)",
                           topic, headers);
        } catch (const pqxx::check_violation&) {
            return true;
        }
        return false;
    };
    for (const std::string topic :
         {"bad topic", "", ".", "..", "caf\xc3\xa9", long_topic.c_str()}) {
        EXPECT_TRUE(refused(topic, "{}")) << "topic \"" << topic << "\"";
    }
    for (const std::string headers : {"[]", "\"x\"", "1", "null"}) {
        EXPECT_TRUE(refused("orders", headers)) << "headers " << headers;
    }
    EXPECT_FALSE(refused(std::string(249, 't'), "{\"a\": \"b\"}"));
    EXPECT_FALSE(refused("orders.v1_x-y", "{}"));
    {
        pqxx::work tx{conn()};
        EXPECT_THROW(tx.exec("INSERT INTO \"" + schema() +
                             "\".half_message (message_id, topic, key, payload, "
                             "tx_ref, producer_group) VALUES (gen_random_uuid(), 'bad topic', '', "
                             "'x', 'r', 'g')"),
                     pqxx::check_violation);
    }
}
