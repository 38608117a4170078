#include "ferry/outbox/message_id.hpp"

#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

using ferry::outbox::message_id;

TEST(MessageIdTest, GeneratesVersion7WithRfcVariant) {
    const auto id = message_id::generate();
    EXPECT_EQ(id.version(), 7);
    EXPECT_EQ(id.bytes()[8] & 0xc0, 0x80);  // variant 10
    const auto s = id.to_string();
    ASSERT_EQ(s.size(), 36u);
    EXPECT_EQ(s[14], '7');
}

TEST(MessageIdTest, EncodesCurrentTimeInMilliseconds) {
    const auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    const auto id = message_id::generate();
    const auto after = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    EXPECT_GE(static_cast<long long>(id.unix_ms()), before);
    // The counter may borrow at most a few milliseconds when many ids share one millisecond.
    EXPECT_LE(static_cast<long long>(id.unix_ms()), after + 5);
}

TEST(MessageIdTest, StrictlyIncreasingWithinAThread) {
    auto prev = message_id::generate();
    for (int i = 0; i < 100000; ++i) {
        const auto next = message_id::generate();
        ASSERT_LT(prev, next) << "at " << i << ": " << prev.to_string() << " !< "
                              << next.to_string();
        prev = next;
    }
}

TEST(MessageIdTest, UniqueAcrossThreads) {
    constexpr int threads = 4, per_thread = 20000;
    std::vector<std::vector<message_id>> ids(threads);
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) ids[t].push_back(message_id::generate());
        });
    }
    for (auto& w : workers) w.join();
    std::set<message_id> all;
    for (const auto& v : ids) all.insert(v.begin(), v.end());
    EXPECT_EQ(all.size(), static_cast<std::size_t>(threads * per_thread));
}

TEST(MessageIdTest, ParseRoundTripsAndRejectsMalformed) {
    const auto id = message_id::generate();
    const auto parsed = message_id::parse(id.to_string());
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, id);

    const auto upper = message_id::parse("0190B6A4-1C2D-7E3F-8A4B-5C6D7E8F9A0B");
    ASSERT_TRUE(upper.has_value());
    EXPECT_EQ(upper->to_string(), "0190b6a4-1c2d-7e3f-8a4b-5c6d7e8f9a0b");

    EXPECT_FALSE(message_id::parse("").has_value());
    EXPECT_FALSE(message_id::parse("0190b6a4-1c2d-7e3f-8a4b-5c6d7e8f9a0").has_value());
    EXPECT_FALSE(message_id::parse("0190b6a4x1c2d-7e3f-8a4b-5c6d7e8f9a0b").has_value());
    EXPECT_FALSE(message_id::parse("0190b6a4-1c2d-7e3f-8a4b-5c6d7e8f9a0g").has_value());
}
