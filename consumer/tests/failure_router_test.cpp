// The failure router (consumer/src/failure_router.hpp): one pure decision for the live and the
// retry paths. Covers retryable (now / later / exhausted), permanent, in-progress and revoked.
#include "failure_router.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using ferry::consumer::detail::attempt_outcome;
using ferry::consumer::detail::attempt_result;
using ferry::consumer::detail::classify;
using ferry::consumer::detail::failure;
using ferry::consumer::detail::path;
using ferry::consumer::detail::route;
using ferry::consumer::detail::route_failure;

namespace {

ferry::retry::retry_policy policy() {
    ferry::retry::retry_policy p;
    p.immediate_tries = 3;
    p.immediate_delay = 20ms;
    p.base_delay = 1000ms;
    p.max_delay = 8000ms;
    p.max_attempts = 6;
    return p;
}

TEST(FailureRouterTest, RetryableGoesNowThenLaterThenDeadLetter) {
    for (const auto where : {path::live, path::retry_table}) {
        const auto first = route_failure(policy(), where, failure::retryable, 1, "boom", 0.5);
        EXPECT_EQ(first.action, route::retry_now);
        EXPECT_EQ(first.delay, 20ms);
        EXPECT_TRUE(first.counts_attempt);
        EXPECT_TRUE(first.reason.empty());
        EXPECT_EQ(route_failure(policy(), where, failure::retryable, 2, "boom", 0.5).action,
                  route::retry_now);
        // From immediate_tries on: the table, full jitter under the doubling ceiling.
        const auto third = route_failure(policy(), where, failure::retryable, 3, "boom", 0.5);
        EXPECT_EQ(third.action, route::retry_later);
        EXPECT_EQ(third.delay, 500ms);  // 0.5 * base_delay
        const auto fifth = route_failure(policy(), where, failure::retryable, 5, "boom", 0.999);
        EXPECT_EQ(fifth.action, route::retry_later);
        EXPECT_LE(fifth.delay, 4000ms);  // base * 2^(5-3)
        EXPECT_GT(fifth.delay, 3900ms);
        const auto last = route_failure(policy(), where, failure::retryable, 6, "boom", 0.5);
        EXPECT_EQ(last.action, route::dead_letter);
        EXPECT_EQ(last.reason, "retries exhausted after 6 attempts: boom");
    }
}

TEST(FailureRouterTest, PermanentIsADeadLetterAtOnceWithItsReason) {
    for (const auto where : {path::live, path::retry_table}) {
        const auto r = route_failure(policy(), where, failure::permanent, 1, "bad payload", 0.5);
        EXPECT_EQ(r.action, route::dead_letter);
        EXPECT_TRUE(r.counts_attempt);
        EXPECT_EQ(r.reason, "handler: permanent: bad payload");
    }
}

TEST(FailureRouterTest, InProgressWaitsWithoutCountingAnAttempt) {
    // At the last allowed attempt too: someone else holding the message is not a failure.
    const auto live = route_failure(policy(), path::live, failure::in_progress, 6, "held", 0.5);
    EXPECT_EQ(live.action, route::wait);
    EXPECT_FALSE(live.counts_attempt);
    EXPECT_EQ(live.delay, 100ms);
    EXPECT_TRUE(live.reason.empty());
    const auto table =
        route_failure(policy(), path::retry_table, failure::in_progress, 6, "held", 0.5);
    EXPECT_EQ(table.action, route::wait);
    EXPECT_FALSE(table.counts_attempt);
    EXPECT_EQ(table.delay, 200ms);
}

TEST(FailureRouterTest, RevokedWorkIsAbandonedWithoutARecord) {
    for (const auto where : {path::live, path::retry_table}) {
        // Even when the policy would dead-letter it: the next owner decides, not us.
        const auto r = route_failure(policy(), where, failure::revoked, 6, "boom", 0.5);
        EXPECT_EQ(r.action, route::abandon);
        EXPECT_FALSE(r.counts_attempt);
        EXPECT_TRUE(r.reason.empty());
    }
}

}  // namespace

// classify(): the outcome of an attempt, on both paths, by result and error kind only.
TEST(FailureRouterTest, ClassifyUsesTheResultAndTheKindNeverTheCode) {
    attempt_outcome r;
    r.result = attempt_result::failed;
    for (const auto kind : {ferry::error_kind::retryable, ferry::error_kind::retry_transaction,
                            ferry::error_kind::in_doubt}) {
        r.kind = kind;
        r.code = "consumer.in_progress";  // a code that looks like another case changes nothing
        EXPECT_EQ(classify(r, true), failure::retryable);
    }
    r.kind = ferry::error_kind::permanent;
    r.code = "handler.whatever";
    EXPECT_EQ(classify(r, true), failure::permanent);
    // Not ours any more: abandoned whatever the error, also a permanent one.
    EXPECT_EQ(classify(r, false), failure::revoked);

    attempt_outcome busy;
    busy.result = attempt_result::in_progress;
    EXPECT_EQ(classify(busy, true), failure::in_progress);
    EXPECT_EQ(classify(busy, false), failure::revoked);

    attempt_outcome lost;
    lost.result = attempt_result::lost_claim;  // retry path: another worker has the row
    EXPECT_EQ(classify(lost, true), failure::revoked);
}

// The live path and the retry path route the same classified failure the same way, except
// where the path is meant to differ (the wait of an in-progress message).
TEST(FailureRouterTest, BothPathsRouteAPermanentFailureToTheSameDeadLetter) {
    attempt_outcome r;
    r.result = attempt_result::failed;
    r.kind = ferry::error_kind::permanent;
    r.error = "bad sku";
    const auto live = route_failure(policy(), path::live, classify(r, true), 2, r.error, 0.5);
    const auto retry =
        route_failure(policy(), path::retry_table, classify(r, true), 2, r.error, 0.5);
    EXPECT_EQ(live.action, route::dead_letter);
    EXPECT_EQ(retry.action, route::dead_letter);
    EXPECT_EQ(live.reason, retry.reason);
    EXPECT_EQ(live.reason, "handler: permanent: bad sku");
}
