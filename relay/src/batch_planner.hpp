#pragma once
// Private: the relay's batch planner. Pure decisions, no SQL, no Kafka, no clock: given the rows
// a source claimed and, later, the sink's delivery results, it decides what to produce, what to
// publish, park, expire or hold back by key, and what the worker does next. Unit-tested without
// servers (batch_planner_test).
//
// Rules (relay/README.md, ADR 0002 and ADR 0010):
//  - rows are taken in id order; an expired row is never produced, it is moved to `expired`;
//  - a row whose headers cannot be decoded is parked (HEADERS_INVALID), never produced;
//  - a row the source refused (source_row::refused_code) is parked with the source's code and
//    reason, even behind an earlier failure of its key in the batch (the source refuses every
//    row of a parked key, so parking them in order keeps the key's order);
//  - per (outbox topic, key), the acknowledged prefix is published; the first failure of a key
//    is parked (permanent) or left in the outbox (transient, not sent), and every later row of
//    that key in the batch stays in the outbox, even if Kafka acknowledged it;
//  - a fenced mark marks nothing and drops the group.

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "headers.hpp"
#include "source.hpp"

namespace ferry::relay::detail {

/// What the planner needs of one claimed row.
struct planned_row {
    std::int64_t id = 0;
    std::string topic;  // outbox topic
    std::string key;
    bool expired = false;
    std::string header_error;  // non-empty: headers cannot be decoded (the reason)
    std::string refused_code;  // non-empty: the source refused the row (source_row)
    std::string refused_reason;
};

enum class delivery_result { acked, permanent, transient, not_sent };

/// The sink's answer for one produced row.
struct delivery_report {
    delivery_result result = delivery_result::not_sent;
    std::int32_t partition = -1;
    std::int64_t offset = -1;
    std::string error_code;
    std::string error_text;
};

struct park_decision {
    std::size_t row = 0;  // index into the batch's rows
    std::string error_code;
    std::string reason;
};

/// A short header value held inline (no allocation): the `ferry-created-at` text.
struct inline_text {
    std::array<char, 32> chars{};
    std::size_t size = 0;
    [[nodiscard]] std::string_view view() const { return {chars.data(), size}; }
};

/// The `ferry-created-at` header's text: RFC 3339 in UTC with milliseconds (truncated), e.g.
/// "2026-11-30T08:00:00.123Z".
[[nodiscard]] inline_text rfc3339_millis(std::int64_t micros_since_epoch);

/// One message as the sink produces it. Its headers, in order: "ferry-message-id",
/// "ferry-created-at", then the row's own (for_each_header). The two ferry headers are fields,
/// not list entries: a batch of 1000 rows then allocates no header names and no list.
struct produce_item {
    /// The broker topic (already mapped), shared by the batch's items of one topic; null for
    /// a row that is not produced (expired or refused).
    std::shared_ptr<const std::string> topic;
    std::optional<std::string> key;  // nullopt: null key
    std::string payload;
    std::string message_id;  // the "ferry-message-id" header
    inline_text created_at;  // the "ferry-created-at" header
    header_list headers;     // the row's own headers, decoded (headers.hpp)
};

/// Calls `f(name, value)` (both std::string_view) for each of `item`'s headers, in order.
template <class F>
void for_each_header(const produce_item& item, F&& f) {
    f(std::string_view("ferry-message-id"), std::string_view(item.message_id));
    f(std::string_view("ferry-created-at"), item.created_at.view());
    for (const auto& [name, value] : item.headers)
        f(std::string_view(name), std::string_view(value));
}

/// Step 0: the claimed rows as the planner sees them, and each row's message as the sink
/// would produce it (the payload, message id and key are moved out of `rows`). Headers:
/// "ferry-message-id", "ferry-created-at", then the row's own headers decoded (headers.hpp); a row
/// whose headers cannot be decoded gets `header_error` and is parked by plan_produce. Expired rows
/// get no item. `topic_of` maps an outbox topic to the broker's.
struct prepared_batch {
    std::vector<planned_row> planned;
    std::vector<produce_item> items;  // one per row (index = row index)
};
[[nodiscard]] prepared_batch prepare_batch(
    std::vector<source_row>& rows, const std::function<std::string(const std::string&)>& topic_of);

/// Step 1: what to hand to the sink, before producing.
struct produce_plan {
    std::vector<std::size_t> produce;  // row indexes, in id order
    std::vector<std::size_t> expire;
    std::vector<park_decision> park;  // rows refused before producing (headers)
    std::size_t held = 0;             // rows not produced: an earlier row of their key failed
};

[[nodiscard]] produce_plan plan_produce(const std::vector<planned_row>& rows);

/// Step 2: what to mark, given one report per produced row (same order as plan.produce).
struct mark_plan {
    struct publish_decision {
        std::size_t row = 0;
        std::int32_t partition = -1;
        std::int64_t offset = -1;
    };
    std::vector<publish_decision> publish;
    std::vector<park_decision> park;
    std::vector<std::size_t> expire;
    std::size_t transient = 0;   // rows with a transient failure (stay in the outbox)
    std::size_t held_acked = 0;  // acknowledged, but behind a failure of their key: unmarked
    std::size_t left = 0;        // rows left in the outbox for a later batch
    [[nodiscard]] bool nothing_to_mark() const {
        return publish.empty() && park.empty() && expire.empty();
    }
};

[[nodiscard]] mark_plan plan_mark(const std::vector<planned_row>& rows, const produce_plan& plan,
                                  const std::vector<delivery_report>& reports);

/// Whether the next batch of the group may be claimed and produced while this one is still
/// being marked (the publisher's pipeline). Only when every row was published or expired: a
/// park, a failure or a held row must be marked first, so the next claim sees the parked key
/// held back and the failed row again, before any later row of its key.
[[nodiscard]] bool may_overlap_next_claim(const mark_plan& marks, bool producer_lost);

/// Step 3: what the worker does after the batch.
enum class next_step {
    poll_again_now,  // a full batch: more rows are likely waiting
    poll_later,      // a partial or empty batch
    back_off,        // Kafka trouble (transient failures, fatal error, purge)
    drop_group,      // the mark was fenced: another instance owns the group
};

struct batch_facts {
    std::size_t claimed = 0;
    std::size_t batch_size = 0;
    bool fenced = false;         // the fenced mark found the lease taken
    bool producer_lost = false;  // fatal error or purge: the producer is recreated
};

[[nodiscard]] next_step plan_next(const batch_facts& facts, const mark_plan& marks);

/// Whether the claimer claims the group's next batch while this batch's delivery reports are
/// awaited (the claim prefetch, ADR 0070 twenty-second amendment): only after a full claim,
/// when more rows are likely waiting. The prefetched claim does not wait for rows.
[[nodiscard]] bool may_prefetch_next_claim(std::size_t claimed, std::size_t batch_size);

/// Whether a claim prefetched while this batch was in flight may be the group's next batch.
/// Only when the next claim would have come at once and may overlap this batch's mark
/// (plan_next says poll_again_now, may_overlap_next_claim holds) and the prefetched claim holds
/// rows under the lease. Otherwise it is dropped unproduced: its rows are yielded again by the
/// next claim, after this batch's failed or held rows, so a key's order is the one a claim
/// made after the reports would have had.
[[nodiscard]] bool keep_prefetched_claim(const batch_facts& facts, const mark_plan& marks,
                                         bool next_lease_ours, std::size_t next_rows);

}  // namespace ferry::relay::detail
