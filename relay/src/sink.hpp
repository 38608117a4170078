#pragma once
// Private: where the relay publishes. A sink produces a batch in order and reports, per
// message, "acknowledged at partition/offset", "refused permanently", "transient" or "not
// sent"; the batch planner turns those reports into marks. Kafka is the sink today
// (kafka_sink.hpp); another broker implements this interface without touching the source, the
// planner or the publisher.

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "batch_planner.hpp"

namespace ferry::relay::detail {

// Per message: acknowledged at partition/offset, refused permanently, transient, not sent (the
// planner's types; error_code is the broker client's error name, e.g. "MSG_SIZE_TOO_LARGE").
using outcome = delivery_result;
using delivery = delivery_report;

struct batch_outcome {
    std::vector<delivery> deliveries;  // one per item, same order
    bool fatal = false;                // the sink's client was lost (and is recreated)
    std::string fatal_reason;
    /// Messages were purged from the client's queue (lease budget spent, or the batch abandoned
    /// at its deadline): the client is recreated before the next batch.
    bool purged = false;
};

class sink {
public:
    virtual ~sink() = default;

    /// Produces `items` in order and waits for their reports, at most until `deadline` or until
    /// `abandon()` returns true. A message whose (topic, key) already failed earlier in the
    /// batch is not produced (not_sent), so a key never overtakes its failed message.
    /// `produce_until` is the zombie guard: nothing is handed to the broker client after it,
    /// and what it still holds unsent then is purged. `after_produce`, when set, runs once every
    /// item was handed over and before the first report is served (a fault point).
    virtual batch_outcome send(const std::vector<produce_item>& items,
                               std::chrono::steady_clock::time_point deadline,
                               std::chrono::steady_clock::time_point produce_until,
                               const std::function<bool()>& abandon,
                               const std::function<void()>& after_produce) = 0;

    /// Test builds' fault point: make the client fail fatally, as a lost idempotent session
    /// would.
    virtual void raise_fatal_for_test(const char* reason) = 0;
};

}  // namespace ferry::relay::detail
