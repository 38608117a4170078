// The pure decisions of `ferryctl backlog fan-out` (cli/src/fanout.hpp): where each source
// partition starts, and which target partition a record goes to.
#include "fanout.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace {

namespace fo = ferry::cli::fanout;

fo::partition_plan plan(std::int64_t group, std::int64_t forwarder, std::int64_t low,
                        std::int64_t high) {
    fo::partition_plan p;
    p.group_offset = group;
    p.forwarder_offset = forwarder;
    p.low = low;
    p.high = high;
    fo::plan_start(p);
    return p;
}

TEST(FanoutTest, StartsAtTheGroupsCommittedOffset) {
    EXPECT_EQ(plan(40, fo::k_no_offset, 0, 100).start, 40);
    EXPECT_EQ(plan(40, fo::k_no_offset, 0, 100).backlog(), 60);
}

TEST(FanoutTest, ResumesFromTheForwardersCheckpointWhenItIsFurther) {
    EXPECT_EQ(plan(40, 70, 0, 100).start, 70);
    // The group moved past the checkpoint (it consumed more): never forward what it consumed.
    EXPECT_EQ(plan(80, 70, 0, 100).start, 80);
}

TEST(FanoutTest, WithoutCommittedOffsetsStartsAtTheLogStart) {
    EXPECT_EQ(plan(fo::k_no_offset, fo::k_no_offset, 15, 100).start, 15);
    // Records below the log start are gone (retention): start at the log start.
    EXPECT_EQ(plan(5, fo::k_no_offset, 15, 100).start, 15);
    // A group at the end has no backlog.
    EXPECT_EQ(plan(100, fo::k_no_offset, 0, 100).backlog(), 0);
    EXPECT_EQ(plan(120, fo::k_no_offset, 0, 100).start, 100);
}

TEST(FanoutTest, EveryRecordOfAKeyGoesToOnePartitionWhateverItsSourcePartition) {
    std::set<std::int32_t> used;
    for (int k = 0; k < 2000; ++k) {
        const std::string key = "order-" + std::to_string(k);
        const auto t = fo::target_partition(key, 0, 32);
        ASSERT_GE(t, 0);
        ASSERT_LT(t, 32);
        for (int source = 1; source < 4; ++source) {
            EXPECT_EQ(fo::target_partition(key, source, 32), t) << key;
        }
        used.insert(t);
    }
    EXPECT_EQ(used.size(), 32u);  // the keys spread over every target partition
}

TEST(FanoutTest, RecordsWithoutAKeyStayWithTheirSourcePartition) {
    EXPECT_EQ(fo::target_partition(std::nullopt, 5, 16), 5);
    EXPECT_EQ(fo::target_partition(std::nullopt, 21, 16), 5);
}

TEST(FanoutTest, MatchesKafkasMurmur2Partitioner) {
    // Java's DefaultPartitioner: toPositive(murmur2(key)) % n. Reference values computed with
    // murmur2 from Kafka's Utils (seed 0x9747b28c): murmur2("21") = -973932308.
    EXPECT_EQ(fo::target_partition(std::string("21"), 0, 1000), (-973932308 & 0x7fffffff) % 1000);
}

TEST(FanoutTest, ForwarderGroupNamesTheFanOut) {
    EXPECT_EQ(fo::forwarder_group("billing", "orders", "orders.fanout"),
              "ferry-fanout.billing.orders.orders.fanout");
}

}  // namespace
