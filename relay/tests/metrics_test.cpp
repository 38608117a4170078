// Unit tests of the relay's metrics registry and small pure helpers. No servers.

#include "ferry/relay/metrics.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ferry/relay/options.hpp"

namespace {

using testing::HasSubstr;

TEST(MetricsTest, RendersCountersGaugesAndHistograms) {
    ferry::relay::registry r;
    r.get_counter("ferry_relay_published_total", "Published.").inc(3);
    r.get_gauge("ferry_relay_epoch", "Epoch.", "group=\"1\"").set(7);
    auto& h = r.get_histogram("ferry_relay_batch_size", "Rows.", {1, 10, 100});
    h.observe(1);
    h.observe(5);
    h.observe(500);
    const auto text = r.render();
    EXPECT_THAT(text, HasSubstr("# TYPE ferry_relay_published_total counter\n"));
    EXPECT_THAT(text, HasSubstr("ferry_relay_published_total 3\n"));
    EXPECT_THAT(text, HasSubstr("ferry_relay_epoch{group=\"1\"} 7\n"));
    EXPECT_THAT(text, HasSubstr("ferry_relay_batch_size_bucket{le=\"1\"} 1\n"));
    EXPECT_THAT(text, HasSubstr("ferry_relay_batch_size_bucket{le=\"10\"} 2\n"));
    EXPECT_THAT(text, HasSubstr("ferry_relay_batch_size_bucket{le=\"100\"} 2\n"));
    EXPECT_THAT(text, HasSubstr("ferry_relay_batch_size_bucket{le=\"+Inf\"} 3\n"));
    EXPECT_THAT(text, HasSubstr("ferry_relay_batch_size_sum 506\n"));
    EXPECT_THAT(text, HasSubstr("ferry_relay_batch_size_count 3\n"));
}

TEST(MetricsTest, SameNameAndLabelsIsTheSameSeries) {
    ferry::relay::registry r;
    auto& a = r.get_counter("x_total", "X.", "kind=\"a\"");
    auto& b = r.get_counter("x_total", "X.", "kind=\"a\"");
    EXPECT_EQ(&a, &b);
    EXPECT_NE(&a, &r.get_counter("x_total", "X.", "kind=\"b\""));
    EXPECT_THROW((void)r.get_gauge("x_total", "X."), std::logic_error);
}

TEST(RelayOptionsTest, TopicMappingRenamesThenPrefixes) {
    ferry::relay::relay_options o;
    o.topic_prefix = "prod.";
    o.topic_map = {{"orders", "orders-v2"}};
    EXPECT_EQ(ferry::relay::kafka_topic(o, "orders"), "prod.orders-v2");
    EXPECT_EQ(ferry::relay::kafka_topic(o, "payments"), "prod.payments");
}

TEST(RelayOptionsTest, LeaseGroupsPartitionTheShards) {
    EXPECT_EQ(ferry::relay::shard_array_literal(0, 128), "{0,128}");
    EXPECT_EQ(ferry::relay::shard_array_literal(3, 128), "{3,131}");
    EXPECT_EQ(ferry::relay::shard_array_literal(255, 256), "{255}");
    // Every shard belongs to exactly one group.
    for (int groups : {1, 3, 8, 256}) {
        std::vector<int> owner(256, -1);
        for (int g = 0; g < groups; ++g) {
            auto text = ferry::relay::shard_array_literal(g, groups);
            text = text.substr(1, text.size() - 2);
            std::size_t pos = 0;
            while (pos < text.size()) {
                auto end = text.find(',', pos);
                if (end == std::string::npos) end = text.size();
                const int shard = std::stoi(text.substr(pos, end - pos));
                EXPECT_EQ(owner[static_cast<std::size_t>(shard)], -1);
                owner[static_cast<std::size_t>(shard)] = g;
                pos = end + 1;
            }
        }
        for (int s = 0; s < 256; ++s) EXPECT_EQ(owner[static_cast<std::size_t>(s)], s % groups);
    }
}

}  // namespace
