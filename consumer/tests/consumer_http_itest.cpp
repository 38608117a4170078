// The consumer's HTTP endpoints (ferry/consumer/http.hpp) against real PostgreSQL, Redis and the
// embedded Kafka: /healthz, /readyz before and after partitions are assigned and after stop,
// /readyz with Redis unreachable (negative control: assigned partitions alone are not "ready"),
// /metrics from the shared registry checked by promtool, and the bearer token.
#include <gmock/gmock.h>
#include <httplib.h>

#include <cstdio>
#include <fstream>

#include "consumer_fixture.hpp"
#include "ferry/common/metrics.hpp"
#include "ferry/consumer/http.hpp"
#include "ferry/test/run_command.hpp"

using namespace ferry_consumer_test;
using ferry::consumer::dedup_mode;

namespace {

int status_of(httplib::Client& client, const std::string& path) {
    auto res = client.Get(path.c_str());
    return res ? res->status : -1;
}

std::string body_of(httplib::Client& client, const std::string& path) {
    auto res = client.Get(path.c_str());
    return res ? res->body : std::string("<no response>");
}

// The value of the first sample line starting with `series` ("name{labels}"), or -1.
double sample(const std::string& text, const std::string& series) {
    const auto pos = text.find("\n" + series + " ");
    if (pos == std::string::npos) return -1;
    return std::stod(text.substr(pos + series.size() + 2));
}

ferry::consumer::http_options http_opts(ferry::metrics::registry& registry) {
    ferry::consumer::http_options h;
    h.listen = "127.0.0.1:0";
    h.metrics = &registry;
    h.depth_interval = std::chrono::milliseconds(0);  // count the tables at every scrape
    return h;
}

}  // namespace

TEST_F(ConsumerTest, HttpReadyzFollowsAssignmentAndMetricsPassPromtool) {
    ferry::metrics::registry registry;
    auto o = options(dedup_mode::redis_and_inbox);
    ferry::consumer::consumer c(o);
    // One poison message: a permanent error, so it becomes a dead letter (depth 1).
    subscribe_witness(c, dedup_mode::redis_and_inbox, "a", [](const ferry::consumer::message& m) {
        if (m.key == std::optional<std::string>("poison")) {
            throw ferry::error(ferry::error_kind::permanent, "test.poison", "poison");
        }
    });
    ferry::consumer::http_server http(http_opts(registry), {&c});
    httplib::Client client("127.0.0.1", http.port());
    client.set_read_timeout(10, 0);

    EXPECT_EQ(status_of(client, "/healthz"), 200);
    // Not started: not ready, and the body says why.
    EXPECT_EQ(status_of(client, "/readyz"), 503);
    EXPECT_THAT(body_of(client, "/readyz"), testing::HasSubstr("\"running\":false"));

    c.start();
    std::vector<sent_message> sent;
    for (int i = 0; i < 20; ++i) {
        sent.push_back({new_message_id(), "k" + std::to_string(i % 5), i});
        _producer->send(_topic, sent.back());
    }
    _producer->send(_topic, "poison", "x", new_message_id());
    _producer->flush();
    ASSERT_TRUE(wait_until([&] { return c.metrics().processed >= 20; }, 60s))
        << c.metrics().processed;
    ASSERT_TRUE(wait_until([&] { return c.metrics().dead_letters >= 1; }, 60s));
    ASSERT_TRUE(wait_until([&] { return status_of(client, "/readyz") == 200; }, 30s))
        << body_of(client, "/readyz");
    const auto ready = body_of(client, "/readyz");
    EXPECT_THAT(ready, testing::HasSubstr("\"postgres\":\"ok\""));
    EXPECT_THAT(ready, testing::HasSubstr("\"redis\":\"ok\""));

    // Lag per partition is refreshed every second: wait for the series of every partition.
    const std::string g = "group=\"" + _group + "\"";
    std::string text;
    ASSERT_TRUE(wait_until(
        [&] {
            text = body_of(client, "/metrics");
            for (int p = 0; p < partitions; ++p) {
                if (sample(text, "ferry_consumer_partition_lag{" + g + ",partition=\"" +
                                     std::to_string(p) + "\",topic=\"" + _topic + "\"}") < 0) {
                    return false;
                }
            }
            return true;
        },
        30s))
        << text;
    EXPECT_EQ(sample(text, "ferry_consumer_processed_total{" + g + "}"), 20) << text;
    EXPECT_EQ(sample(text, "ferry_consumer_dead_letters_total{" + g + "}"), 1) << text;
    EXPECT_EQ(sample(text, "ferry_consumer_dead_letter_depth{" + g + "}"), 1) << text;
    EXPECT_EQ(sample(text, "ferry_consumer_retry_depth{" + g + "}"), 0) << text;
    EXPECT_GE(sample(text, "ferry_consumer_batch_size{" + g + "}"), 0) << text;
    EXPECT_GE(sample(text, "ferry_consumer_duplicates_absorbed_total{" + g + "}"), 0) << text;
    EXPECT_EQ(sample(text, "ferry_consumer_assigned_partitions{" + g + "}"), partitions) << text;

    // The exposition passes Prometheus' own linter (promtool, Debian package `prometheus`).
    const auto path = "/tmp/" + ferry::test::unique_name("consumer_metrics") + ".prom";
    {
        std::ofstream out(path);
        out << text;
    }
    const auto check = ferry::test::run_command("promtool check metrics < " + path + " 2>&1");
    EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << text;
    std::remove(path.c_str());

    c.stop();
    EXPECT_EQ(status_of(client, "/readyz"), 503);
    EXPECT_EQ(status_of(client, "/healthz"), 200);
}

// Negative control: partitions assigned and PostgreSQL fine, but the Redis the dedup mode uses
// is unreachable (the runtime falls back to the inbox alone): /readyz must say 503 and why.
TEST_F(ConsumerTest, HttpReadyzIsNotReadyWhenRedisIsUnreachable) {
    ferry::metrics::registry registry;
    auto o = options(dedup_mode::redis_and_inbox);
    o.redis_url = "redis://127.0.0.1:1/0";
    ferry::consumer::consumer c(o);
    subscribe_witness(c, dedup_mode::redis_and_inbox, "a");
    ferry::consumer::http_server http(http_opts(registry), {&c});
    httplib::Client client("127.0.0.1", http.port());
    client.set_read_timeout(10, 0);
    c.start();
    ASSERT_TRUE(wait_until([&] { return c.metrics().assigned_partitions > 0; }, 30s));
    const auto body = body_of(client, "/readyz");
    EXPECT_EQ(status_of(client, "/readyz"), 503) << body;
    EXPECT_THAT(body, testing::HasSubstr("\"redis\":\"unreachable\""));
    EXPECT_THAT(body, testing::HasSubstr("\"postgres\":\"ok\""));
    c.stop();
}

TEST_F(ConsumerTest, HttpMetricsNeedTheBearerTokenWhenAsked) {
    ferry::metrics::registry registry;
    ferry::consumer::consumer c(options(dedup_mode::none));
    subscribe_witness(c, dedup_mode::none, "a");
    auto h = http_opts(registry);
    h.token = "a-long-enough-test-token";
    h.token_for_metrics = true;
    ferry::consumer::http_server http(h, {&c});
    httplib::Client client("127.0.0.1", http.port());
    EXPECT_EQ(status_of(client, "/metrics"), 401);
    httplib::Headers wrong{{"Authorization", "Bearer not-the-token"}};
    auto res = client.Get("/metrics", wrong);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401);
    httplib::Headers right{{"Authorization", "Bearer a-long-enough-test-token"}};
    res = client.Get("/metrics", right);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    EXPECT_THAT(res->body, testing::HasSubstr("ferry_consumer_processed_total{group=\"" + _group));
    EXPECT_EQ(status_of(client, "/healthz"), 200);  // probes stay open
    EXPECT_EQ(status_of(client, "/readyz"), 503);   // never started
}

// Running, PostgreSQL and Redis fine, but no partition: two instances of one group on a topic
// with one partition. The instance without it is not ready (503), the one with it is (200).
TEST_F(ConsumerTest, HttpReadyzIsNotReadyWithoutAnAssignedPartition) {
    const auto topic = ferry::test::unique_name("one");
    kafka()->create_topic(topic, 1);
    ferry::metrics::registry registry_a, registry_b;
    ferry::consumer::consumer a(options(dedup_mode::none)), b(options(dedup_mode::none));
    for (auto* c : {&a, &b}) {
        c->subscribe(topic, ferry::consumer::handler([](const ferry::consumer::message&) {}));
    }
    ferry::consumer::http_server http_a(http_opts(registry_a), {&a});
    ferry::consumer::http_server http_b(http_opts(registry_b), {&b});
    httplib::Client client_a("127.0.0.1", http_a.port()), client_b("127.0.0.1", http_b.port());
    a.start();
    b.start();
    // Settled: exactly one of the two holds the partition, and both answer accordingly.
    ASSERT_TRUE(wait_until(
        [&] {
            const auto na = a.metrics().assigned_partitions, nb = b.metrics().assigned_partitions;
            if (na + nb != 1) return false;
            const int ra = status_of(client_a, "/readyz"), rb = status_of(client_b, "/readyz");
            return (na == 1 && ra == 200 && rb == 503) || (nb == 1 && rb == 200 && ra == 503);
        },
        60s))
        << body_of(client_a, "/readyz") << body_of(client_b, "/readyz");
    auto& idle = a.metrics().assigned_partitions == 0 ? client_a : client_b;
    const auto body = body_of(idle, "/readyz");
    EXPECT_THAT(body, testing::HasSubstr("\"running\":true"));
    EXPECT_THAT(body, testing::HasSubstr("\"assigned_partitions\":0"));
    EXPECT_THAT(body, testing::HasSubstr("\"postgres\":\"ok\""));
    b.stop();
    a.stop();
}
