// ferry::consumer::to_options / to_http_options: every field of a `consumers:` entry lands in
// consumer_options, empty fields fall back to the shared sections, and the defaults of the two
// structs agree (so a file without a key behaves like code that never set the option).
#include "ferry/consumer/from_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "ferry/common/error.hpp"

namespace {

using namespace std::chrono_literals;

ferry::config::ferry_config load(const std::string& yaml) {
    auto r = ferry::config::load_string(yaml, "test.yaml",
                                        [](const std::string&) { return std::nullopt; });
    EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors.front().to_string());
    return r.config;
}

TEST(FromConfigTest, DefaultsAgreeWithConsumerOptions) {
    const auto cfg = load("consumers:\n  - group: g\n    topics: [t]\n");
    const auto o = ferry::consumer::to_options(cfg, cfg.consumers.at(0));
    const ferry::consumer::consumer_options d;
    EXPECT_EQ(o.dedup, d.dedup);
    EXPECT_EQ(o.lanes, d.lanes);
    EXPECT_EQ(o.max_batch, d.max_batch);
    EXPECT_EQ(o.max_queued, d.max_queued);
    EXPECT_EQ(o.max_queued_bytes, d.max_queued_bytes);
    EXPECT_EQ(o.max_headers, d.max_headers);
    EXPECT_EQ(o.max_header_bytes, d.max_header_bytes);
    EXPECT_EQ(o.tx_batch_max, d.tx_batch_max);
    EXPECT_EQ(o.tx_batch_max_time, d.tx_batch_max_time);
    EXPECT_EQ(o.poll_timeout, d.poll_timeout);
    EXPECT_EQ(o.commit_interval, d.commit_interval);
    EXPECT_EQ(o.revoke_timeout, d.revoke_timeout);
    EXPECT_EQ(o.shutdown_timeout, d.shutdown_timeout);
    EXPECT_EQ(o.session_timeout, d.session_timeout);
    EXPECT_EQ(o.auto_offset_reset, d.auto_offset_reset);
    EXPECT_EQ(o.redis_key_prefix, d.redis_key_prefix);
    EXPECT_EQ(o.done_window, d.done_window);
    EXPECT_EQ(o.lease, d.lease);
    EXPECT_EQ(o.inbox_lock_wait, d.inbox_lock_wait);
    EXPECT_EQ(o.retry.immediate_tries, d.retry.immediate_tries);
    EXPECT_EQ(o.retry.immediate_delay, d.retry.immediate_delay);
    EXPECT_EQ(o.retry.base_delay, d.retry.base_delay);
    EXPECT_EQ(o.retry.max_delay, d.retry.max_delay);
    EXPECT_EQ(o.retry.max_attempts, d.retry.max_attempts);
    EXPECT_EQ(o.retry_workers, d.retry_workers);
    EXPECT_EQ(o.retry_poll, d.retry_poll);
    EXPECT_EQ(o.retry_batch, d.retry_batch);
    EXPECT_EQ(o.retry_claim_ttl, d.retry_claim_ttl);
    EXPECT_EQ(o.inbox_retention, d.inbox_retention);
    EXPECT_EQ(o.inbox_prune_interval, d.inbox_prune_interval);
    EXPECT_EQ(o.inbox_prune_batch, d.inbox_prune_batch);
    EXPECT_EQ(o.dead_letter_topic, d.dead_letter_topic);
    // Shared sections fill what the entry leaves empty.
    EXPECT_EQ(o.dsn, cfg.postgres.dsn);
    EXPECT_EQ(o.schema, cfg.postgres.schema);
    EXPECT_EQ(o.redis_url, cfg.redis.url);
    EXPECT_EQ(o.brokers, cfg.kafka.brokers);
    EXPECT_EQ(o.connect_timeout, cfg.postgres.connect_timeout);
}

TEST(FromConfigTest, EveryKeyReachesItsOption) {
    const auto cfg = load(R"(
postgres: {dsn: "postgresql://db/shared", schema: shared}
kafka: {brokers: "k1:9092,k2:9092", topic_prefix: "p.", topic_map: {orders: shop-orders}}
consumers:
  - group: inventory
    topics: [orders, payments]
    instance_id: inv-1
    dsn: postgresql://db/inv
    schema: inv
    dedup: redis
    lanes: 7
    redis_url: redis://cache:6380/1
    redis_key_prefix: inv
    done_window: 2h
    lease: 5s
    batch_max: 9
    batch_max_time: 15ms
    poll_batch: 321
    poll_timeout: 40ms
    commit_interval: 300ms
    max_queued: 999
    max_queued_bytes: 2MiB
    max_headers: 12
    max_header_bytes: 2KiB
    auto_offset_reset: latest
    session_timeout: 7s
    revoke_timeout: 2s
    shutdown_timeout: 3s
    kafka_properties: {fetch.wait.max.ms: "25"}
    dead_letter_topic: inv-dlq
    retry: {immediate_tries: 2, immediate_delay: 1ms, base_delay: 10ms, max_delay: 1s,
            max_attempts: 4, workers: 3, poll: 20ms, batch: 11, claim_ttl: 9s}
    inbox: {retention: 48h, prune_interval: 10s, prune_batch: 77, lock_wait: 300ms}
)");
    const auto o = ferry::consumer::to_options(cfg, cfg.consumers.at(0));
    EXPECT_EQ(o.brokers, "k1:9092,k2:9092");
    EXPECT_EQ(o.group, "inventory");
    EXPECT_EQ(o.instance_id, "inv-1");
    EXPECT_EQ(o.dsn, "postgresql://db/inv");
    EXPECT_EQ(o.schema, "inv");
    EXPECT_EQ(o.dedup, ferry::consumer::dedup_mode::redis);
    EXPECT_EQ(o.lanes, 7u);
    EXPECT_EQ(o.redis_url, "redis://cache:6380/1");
    EXPECT_EQ(o.redis_key_prefix, "inv");
    EXPECT_EQ(o.done_window, 2h);
    EXPECT_EQ(o.lease, 5s);
    EXPECT_EQ(o.tx_batch_max, 9u);
    EXPECT_EQ(o.tx_batch_max_time, 15ms);
    EXPECT_EQ(o.max_batch, 321u);
    EXPECT_EQ(o.poll_timeout, 40ms);
    EXPECT_EQ(o.commit_interval, 300ms);
    EXPECT_EQ(o.max_queued, 999u);
    EXPECT_EQ(o.max_queued_bytes, 2u << 20);
    EXPECT_EQ(o.max_headers, 12u);
    EXPECT_EQ(o.max_header_bytes, 2048u);
    EXPECT_EQ(o.auto_offset_reset, "latest");
    EXPECT_EQ(o.session_timeout, 7s);
    EXPECT_EQ(o.revoke_timeout, 2s);
    EXPECT_EQ(o.shutdown_timeout, 3s);
    EXPECT_EQ(o.kafka_properties.at("fetch.wait.max.ms"), "25");
    EXPECT_EQ(o.dead_letter_topic, "inv-dlq");
    EXPECT_EQ(o.retry.immediate_tries, 2);
    EXPECT_EQ(o.retry.immediate_delay, 1ms);
    EXPECT_EQ(o.retry.base_delay, 10ms);
    EXPECT_EQ(o.retry.max_delay, 1s);
    EXPECT_EQ(o.retry.max_attempts, 4);
    EXPECT_EQ(o.retry_workers, 3u);
    EXPECT_EQ(o.retry_poll, 20ms);
    EXPECT_EQ(o.retry_batch, 11);
    EXPECT_EQ(o.retry_claim_ttl, 9s);
    EXPECT_EQ(o.inbox_retention, 48h);
    EXPECT_EQ(o.inbox_prune_interval, 10s);
    EXPECT_EQ(o.inbox_prune_batch, 77);
    EXPECT_EQ(o.inbox_lock_wait, 300ms);
    EXPECT_EQ(ferry::consumer::kafka_topics(cfg, cfg.consumers.at(0)),
              (std::vector<std::string>{"p.shop-orders", "p.payments"}));
}

TEST(FromConfigTest, HttpOptionsReadTheTokenFromTheNamedVariable) {
    ferry::config::http_config h;
    h.listen = "127.0.0.1:0";
    h.token_env = "MY_TOKEN";
    h.token_for_metrics = true;
    const std::map<std::string, std::string> env{{"MY_TOKEN", "0123456789abcdef-token"}};
    const auto o = ferry::consumer::to_http_options(
        h, [&](const std::string& n) -> std::optional<std::string> {
            const auto it = env.find(n);
            return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
        });
    EXPECT_EQ(o.listen, "127.0.0.1:0");
    EXPECT_EQ(o.token, "0123456789abcdef-token");
    EXPECT_TRUE(o.token_for_metrics);

    try {
        (void)ferry::consumer::to_http_options(h, [](const std::string&) { return std::nullopt; });
        FAIL() << "an unset token variable was accepted";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "consumer.http_token");
        EXPECT_THAT(e.what(), testing::HasSubstr("MY_TOKEN"));
    }
}

}  // namespace
