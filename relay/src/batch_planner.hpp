#pragma once
// Private: the relay's batch planner. Pure decisions, no SQL, no Kafka, no clock: given the rows
// a source claimed and, later, the sink's delivery results, it decides what to produce, what to
// publish, park, expire or hold back by key, and what the worker does next. Unit-tested without
// servers (batch_planner_test).
//
// Rules (relay/README.md, ADR 0002 and ADR 0010):
//  - rows are taken in id order; an expired row is never produced, it is moved to `expired`;
//  - a row whose headers cannot be decoded is parked (HEADERS_INVALID), never produced;
//  - per (outbox topic, key), the acknowledged prefix is published; the first failure of a key
//    is parked (permanent) or left in the outbox (transient, not sent), and every later row of
//    that key in the batch stays in the outbox, even if Kafka acknowledged it;
//  - a fenced mark marks nothing and drops the group.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ferry::relay::detail {

/// What the planner needs of one claimed row.
struct planned_row {
    std::int64_t id = 0;
    std::string topic;  // outbox topic
    std::string key;
    bool expired = false;
    std::string header_error;  // non-empty: headers cannot be decoded (the reason)
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

}  // namespace ferry::relay::detail
