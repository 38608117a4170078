// The snapshot source's position rules (snapshot_tracker), without servers: what a mark may
// record when rows finish out of order, across epochs, after a resume.

#include "snapshot_tracker.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace {

using ferry::relay::detail::snapshot_point;
using ferry::relay::detail::snapshot_tracker;

snapshot_point point(std::string s0, std::optional<std::string> s1 = std::nullopt,
                     std::int64_t after = 0) {
    return {std::move(s0), std::move(s1), after};
}

TEST(SnapshotTrackerTest, NothingReadKeepsTheLoadedPosition) {
    snapshot_tracker t;
    t.reset(point("10:10:"));
    EXPECT_EQ(t.durable(), point("10:10:"));
    EXPECT_EQ(t.next_s0(), "10:10:");
    EXPECT_FALSE(t.resume_s1());
}

TEST(SnapshotTrackerTest, AnEpochFinishedInOrderMovesTheOpenPositionThenClosesIt) {
    snapshot_tracker t;
    t.reset(point("10:10:"));
    const auto e = t.open_epoch("10:10:", "20:20:");
    const auto a = t.add(e, 5), b = t.add(e, 7), c = t.add(e, 9);
    t.finish(a);
    EXPECT_EQ(t.durable(), point("10:10:", "20:20:", 5));
    t.finish(b);
    t.finish(c);
    // Every read row is finished, but the epoch may still have rows to read.
    EXPECT_EQ(t.durable(), point("10:10:", "20:20:", 9));
    t.close_epoch(e);
    EXPECT_EQ(t.durable(), point("20:20:"));
    EXPECT_EQ(t.next_s0(), "20:20:");
}

TEST(SnapshotTrackerTest, AFinishedRowAboveAnUnfinishedOneIsNotRecorded) {
    snapshot_tracker t;
    t.reset(point("10:10:"));
    const auto e = t.open_epoch("10:10:", "20:20:");
    const auto a = t.add(e, 5), b = t.add(e, 7), c = t.add(e, 9);
    t.close_epoch(e);
    t.finish(c);  // acknowledged first, on another partition
    EXPECT_EQ(t.durable(), point("10:10:", "20:20:", 0)) << "row 5 is not finished";
    t.finish(a);
    EXPECT_EQ(t.durable(), point("10:10:", "20:20:", 5)) << "row 7 is not finished";
    t.finish(b);
    EXPECT_EQ(t.durable(), point("20:20:"));
    EXPECT_EQ(t.unfinished(), 0u);
}

TEST(SnapshotTrackerTest, ARowHeldInAnOlderEpochHoldsThePositionThere) {
    snapshot_tracker t;
    t.reset(point("10:10:"));
    const auto e1 = t.open_epoch("10:10:", "20:20:");
    const auto held = t.add(e1, 5);  // delayed, or failed and waiting
    const auto a = t.add(e1, 6);
    t.close_epoch(e1);
    const auto e2 = t.open_epoch("20:20:", "30:30:");
    const auto b = t.add(e2, 3);  // a late commit: a lower id in a later epoch
    t.close_epoch(e2);
    t.finish(a);
    t.finish(b);
    EXPECT_EQ(t.durable(), point("10:10:", "20:20:", 0));
    t.finish(held);
    EXPECT_EQ(t.durable(), point("30:30:"));
}

TEST(SnapshotTrackerTest, AMarkComputesThePositionItsOwnRowsMake) {
    snapshot_tracker t;
    t.reset(point("10:10:"));
    const auto e = t.open_epoch("10:10:", "20:20:");
    const auto a = t.add(e, 1), b = t.add(e, 2), c = t.add(e, 3);
    t.close_epoch(e);
    EXPECT_EQ(t.durable_with({a, b}), point("10:10:", "20:20:", 2));
    EXPECT_EQ(t.durable_with({b, c}), point("10:10:", "20:20:", 0));
    EXPECT_EQ(t.durable_with({c, a, b}), point("20:20:"));
    EXPECT_EQ(t.unfinished(), 3u) << "durable_with finishes nothing";
}

TEST(SnapshotTrackerTest, AResumedEpochKeepsItsPointUntilARowAboveItFinishes) {
    snapshot_tracker t;
    t.reset(point("10:10:", "20:20:", 40));
    EXPECT_EQ(t.resume_s1(), "20:20:");
    EXPECT_EQ(t.resume_after(), 40);
    EXPECT_THROW((void)t.open_epoch("10:10:", "25:25:"), std::logic_error);
    const auto e = t.open_epoch("10:10:", "20:20:");
    EXPECT_THROW((void)t.add(e, 40), std::logic_error) << "ids up to 40 were finished";
    const auto a = t.add(e, 41);
    EXPECT_EQ(t.durable(), point("10:10:", "20:20:", 40));
    t.finish(a);
    EXPECT_EQ(t.durable(), point("10:10:", "20:20:", 41));
    t.close_epoch(e);
    EXPECT_EQ(t.durable(), point("20:20:"));
    // The next epoch starts from the resumed one's S1.
    EXPECT_EQ(t.next_s0(), "20:20:");
    EXPECT_FALSE(t.resume_s1());
}

TEST(SnapshotTrackerTest, EmptyEpochsWhileARowWaitsAreFoldedIntoOne) {
    snapshot_tracker t;
    t.reset(point("10:10:"));
    const auto e1 = t.open_epoch("10:10:", "20:20:");
    const auto held = t.add(e1, 5);
    t.close_epoch(e1);
    std::string s0 = "20:20:";
    for (int i = 0; i < 1000; ++i) {
        const auto s1 = std::to_string(21 + i) + ":" + std::to_string(21 + i) + ":";
        const auto e = t.open_epoch(s0, s1);
        t.close_epoch(e);
        s0 = s1;
    }
    EXPECT_LE(t.held(), 3u);
    const auto e = t.open_epoch(s0, "2000:2000:");
    const auto b = t.add(e, 8);
    t.close_epoch(e);
    t.finish(b);
    EXPECT_EQ(t.durable(), point("10:10:", "20:20:", 0));
    t.finish(held);
    EXPECT_EQ(t.durable(), point("2000:2000:"));
}

TEST(SnapshotTrackerTest, MisuseIsRefused) {
    snapshot_tracker t;
    t.reset(point("10:10:"));
    EXPECT_THROW((void)t.open_epoch("11:11:", "20:20:"), std::logic_error) << "not next_s0";
    const auto e = t.open_epoch("10:10:", "20:20:");
    EXPECT_THROW((void)t.open_epoch("20:20:", "30:30:"), std::logic_error) << "not closed";
    const auto a = t.add(e, 5);
    EXPECT_THROW((void)t.add(e, 5), std::logic_error) << "ids grow";
    t.finish(a);
    EXPECT_THROW(t.finish(a), std::logic_error) << "finished twice";
    EXPECT_THROW(t.finish(a + 100), std::logic_error) << "unknown ticket";
    t.close_epoch(e);
    EXPECT_THROW((void)t.add(e, 9), std::logic_error) << "closed epoch";
}

}  // namespace
