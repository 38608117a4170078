#include "offset_tracker.hpp"

#include <gtest/gtest.h>

using ferry::consumer::detail::offset_tracker;
using ferry::consumer::detail::tp;
using namespace std::chrono_literals;

namespace {

TEST(OffsetTrackerTest, CommitPositionIsLowestIncompleteOffset) {
    offset_tracker t;
    const tp p{"t", 0};
    t.assign({p});
    EXPECT_TRUE(t.commit_positions({}).empty());  // nothing dispatched yet
    const auto g = t.dispatch(p, 10);
    ASSERT_NE(g, 0u);
    (void)t.dispatch(p, 11);
    (void)t.dispatch(p, 12);
    ASSERT_TRUE(t.begin(p, g));
    t.finish(p, g, 11, true);  // out of order: 10 still running elsewhere
    ASSERT_TRUE(t.begin(p, g));
    t.finish(p, g, 12, true);
    auto pos = t.commit_positions({});
    ASSERT_EQ(pos.size(), 1u);
    EXPECT_EQ(pos[0].offset, 10);
    t.committed(pos);
    EXPECT_TRUE(t.commit_positions({}).empty());  // unchanged: nothing new to commit
    ASSERT_TRUE(t.begin(p, g));
    t.finish(p, g, 10, true);
    pos = t.commit_positions({});
    ASSERT_EQ(pos.size(), 1u);
    EXPECT_EQ(pos[0].offset, 13);
}

TEST(OffsetTrackerTest, AbandonedWorkHoldsThePosition) {
    offset_tracker t;
    const tp p{"t", 1};
    t.assign({p});
    const auto g = t.dispatch(p, 5);
    (void)t.dispatch(p, 6);
    ASSERT_TRUE(t.begin(p, g));
    t.finish(p, g, 5, false);  // abandoned
    ASSERT_TRUE(t.begin(p, g));
    t.finish(p, g, 6, true);
    EXPECT_EQ(t.commit_positions({})[0].offset, 5);
}

TEST(OffsetTrackerTest, RevokedPartitionStartsNoWorkButRunningWorkFinishes) {
    offset_tracker t;
    const tp p{"t", 2};
    t.assign({p});
    const auto g = t.dispatch(p, 1);
    (void)t.dispatch(p, 2);
    ASSERT_TRUE(t.begin(p, g));  // offset 1 running
    t.revoke_begin({p});
    EXPECT_FALSE(t.begin(p, g));  // offset 2 abandoned
    EXPECT_EQ(t.dispatch(p, 3), 0u);
    EXPECT_FALSE(t.wait_idle({p}, 10ms));
    t.finish(p, g, 1, true);
    EXPECT_TRUE(t.wait_idle({p}, 10ms));
    EXPECT_EQ(t.commit_positions({p})[0].offset, 2);
    t.remove({p});
    EXPECT_EQ(t.size(), 0u);
}

TEST(OffsetTrackerTest, ReassignmentGetsNewGeneration) {
    offset_tracker t;
    const tp p{"t", 0};
    t.assign({p});
    const auto g1 = t.dispatch(p, 1);
    t.revoke_begin({p});
    t.remove({p});
    t.assign({p});
    const auto g2 = t.dispatch(p, 1);
    EXPECT_NE(g1, g2);
    EXPECT_FALSE(t.begin(p, g1));
    EXPECT_TRUE(t.current(p, g2));
}

}  // namespace
