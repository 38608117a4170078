#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "ferry/retry/policy.hpp"

using namespace std::chrono_literals;
using ferry::retry::after_failure;
using ferry::retry::delay_ceiling;
using ferry::retry::next_step;
using ferry::retry::retry_policy;

namespace {

retry_policy policy() {
    retry_policy p;
    p.immediate_tries = 3;
    p.base_delay = 100ms;
    p.max_delay = 1000ms;
    p.max_attempts = 10;
    return p;
}

TEST(RetryPolicyTest, ImmediateTriesFirst) {
    const auto p = policy();
    EXPECT_EQ(after_failure(p, 1, 0.5).step, next_step::retry_now);
    EXPECT_EQ(after_failure(p, 2, 0.5).step, next_step::retry_now);
    EXPECT_EQ(after_failure(p, 3, 0.5).step, next_step::retry_later);
}

TEST(RetryPolicyTest, MaxAttemptsGoesToDeadLetter) {
    const auto p = policy();
    EXPECT_EQ(after_failure(p, 9, 0.5).step, next_step::retry_later);
    EXPECT_EQ(after_failure(p, 10, 0.5).step, next_step::dead_letter);
    EXPECT_EQ(after_failure(p, 11, 0.5).step, next_step::dead_letter);
    auto q = p;
    q.max_attempts = 3;
    EXPECT_EQ(after_failure(q, 3, 0.5).step, next_step::dead_letter);
}

TEST(RetryPolicyTest, CeilingDoublesUpToCap) {
    const auto p = policy();
    EXPECT_EQ(delay_ceiling(p, 3), 100ms);
    EXPECT_EQ(delay_ceiling(p, 4), 200ms);
    EXPECT_EQ(delay_ceiling(p, 5), 400ms);
    EXPECT_EQ(delay_ceiling(p, 6), 800ms);
    EXPECT_EQ(delay_ceiling(p, 7), 1000ms);
    EXPECT_EQ(delay_ceiling(p, 1000), 1000ms);  // no overflow
}

TEST(RetryPolicyTest, DelayStaysWithinBounds) {
    const auto p = policy();
    for (int n = 3; n < 10; ++n) {
        for (double u : {0.0, 0.25, 0.999999, 1.0}) {
            const auto d = after_failure(p, n, u);
            EXPECT_GE(d.delay.count(), 0);
            EXPECT_LE(d.delay, delay_ceiling(p, n));
            EXPECT_LE(d.delay, p.max_delay);
        }
    }
    EXPECT_EQ(after_failure(p, 3, 0.0).delay, 0ms);
}

TEST(RetryPolicyTest, FullJitterIsUniform) {
    // 20k draws over [0, ceiling]: each of 10 buckets holds ~10% (chi-square-ish bound).
    const auto p = policy();
    std::vector<int> buckets(10, 0);
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
        const auto d = after_failure(p, 7, ferry::retry::jitter_source()).delay.count();
        ASSERT_LE(d, 1000);
        buckets[std::min(9, static_cast<int>(d / 100))]++;
    }
    for (int b : buckets) {
        EXPECT_GT(b, n / 10 * 0.85);
        EXPECT_LT(b, n / 10 * 1.15);
    }
}

TEST(RetryPolicyTest, ValidateRejectsNonsense) {
    auto p = policy();
    EXPECT_NO_THROW(ferry::retry::validate(p));
    p.immediate_tries = 0;
    EXPECT_THROW(ferry::retry::validate(p), ferry::error);
    p = policy();
    p.max_attempts = 2;
    EXPECT_THROW(ferry::retry::validate(p), ferry::error);
    p = policy();
    p.max_delay = 10ms;
    EXPECT_THROW(ferry::retry::validate(p), ferry::error);
}

}  // namespace
