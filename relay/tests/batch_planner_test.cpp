// Unit tests of the relay's batch planner (no servers): the decision rules of one batch.

#include "batch_planner.hpp"

#include <gtest/gtest.h>

namespace {

using namespace ferry::relay::detail;

planned_row row(std::int64_t id, std::string key, bool expired = false,
                std::string header_error = {}) {
    planned_row r;
    r.id = id;
    r.topic = "orders";
    r.key = std::move(key);
    r.expired = expired;
    r.header_error = std::move(header_error);
    return r;
}

delivery_report acked(std::int64_t offset) {
    delivery_report d;
    d.result = delivery_result::acked;
    d.partition = 0;
    d.offset = offset;
    return d;
}

delivery_report failed(delivery_result result, std::string code = "REQUEST_TIMED_OUT") {
    delivery_report d;
    d.result = result;
    d.error_code = std::move(code);
    d.error_text = "refused";
    return d;
}

std::vector<std::int64_t> ids(const std::vector<planned_row>& rows,
                              const std::vector<std::size_t>& idx) {
    std::vector<std::int64_t> out;
    for (auto i : idx) out.push_back(rows[i].id);
    return out;
}

std::vector<std::int64_t> published_ids(const std::vector<planned_row>& rows, const mark_plan& m) {
    std::vector<std::int64_t> out;
    for (const auto& p : m.publish) out.push_back(rows[p.row].id);
    return out;
}

TEST(BatchPlannerTest, EmptyBatchMarksNothingAndPollsLater) {
    const std::vector<planned_row> rows;
    const auto plan = plan_produce(rows);
    EXPECT_TRUE(plan.produce.empty());
    const auto marks = plan_mark(rows, plan, {});
    EXPECT_TRUE(marks.nothing_to_mark());
    EXPECT_EQ(plan_next({.claimed = 0, .batch_size = 100}, marks), next_step::poll_later);
}

TEST(BatchPlannerTest, AllAcknowledgedArePublishedAndAFullBatchPollsAgain) {
    const std::vector<planned_row> rows{row(1, "a"), row(2, "b"), row(3, "a")};
    const auto plan = plan_produce(rows);
    EXPECT_EQ(ids(rows, plan.produce), (std::vector<std::int64_t>{1, 2, 3}));
    const auto marks = plan_mark(rows, plan, {acked(10), acked(11), acked(12)});
    EXPECT_EQ(published_ids(rows, marks), (std::vector<std::int64_t>{1, 2, 3}));
    EXPECT_EQ(marks.publish[2].offset, 12);
    EXPECT_EQ(plan_next({.claimed = 3, .batch_size = 3}, marks), next_step::poll_again_now);
    EXPECT_EQ(plan_next({.claimed = 3, .batch_size = 10}, marks), next_step::poll_later);
}

// A delivery that fails mid-batch holds its key: a later row of the same key is not published
// even though Kafka acknowledged it; other keys are unaffected.
TEST(BatchPlannerTest, FailedDeliveryMidBatchHoldsItsKey) {
    const std::vector<planned_row> rows{row(1, "a"), row(2, "b"), row(3, "a"), row(4, "b"),
                                        row(5, "a")};
    const auto plan = plan_produce(rows);
    ASSERT_EQ(plan.produce.size(), 5u);
    const auto marks = plan_mark(
        rows, plan, {acked(1), failed(delivery_result::transient), acked(2), acked(3), acked(4)});
    EXPECT_EQ(published_ids(rows, marks), (std::vector<std::int64_t>{1, 3, 5}));
    EXPECT_EQ(marks.transient, 1u);
    EXPECT_EQ(marks.held_acked, 1u) << "row 4 (key b) was acknowledged after b failed";
    EXPECT_EQ(marks.left, 2u);
    EXPECT_TRUE(marks.park.empty());
    EXPECT_EQ(plan_next({.claimed = 5, .batch_size = 5}, marks), next_step::back_off);
}

TEST(BatchPlannerTest, NotSentHoldsItsKeyLikeAFailure) {
    const std::vector<planned_row> rows{row(1, "a"), row(2, "a")};
    const auto marks = plan_mark(rows, plan_produce(rows), {failed(delivery_result::not_sent)});
    EXPECT_TRUE(marks.publish.empty()) << "a missing report must not publish row 2";
    EXPECT_EQ(marks.left, 2u);
}

// Parking: the first permanent failure of a key is parked with its code and reason; later rows
// of that key stay in the outbox (the claim then skips the key until the row is retried).
TEST(BatchPlannerTest, PermanentFailureIsParkedAndLaterRowsOfItsKeyStay) {
    const std::vector<planned_row> rows{row(1, "p"), row(2, "p"), row(3, "q")};
    const auto plan = plan_produce(rows);
    const auto marks =
        plan_mark(rows, plan,
                  {failed(delivery_result::permanent, "MSG_SIZE_TOO_LARGE"),
                   failed(delivery_result::permanent, "MSG_SIZE_TOO_LARGE"), acked(7)});
    ASSERT_EQ(marks.park.size(), 1u);
    EXPECT_EQ(rows[marks.park[0].row].id, 1);
    EXPECT_EQ(marks.park[0].error_code, "MSG_SIZE_TOO_LARGE");
    EXPECT_EQ(marks.park[0].reason, "refused");
    EXPECT_EQ(published_ids(rows, marks), (std::vector<std::int64_t>{3}));
    EXPECT_EQ(marks.left, 1u);
}

TEST(BatchPlannerTest, UndecodableHeadersAreParkedBeforeProducingAndHoldTheKey) {
    const std::vector<planned_row> rows{row(1, "h", false, "headers: number overflow"), row(2, "h"),
                                        row(3, "k")};
    const auto plan = plan_produce(rows);
    EXPECT_EQ(ids(rows, plan.produce), (std::vector<std::int64_t>{3}));
    ASSERT_EQ(plan.park.size(), 1u);
    EXPECT_EQ(plan.park[0].error_code, "HEADERS_INVALID");
    EXPECT_EQ(plan.held, 1u);
    const auto marks = plan_mark(rows, plan, {acked(1)});
    ASSERT_EQ(marks.park.size(), 1u);
    EXPECT_EQ(rows[marks.park[0].row].id, 1);
    EXPECT_EQ(published_ids(rows, marks), (std::vector<std::int64_t>{3}));
}

TEST(BatchPlannerTest, ExpiredRowsAreNeverProducedAndAreMovedToExpired) {
    const std::vector<planned_row> rows{row(1, "e", true), row(2, "e"), row(3, "f", true)};
    const auto plan = plan_produce(rows);
    EXPECT_EQ(ids(rows, plan.produce), (std::vector<std::int64_t>{2}));
    const auto marks = plan_mark(rows, plan, {acked(5)});
    EXPECT_EQ(ids(rows, marks.expire), (std::vector<std::int64_t>{1, 3}));
    EXPECT_EQ(published_ids(rows, marks), (std::vector<std::int64_t>{2}));
    EXPECT_FALSE(marks.nothing_to_mark());
}

// A fenced mark: whatever was acknowledged, the worker drops the group (nothing is marked; the
// new owner republishes), before any other consideration.
TEST(BatchPlannerTest, FencedMarkDropsTheGroup) {
    const std::vector<planned_row> rows{row(1, "a")};
    const auto marks = plan_mark(rows, plan_produce(rows), {acked(1)});
    EXPECT_EQ(plan_next({.claimed = 1, .batch_size = 1, .fenced = true}, marks),
              next_step::drop_group);
    EXPECT_EQ(
        plan_next({.claimed = 1, .batch_size = 1, .fenced = true, .producer_lost = true}, marks),
        next_step::drop_group);
}

TEST(BatchPlannerTest, LostProducerBacksOff) {
    const std::vector<planned_row> rows{row(1, "a")};
    const auto marks = plan_mark(rows, plan_produce(rows), {acked(1)});
    EXPECT_EQ(plan_next({.claimed = 1, .batch_size = 1, .producer_lost = true}, marks),
              next_step::back_off);
}

// The pipeline may claim the next batch before this one's mark commits only when every row was
// published or expired; a park, a failure, a held row or a lost producer must be marked first.
TEST(BatchPlannerTest, NextClaimOverlapsTheMarkOnlyWhenEveryRowWasPublishedOrExpired) {
    const std::vector<planned_row> clean{row(1, "a"), row(2, "b", true), row(3, "a")};
    auto plan = plan_produce(clean);
    auto marks = plan_mark(clean, plan, {acked(1), acked(2)});
    EXPECT_TRUE(may_overlap_next_claim(marks, false));
    EXPECT_FALSE(may_overlap_next_claim(marks, true)) << "producer lost";

    const std::vector<planned_row> rows{row(1, "a"), row(2, "b"), row(3, "a")};
    plan = plan_produce(rows);
    marks = plan_mark(rows, plan, {failed(delivery_result::transient), acked(2), acked(3)});
    EXPECT_FALSE(may_overlap_next_claim(marks, false)) << "transient failure, held row";
    marks = plan_mark(
        rows, plan, {acked(1), acked(2), failed(delivery_result::permanent, "MSG_SIZE_TOO_LARGE")});
    EXPECT_FALSE(may_overlap_next_claim(marks, false)) << "parked row";
    marks = plan_mark(rows, plan, {acked(1), failed(delivery_result::not_sent), acked(3)});
    EXPECT_FALSE(may_overlap_next_claim(marks, false)) << "row not sent";

    const std::vector<planned_row> bad_headers{row(1, "a", false, "headers: not an object")};
    plan = plan_produce(bad_headers);
    marks = plan_mark(bad_headers, plan, {});
    EXPECT_FALSE(may_overlap_next_claim(marks, false)) << "headers parked";
}

// The claim prefetch (ADR 0070, twenty-second amendment): the next batch is claimed while this
// one's reports are awaited only after a full claim, and produced only when this batch fully
// published (or expired) and the next claim would have come at once. Otherwise it is dropped,
// so the next claim yields this batch's failed and held rows before any later row of their key.
TEST(BatchPlannerTest, PrefetchedClaimIsProducedOnlyAfterAFullyPublishedFullBatch) {
    EXPECT_TRUE(may_prefetch_next_claim(1000, 1000));
    EXPECT_FALSE(may_prefetch_next_claim(999, 1000)) << "partial claim: nothing is waiting";
    EXPECT_FALSE(may_prefetch_next_claim(0, 0));

    const std::vector<planned_row> rows{row(1, "a"), row(2, "b"), row(3, "a")};
    const auto plan = plan_produce(rows);
    const batch_facts full{.claimed = 3, .batch_size = 3};
    const auto clean = plan_mark(rows, plan, {acked(1), acked(2), acked(3)});
    EXPECT_TRUE(keep_prefetched_claim(full, clean, true, 3));
    EXPECT_FALSE(keep_prefetched_claim(full, clean, false, 3)) << "lease not ours";
    EXPECT_FALSE(keep_prefetched_claim(full, clean, true, 0)) << "nothing prefetched";
    EXPECT_FALSE(keep_prefetched_claim({.claimed = 3, .batch_size = 4}, clean, true, 3))
        << "partial batch";
    EXPECT_FALSE(keep_prefetched_claim({.claimed = 3, .batch_size = 3, .producer_lost = true},
                                       clean, true, 3))
        << "producer lost";
    EXPECT_FALSE(
        keep_prefetched_claim({.claimed = 3, .batch_size = 3, .fenced = true}, clean, true, 3))
        << "fenced";
    const auto transient =
        plan_mark(rows, plan, {failed(delivery_result::transient), acked(2), acked(3)});
    EXPECT_FALSE(keep_prefetched_claim(full, transient, true, 3)) << "transient failure";
    const auto parked = plan_mark(
        rows, plan, {acked(1), acked(2), failed(delivery_result::permanent, "MSG_SIZE_TOO_LARGE")});
    EXPECT_FALSE(keep_prefetched_claim(full, parked, true, 3)) << "parked row";
    const auto not_sent = plan_mark(rows, plan, {acked(1), failed(delivery_result::not_sent)});
    EXPECT_FALSE(keep_prefetched_claim(full, not_sent, true, 3)) << "row not sent";
}

// prepare_batch: each row's message as the sink produces it, the topic mapped, the payload
// moved, the two ferry headers first, then the row's own; bad headers become a header_error;
// expired rows get no message.
TEST(BatchPlannerTest, PrepareBatchBuildsEachMessageAndFlagsBadHeaders) {
    std::vector<source_row> rows(3);
    rows[0].id = 7;
    rows[0].message_id = "m-7";
    rows[0].topic = "orders";
    rows[0].key = "k";
    rows[0].payload = "p7";
    rows[0].headers_json = R"({"trace":"t1","n":1.50})";
    rows[0].created_at_us = 1796025600123999;  // 2026-11-30T08:00:00.123999Z
    rows[1].id = 8;
    rows[1].topic = "payments";
    rows[1].headers_json = "[1]";
    rows[2].id = 9;
    rows[2].topic = "orders";
    rows[2].expired = true;
    const auto batch = prepare_batch(rows, [](const std::string& t) { return "prefix." + t; });
    ASSERT_EQ(batch.planned.size(), 3u);
    ASSERT_EQ(batch.items.size(), 3u);
    ASSERT_NE(batch.items[0].topic, nullptr);
    EXPECT_EQ(*batch.items[0].topic, "prefix.orders");
    EXPECT_EQ(batch.items[0].key, std::optional<std::string>("k"));
    EXPECT_EQ(batch.items[0].payload, "p7");
    const std::vector<std::pair<std::string, std::string>> headers{
        {"ferry-message-id", "m-7"},
        {"ferry-created-at", "2026-11-30T08:00:00.123Z"},
        {"trace", "t1"},
        {"n", "1.50"}};
    std::vector<std::pair<std::string, std::string>> produced;
    for_each_header(batch.items[0], [&](std::string_view name, std::string_view value) {
        produced.emplace_back(name, value);
    });
    EXPECT_EQ(produced, headers);
    EXPECT_TRUE(batch.planned[0].header_error.empty());
    ASSERT_NE(batch.items[1].topic, nullptr);
    EXPECT_EQ(*batch.items[1].topic, "prefix.payments") << "each row's own topic, mapped";
    EXPECT_FALSE(batch.items[1].key.has_value()) << "an empty key is a null key";
    EXPECT_FALSE(batch.planned[1].header_error.empty());
    EXPECT_TRUE(batch.planned[2].expired);
    EXPECT_EQ(batch.items[2].topic, nullptr) << "expired rows are never produced";
}

// The ferry-created-at header: UTC, milliseconds truncated (as PostgreSQL's to_char MS did),
// zero-padded, and correct before 1970.
TEST(BatchPlannerTest, CreatedAtHeaderIsRfc3339UtcWithTruncatedMilliseconds) {
    EXPECT_EQ(rfc3339_millis(0).view(), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(rfc3339_millis(1796025600123999).view(), "2026-11-30T08:00:00.123Z");
    EXPECT_EQ(rfc3339_millis(1796025600005000).view(), "2026-11-30T08:00:00.005Z");
    EXPECT_EQ(rfc3339_millis(-1).view(), "1969-12-31T23:59:59.999Z");
    EXPECT_EQ(rfc3339_millis(951782400000000).view(), "2000-02-29T00:00:00.000Z");
    // The text is held inline: the widest years still fit.
    EXPECT_EQ(rfc3339_millis(253402300799999000).view(), "9999-12-31T23:59:59.999Z");
    EXPECT_EQ(rfc3339_millis(253402300800000000).view(), "10000-01-01T00:00:00.000Z");
    // Each second is formatted once per thread and reused: the cache must follow the second,
    // forwards, backwards and across midnight.
    EXPECT_EQ(rfc3339_millis(1796025600999000).view(), "2026-11-30T08:00:00.999Z");
    EXPECT_EQ(rfc3339_millis(1796025601000000).view(), "2026-11-30T08:00:01.000Z");
    EXPECT_EQ(rfc3339_millis(1796025600000000).view(), "2026-11-30T08:00:00.000Z");
    EXPECT_EQ(rfc3339_millis(1796083199999999).view(), "2026-11-30T23:59:59.999Z");
    EXPECT_EQ(rfc3339_millis(1796083200000000).view(), "2026-12-01T00:00:00.000Z");
    EXPECT_EQ(rfc3339_millis(0).view(), "1970-01-01T00:00:00.000Z");
}

// A row the source refused (the WAL source's rows of a parked key) is parked with the source's
// code and reason, never produced, even behind an earlier failure of its key in the batch; other
// keys are produced; prepare_batch builds no message for it.
TEST(BatchPlannerTest, RowsTheSourceRefusesAreParkedInOrderAndNeverProduced) {
    std::vector<source_row> src(4);
    for (std::size_t i = 0; i < src.size(); ++i) {
        src[i].id = static_cast<std::int64_t>(i + 1);
        src[i].topic = "orders";
        src[i].key = i == 1 ? "b" : "a";
        src[i].message_id = "m-" + std::to_string(i + 1);
        src[i].payload = "p";
        src[i].headers_json = "{}";
    }
    src[0].refused_code = "KEY_PARKED";
    src[0].refused_reason = "an earlier message of its key is parked";
    src[2].refused_code = "KEY_PARKED";
    src[2].refused_reason = "an earlier message of its key is parked";
    src[3].refused_code = "KEY_PARKED";
    src[3].refused_reason = "an earlier message of its key is parked";
    auto batch = prepare_batch(src, [](const std::string& t) { return t; });
    EXPECT_EQ(batch.items[0].topic, nullptr) << "a refused row gets no message";
    const auto plan = plan_produce(batch.planned);
    EXPECT_EQ(ids(batch.planned, plan.produce), (std::vector<std::int64_t>{2}));
    ASSERT_EQ(plan.park.size(), 3u) << "every refused row is parked, not held behind the first";
    EXPECT_EQ(plan.park[0].row, 0u);
    EXPECT_EQ(plan.park[1].row, 2u);
    EXPECT_EQ(plan.park[2].row, 3u);
    EXPECT_EQ(plan.park[0].error_code, "KEY_PARKED");
    EXPECT_EQ(plan.park[0].reason, "an earlier message of its key is parked");
    const auto marks = plan_mark(batch.planned, plan, {acked(5)});
    EXPECT_EQ(published_ids(batch.planned, marks), (std::vector<std::int64_t>{2}));
    EXPECT_EQ(marks.park.size(), 3u);
    EXPECT_EQ(marks.left, 0u);
}

}  // namespace
