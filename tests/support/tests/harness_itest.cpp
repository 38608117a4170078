// Checks that the servers the harness hands to tests are the real ones the project claims:
// PostgreSQL 15 with durable settings, Redis 7, and a Kafka that answers metadata requests.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <pqxx/pqxx>
#include <string>

#include "ferry/test/env.hpp"
#include "ferry/test/kafka_reader.hpp"
#include "ferry/test/scoped_schema.hpp"
#include "ferry/test/unique_name.hpp"

namespace {

using namespace std::chrono_literals;

std::string show(pqxx::connection& conn, const std::string& setting) {
    pqxx::nontransaction tx(conn);
    return tx.exec1("SHOW " + setting)[0].as<std::string>();
}

TEST(HarnessTest, PostgresIsVersion15WithDurableSettings) {
    pqxx::connection conn(ferry::test::pg_dsn());
    EXPECT_TRUE(show(conn, "server_version").starts_with("15")) << show(conn, "server_version");
    // Benchmarks and durability tests are only meaningful with real flushes.
    EXPECT_EQ(show(conn, "fsync"), "on");
    EXPECT_EQ(show(conn, "synchronous_commit"), "on");
    EXPECT_EQ(show(conn, "full_page_writes"), "on");
    EXPECT_EQ(conn.dbname(), std::string("ferry_test"));
}

// The harness and docker-compose.yml configure PostgreSQL alike, so this holds for both.
TEST(HarnessTest, PostgresAllowsLogicalDecodingAndManyConnections) {
    pqxx::connection conn(ferry::test::pg_dsn());
    EXPECT_EQ(show(conn, "wal_level"), "logical");
    EXPECT_GE(std::stoi(show(conn, "max_replication_slots")), 10);
    EXPECT_GE(std::stoi(show(conn, "max_connections")), 200);
}

TEST(HarnessTest, PgCtlWrapperReachesTheHarnessServer) {
    if (std::getenv("FERRY_TEST_PG_BIN") == nullptr) {
        EXPECT_THROW((void)ferry::test::run_pg_ctl({"status"}), ferry::test::missing_server_error);
        return;
    }
    // `status` only: stopping the shared server would break tests running in parallel.
    EXPECT_EQ(ferry::test::run_pg_ctl({"status"}), 0);
}

TEST(HarnessTest, ScopedSchemaIsDroppedAtScopeEnd) {
    std::string name;
    {
        ferry::test::scoped_schema schema("harness");
        name = schema.name();
        EXPECT_TRUE(name.starts_with("harness_")) << name;
        pqxx::connection conn(schema.dsn());
        pqxx::work tx(conn);
        tx.exec("CREATE SCHEMA " + tx.quote_name(name));
        tx.exec("CREATE TABLE " + tx.quote_name(name) + ".t (id int primary key)");
        tx.commit();
    }
    pqxx::connection conn(ferry::test::pg_dsn());
    pqxx::nontransaction tx(conn);
    const auto count =
        tx.exec1("SELECT count(*) FROM pg_namespace WHERE nspname = " + tx.quote(name))[0]
            .as<int>();
    EXPECT_EQ(count, 0) << "schema " << name << " survived its scoped_schema";
}

struct redis_deleter {
    void operator()(redisContext* c) const { redisFree(c); }
};
struct reply_deleter {
    void operator()(redisReply* r) const { freeReplyObject(r); }
};
using redis_ptr = std::unique_ptr<redisContext, redis_deleter>;
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

TEST(HarnessTest, RedisAnswersPingAndIsVersion7) {
    const auto ep = ferry::test::redis_address();
    timeval timeout{5, 0};
    redis_ptr ctx(redisConnectWithTimeout(ep.host.c_str(), ep.port, timeout));
    ASSERT_NE(ctx, nullptr);
    ASSERT_EQ(ctx->err, 0) << ctx->errstr << " (" << ferry::test::redis_url() << ")";

    reply_ptr pong(static_cast<redisReply*>(redisCommand(ctx.get(), "PING")));
    ASSERT_NE(pong, nullptr) << ctx->errstr;
    ASSERT_EQ(pong->type, REDIS_REPLY_STATUS);
    EXPECT_EQ(std::string(pong->str, pong->len), "PONG");

    reply_ptr info(static_cast<redisReply*>(redisCommand(ctx.get(), "INFO server")));
    ASSERT_NE(info, nullptr) << ctx->errstr;
    ASSERT_EQ(info->type, REDIS_REPLY_STRING);
    const std::string text(info->str, info->len);
    EXPECT_NE(text.find("redis_version:7."), std::string::npos) << text.substr(0, 200);
}

TEST(HarnessTest, KafkaAnswersMetadataAndRoundTripsARecord) {
    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", ferry::test::kafka_brokers().c_str(),
                                errstr, sizeof(errstr)),
              RD_KAFKA_CONF_OK)
        << errstr;
    rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr));
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    ASSERT_NE(rk, nullptr) << errstr;
    std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> producer(rk, rd_kafka_destroy);

    const rd_kafka_metadata_t* md = nullptr;
    ASSERT_EQ(rd_kafka_metadata(rk, 1, nullptr, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    EXPECT_GE(md->broker_cnt, 1);
    rd_kafka_metadata_destroy(md);

    const std::string topic = ferry::test::unique_name("harness");
    const std::string key = "k1";
    const std::string value = "hello";
    ASSERT_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()),
                                RD_KAFKA_V_KEY(key.data(), key.size()),
                                RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);

    ferry::test::kafka_reader reader(topic);
    const auto records = reader.read(1, 30s);
    ASSERT_EQ(records.size(), 1u) << reader.last_error();
    EXPECT_EQ(records[0].key, key);
    EXPECT_EQ(records[0].value, value);
}

}  // namespace
