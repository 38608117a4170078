// confirm_tracker: the slot is confirmed only past transactions whose messages, and all
// earlier ones, are finished, whatever order the acknowledgements arrive in.
#include "ferry/wal/confirm_tracker.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "ferry/common/error.hpp"

namespace ferry::wal {
namespace {

TEST(ConfirmTrackerTest, ConfirmsATransactionOnlyWhenAllItsMessagesAreFinished) {
    confirm_tracker t;
    const auto a = t.add_message();
    const auto b = t.add_message();
    t.add_end(100);
    EXPECT_EQ(t.confirmable(), 0u);
    t.finish(b);
    EXPECT_EQ(t.confirmable(), 0u) << "a is still in flight";
    t.finish(a);
    EXPECT_EQ(t.confirmable(), 100u);
    EXPECT_EQ(t.unfinished(), 0u);
    EXPECT_EQ(t.held(), 0u);
}

TEST(ConfirmTrackerTest, ALaterTransactionFinishedFirstDoesNotMoveThePositionPastAnEarlierOne) {
    confirm_tracker t;
    const auto first = t.add_message();
    t.add_end(100);
    const auto second = t.add_message();
    t.add_end(200);
    t.finish(second);
    EXPECT_EQ(t.confirmable(), 0u);
    t.finish(first);
    EXPECT_EQ(t.confirmable(), 200u);
}

TEST(ConfirmTrackerTest, EmptyTransactionsAndRepeatedConfirmable) {
    confirm_tracker t;
    t.add_end(50);  // a transaction with no messages of ours
    EXPECT_EQ(t.confirmable(), 50u);
    EXPECT_EQ(t.confirmable(), 50u);
    const auto m = t.add_message();
    EXPECT_EQ(t.confirmable(), 50u) << "an open transaction does not move the position";
    t.finish(m);
    EXPECT_EQ(t.confirmable(), 50u) << "no end yet";
    t.add_end(60);
    EXPECT_EQ(t.confirmable(), 60u);
}

TEST(ConfirmTrackerTest, MisuseIsAnError) {
    confirm_tracker t;
    const auto m = t.add_message();
    t.add_end(100);
    t.finish(m);
    EXPECT_THROW(t.finish(m), ferry::error);   // double finish
    EXPECT_THROW(t.finish(1), ferry::error);   // an end, not a message
    EXPECT_THROW(t.finish(99), ferry::error);  // never issued
    (void)t.confirmable();
    EXPECT_THROW(t.finish(m), ferry::error);  // already folded away
    EXPECT_THROW(t.add_end(10), ferry::error);
}

TEST(ConfirmTrackerTest, RandomFinishOrderNeverConfirmsPastAnUnfinishedMessage) {
    std::mt19937 rng(7);
    for (int round = 0; round < 50; ++round) {
        confirm_tracker t;
        struct msg {
            confirm_tracker::ticket ticket;
            lsn tx_end;
        };
        std::vector<msg> msgs;
        lsn end = 0;
        for (int tx = 0; tx < 30; ++tx) {
            end += 100;
            const int n = static_cast<int>(rng() % 4);  // 0..3 messages
            for (int i = 0; i < n; ++i) msgs.push_back({t.add_message(), end});
            t.add_end(end);
        }
        std::vector<std::size_t> order(msgs.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::shuffle(order.begin(), order.end(), rng);
        std::vector<bool> done(msgs.size(), false);
        for (auto i : order) {
            t.finish(msgs[i].ticket);
            done[i] = true;
            const auto c = t.confirmable();
            // Oracle: the smallest tx_end with an unfinished message bounds the position.
            lsn bound = end;
            for (std::size_t j = 0; j < msgs.size(); ++j) {
                if (!done[j]) bound = std::min(bound, msgs[j].tx_end - 100);
            }
            ASSERT_LE(c, bound) << "confirmed past an unfinished message";
            // And it is not needlessly behind: every transaction below the bound is confirmable.
            ASSERT_EQ(c, bound);
        }
        EXPECT_EQ(t.confirmable(), end);
        EXPECT_EQ(t.held(), 0u);
    }
}

}  // namespace
}  // namespace ferry::wal
