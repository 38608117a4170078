// Unit tests of the `consumers:` section of ferry::config: every key read, defaults, and each
// kind of mistake (unknown key, wrong type, out of range, missing, duplicate) reported with the
// field's path and its line:column, all in one pass. No servers.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <set>
#include <string>

#include "config_test_support.hpp"
#include "ferry/config/config.hpp"

namespace {

using namespace std::chrono_literals;
using ferry::config::diagnostic;
using ferry::config::load_result;
using testing::HasSubstr;

using ferry_config_test::all_messages;
using ferry_config_test::expect_at;
using ferry_config_test::load;
using ferry_config_test::only_error_for;

// Before this section existed, `consumers:` was an unknown section: this load failed.
TEST(ConfigConsumersTest, EveryKeyIsRead) {
    const auto r = load(R"(
consumers:
  - group: inventory
    topics: [order-placed, order-cancelled]
    ordered_retry: false
    instance_id: inv-1
    dsn: postgresql://inv:${INV_PW}@db/inventory
    schema: ferry_inv
    dedup: redis_and_inbox
    lanes: 8
    redis_url: redis://:${REDIS_PW}@cache:6380/2
    redis_key_prefix: inv:dedup
    done_window: 2h
    lease: 5s
    batch_max: 50
    batch_max_time: 20ms
    poll_batch: 1000
    poll_timeout: 50ms
    commit_interval: 500ms
    max_queued: 2000
    max_queued_bytes: 8MiB
    max_headers: 32
    max_header_bytes: 4KiB
    auto_offset_reset: latest
    session_timeout: 6s
    revoke_timeout: 3s
    shutdown_timeout: 4s
    kafka_properties:
      fetch.wait.max.ms: "50"
      sasl.password: ${KAFKA_PW}
    dead_letter_topic: inventory-dlq
    retry:
      immediate_tries: 2
      immediate_delay: 5ms
      base_delay: 250ms
      max_delay: 1m
      max_attempts: 7
      workers: 2
      poll: 100ms
      batch: 20
      claim_ttl: 30s
    inbox:
      retention: 72h
      prune_interval: 30s
      prune_batch: 5000
      lock_wait: 1s
  - group: notifications
    topics: [order-placed]
    dedup: redis
)",
                        {{"INV_PW", "pg-secret-1"},
                         {"REDIS_PW", "redis-secret-2"},
                         {"KAFKA_PW", "kafka-secret-3"}});
    ASSERT_TRUE(r.ok()) << all_messages(r);
    ASSERT_EQ(r.config.consumers.size(), 2u);
    const auto& c = r.config.consumers[0];
    EXPECT_EQ(c.group, "inventory");
    EXPECT_EQ(c.topics, (std::vector<std::string>{"order-placed", "order-cancelled"}));
    EXPECT_FALSE(c.ordered_retry);
    EXPECT_EQ(c.instance_id, "inv-1");
    EXPECT_EQ(c.dsn, "postgresql://inv:pg-secret-1@db/inventory");
    EXPECT_EQ(c.schema, "ferry_inv");
    EXPECT_EQ(c.dedup, "redis_and_inbox");
    EXPECT_EQ(c.lanes, 8u);
    EXPECT_EQ(c.redis_url, "redis://:redis-secret-2@cache:6380/2");
    EXPECT_EQ(c.redis_key_prefix, "inv:dedup");
    EXPECT_EQ(c.done_window, 2h);
    EXPECT_EQ(c.lease, 5s);
    EXPECT_EQ(c.batch_max, 50u);
    EXPECT_EQ(c.batch_max_time, 20ms);
    EXPECT_EQ(c.poll_batch, 1000u);
    EXPECT_EQ(c.poll_timeout, 50ms);
    EXPECT_EQ(c.commit_interval, 500ms);
    EXPECT_EQ(c.max_queued, 2000u);
    EXPECT_EQ(c.max_queued_bytes, 8u << 20);
    EXPECT_EQ(c.max_headers, 32u);
    EXPECT_EQ(c.max_header_bytes, 4096u);
    EXPECT_EQ(c.auto_offset_reset, "latest");
    EXPECT_EQ(c.session_timeout, 6s);
    EXPECT_EQ(c.revoke_timeout, 3s);
    EXPECT_EQ(c.shutdown_timeout, 4s);
    EXPECT_EQ(c.kafka_properties.at("fetch.wait.max.ms"), "50");
    EXPECT_EQ(c.kafka_properties.at("sasl.password"), "kafka-secret-3");
    EXPECT_EQ(c.dead_letter_topic, "inventory-dlq");
    EXPECT_EQ(c.retry.immediate_tries, 2u);
    EXPECT_EQ(c.retry.immediate_delay, 5ms);
    EXPECT_EQ(c.retry.base_delay, 250ms);
    EXPECT_EQ(c.retry.max_delay, 1min);
    EXPECT_EQ(c.retry.max_attempts, 7u);
    EXPECT_EQ(c.retry.workers, 2u);
    EXPECT_EQ(c.retry.poll, 100ms);
    EXPECT_EQ(c.retry.batch, 20u);
    EXPECT_EQ(c.retry.claim_ttl, 30s);
    EXPECT_EQ(c.inbox.retention, 72h);
    EXPECT_EQ(c.inbox.prune_interval, 30s);
    EXPECT_EQ(c.inbox.prune_batch, 5000u);
    EXPECT_EQ(c.inbox.lock_wait, 1s);
    EXPECT_EQ(r.config.consumers[1].dedup, "redis");

    ASSERT_NE(ferry::config::find_consumer(r.config, "notifications"), nullptr);
    EXPECT_EQ(ferry::config::find_consumer(r.config, "notifications")->group, "notifications");
    EXPECT_EQ(ferry::config::find_consumer(r.config, "nobody"), nullptr);

    // Rendered without a secret, and the rendering loads back to the same entries.
    const auto shown = ferry::config::render_redacted(r.config);
    for (const char* secret : {"pg-secret-1", "redis-secret-2", "kafka-secret-3"}) {
        EXPECT_EQ(shown.find(secret), std::string::npos) << secret << " in\n" << shown;
    }
    const auto again = load(shown);
    ASSERT_TRUE(again.ok()) << all_messages(again) << "\n" << shown;
    ASSERT_EQ(again.config.consumers.size(), 2u);
    const auto& back = again.config.consumers[0];
    EXPECT_EQ(back.topics, c.topics);
    EXPECT_EQ(back.lanes, 8u);
    EXPECT_EQ(back.retry.max_attempts, 7u);
    EXPECT_EQ(back.inbox.retention, 72h);
    EXPECT_EQ(back.max_queued_bytes, c.max_queued_bytes);
    EXPECT_EQ(back.kafka_properties.at("fetch.wait.max.ms"), "50");
}

TEST(ConfigConsumersTest, MinimalEntryTakesTheDefaults) {
    const auto r = load("consumers:\n  - group: g\n    topics: [t]\n");
    ASSERT_TRUE(r.ok()) << all_messages(r);
    ASSERT_EQ(r.config.consumers.size(), 1u);
    const auto& c = r.config.consumers[0];
    const ferry::config::consumer_config d;
    EXPECT_EQ(c.dedup, "inbox");
    EXPECT_EQ(c.lanes, d.lanes);
    EXPECT_TRUE(c.dsn.empty());  // postgres.dsn then
    EXPECT_TRUE(c.redis_url.empty());
    EXPECT_EQ(c.inbox.retention, std::chrono::hours(24 * 7));
    EXPECT_EQ(c.retry.max_attempts, d.retry.max_attempts);
    EXPECT_EQ(c.batch_max, d.batch_max);

    EXPECT_TRUE(load("").config.consumers.empty());
    EXPECT_TRUE(load("consumers:\n").ok());
}

TEST(ConfigConsumersTest, UnknownKeysNameTheFieldWithAHint) {
    const auto r = load(R"(consumers:
  - group: g
    topics: [t]
    lane: 4
    retry:
      max_attempt: 3
    inbox:
      colour: blue
)");
    ASSERT_FALSE(r.ok());
    const auto lane = only_error_for(r, "consumers[0].lane");
    expect_at(lane, 4, 5);
    EXPECT_THAT(lane.message, HasSubstr("did you mean \"lanes\""));
    const auto attempts = only_error_for(r, "consumers[0].retry.max_attempt");
    expect_at(attempts, 6, 7);
    EXPECT_THAT(attempts.message, HasSubstr("did you mean \"max_attempts\""));
    const auto colour = only_error_for(r, "consumers[0].inbox.colour");
    expect_at(colour, 8, 7);
    EXPECT_THAT(colour.message, HasSubstr("retention"));  // the known keys are listed
    EXPECT_EQ(r.errors.size(), 3u) << all_messages(r);
    EXPECT_TRUE(r.config.consumers.empty());  // an entry with errors is not used
}

TEST(ConfigConsumersTest, WrongTypesNameTheField) {
    const auto r = load(R"(consumers:
  - group: g
    topics: t
    lanes: [4]
    ordered_retry: maybe
    retry: 5
    kafka_properties: [a]
    lease: 30
  - just a string
)");
    ASSERT_FALSE(r.ok());
    expect_at(only_error_for(r, "consumers[0].topics"), 3, 13);
    const auto lanes = only_error_for(r, "consumers[0].lanes");
    expect_at(lanes, 4, 12);
    EXPECT_THAT(lanes.message, HasSubstr("expected a single value, got a list"));
    EXPECT_THAT(only_error_for(r, "consumers[0].ordered_retry").message,
                HasSubstr("expected true or false"));
    expect_at(only_error_for(r, "consumers[0].retry"), 6, 12);
    expect_at(only_error_for(r, "consumers[0].kafka_properties"), 7, 23);
    EXPECT_THAT(only_error_for(r, "consumers[0].lease").message,
                HasSubstr("expected a duration with a unit"));
    expect_at(only_error_for(r, "consumers[1]"), 9, 5);

    const auto map = load("consumers:\n  inventory:\n    topics: [t]\n");
    EXPECT_THAT(only_error_for(map, "consumers").message, HasSubstr("expected a list"));
}

TEST(ConfigConsumersTest, OutOfRangeValuesNameTheFieldAndTheRange) {
    const auto r = load(R"(consumers:
  - group: g
    topics: [t, "bad topic"]
    lanes: 0
    batch_max: 20000
    max_queued_bytes: 1KiB
    dedup: sometimes
    auto_offset_reset: middle
    retry:
      immediate_tries: 5
      max_attempts: 3
    inbox:
      retention: 10s
  - group: h
    topics: [t]
    lanes: 257
)");
    ASSERT_FALSE(r.ok());
    const auto lanes = only_error_for(r, "consumers[0].lanes");
    expect_at(lanes, 4, 12);
    EXPECT_THAT(lanes.message, HasSubstr("must be between 1 and 256"));
    EXPECT_THAT(lanes.to_string(), HasSubstr("test.yaml:4:12: consumers[0].lanes: must be"));
    expect_at(only_error_for(r, "consumers[1].lanes"), 16, 12);
    expect_at(only_error_for(r, "consumers[0].topics[1]"), 3, 17);
    EXPECT_THAT(only_error_for(r, "consumers[0].batch_max").message,
                HasSubstr("between 1 and 10000"));
    EXPECT_THAT(only_error_for(r, "consumers[0].max_queued_bytes").message,
                HasSubstr("between 1MiB"));
    EXPECT_THAT(only_error_for(r, "consumers[0].dedup").message,
                HasSubstr("none, redis, inbox, redis_and_inbox"));
    EXPECT_THAT(only_error_for(r, "consumers[0].auto_offset_reset").message,
                HasSubstr("earliest, latest"));
    EXPECT_THAT(only_error_for(r, "consumers[0].retry.max_attempts").message,
                HasSubstr("at least retry.immediate_tries (5)"));
    EXPECT_THAT(only_error_for(r, "consumers[0].inbox.retention").message, HasSubstr("between 1m"));
}

TEST(ConfigConsumersTest, RequiredKeysDuplicatesAndOwnedKafkaProperties) {
    const auto r = load(R"(consumers:
  - dedup: none
  - group: g
    topics: []
  - group: g
    topics: [t, t]
    kafka_properties:
      group.id: other
      enable.auto.commit: "true"
      bootstrap.servers: x:1
)");
    ASSERT_FALSE(r.ok());
    expect_at(only_error_for(r, "consumers[0].group"), 2, 5);
    expect_at(only_error_for(r, "consumers[0].topics"), 2, 5);
    expect_at(only_error_for(r, "consumers[1].topics"), 4, 13);
    const auto dup = only_error_for(r, "consumers[2].group");
    expect_at(dup, 5, 12);
    EXPECT_THAT(dup.message, HasSubstr("already configured at line 3"));
    EXPECT_THAT(only_error_for(r, "consumers[2].topics[1]").message, HasSubstr("listed twice"));
    EXPECT_THAT(only_error_for(r, "consumers[2].kafka_properties.group.id").message,
                HasSubstr("group"));
    EXPECT_THAT(only_error_for(r, "consumers[2].kafka_properties.enable.auto.commit").message,
                HasSubstr("commits offsets itself"));
    EXPECT_THAT(only_error_for(r, "consumers[2].kafka_properties.bootstrap.servers").message,
                HasSubstr("kafka.brokers"));
}

TEST(ConfigConsumersTest, SecretsNeverInDiagnostics) {
    const auto r = load(R"(consumers:
  - group: g
    topics: [t]
    dsn: "mysql://u:pw-9876@h/db"
    redis_url: "redis://:pw-5432@"
    kafka_properties:
      sasl.password: [pw-1234]
)");
    ASSERT_FALSE(r.ok());
    const auto text = all_messages(r);
    EXPECT_THAT(text, HasSubstr("consumers[0].dsn"));
    EXPECT_THAT(text, HasSubstr("consumers[0].redis_url"));
    for (const char* secret : {"pw-9876", "pw-5432", "pw-1234"}) {
        EXPECT_EQ(text.find(secret), std::string::npos) << text;
    }
}

TEST(ConfigConsumersTest, KafkaTopicAppliesPrefixAndMap) {
    const auto r = load(R"(kafka:
  topic_prefix: "demo."
  topic_map: {orders: shop-orders}
)");
    ASSERT_TRUE(r.ok()) << all_messages(r);
    EXPECT_EQ(ferry::config::kafka_topic(r.config.kafka, "orders"), "demo.shop-orders");
    EXPECT_EQ(ferry::config::kafka_topic(r.config.kafka, "payments"), "demo.payments");
}

}  // namespace
