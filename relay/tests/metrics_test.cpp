// Unit tests of the relay's metrics registration and small pure helpers. No servers.

#include "ferry/common/metrics.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ferry/relay/options.hpp"
#include "ferry/relay/relay.hpp"

namespace {

using testing::HasSubstr;

// The relay registers its families in the registry it is given (ADR 0030), before it starts:
// names follow the registry's conventions (a bad name would throw here) and label values are the
// registry's own.
TEST(RelayMetricsTest, RelayRegistersItsFamiliesInTheGivenRegistry) {
    ferry::metrics::registry r;
    ferry::relay::relay_options o;
    o.dsn = "postgresql://unused@127.0.0.1:1/none";
    ferry::relay::relay relay(o, &r);
    EXPECT_EQ(&relay.metrics(), &r);
    const auto text = r.serialize();
    EXPECT_THAT(text, HasSubstr("# TYPE ferry_relay_published_total counter\n"));
    EXPECT_THAT(text, HasSubstr("ferry_relay_publish_errors_total{kind=\"fatal\"} 0\n"));
    EXPECT_THAT(text, HasSubstr("# TYPE ferry_relay_commit_to_ack_seconds histogram\n"));
    EXPECT_THAT(text, HasSubstr("# TYPE ferry_outbox_pending gauge\n"));
    EXPECT_THAT(text, HasSubstr("ferry_relay_invalid_headers_total 0\n"));
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
