#pragma once
// Private: the Kafka sink (librdkafka), kept out of public headers. All of the relay's Kafka
// code is in kafka_sink.cpp: the producer below and kafka_sink, which recreates it.
//
// One idempotent producer (enable.idempotence=true, acks=all, murmur2_random partitioner) with
// enable.gapless.guarantee=true, one request in flight, and no librdkafka message timeout
// (message.timeout.ms=0): a failure that could leave a gap in a partition is fatal, and the
// relay's own deadline (then a purge and a new producer) bounds a batch, so no later message of
// a key lands after an earlier one failed (issue 10, hole 2).
// send() produces a batch in order and waits for every delivery report, so the caller learns,
// per message, "acknowledged at partition/offset", "refused permanently" or "not acknowledged"
// (transient). Lifecycle: created by the publish worker, destroyed and recreated after a fatal
// error. Thread-safety: one thread (the worker) calls send(); delivery reports are served on it.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ferry/common/metrics.hpp"
#include "ferry/relay/options.hpp"
#include "sink.hpp"

struct rd_kafka_s;

namespace ferry::relay::detail {

/// True when Kafka will refuse this message again however often it is retried.
[[nodiscard]] bool is_permanent_error(int rd_kafka_resp_err) noexcept;

class producer {
public:
    /// Throws ferry::error(permanent) for an invalid configuration.
    explicit producer(const relay_options& options);
    ~producer();
    producer(const producer&) = delete;
    producer& operator=(const producer&) = delete;

    /// Produces `items` in order and waits for their delivery reports, at most until
    /// `deadline`, or until `abandon()` returns true. A message whose (topic, key) already
    /// failed earlier in the batch is not produced (outcome::not_sent), so a key never overtakes
    /// its failed message.
    ///
    /// `produce_until` is the zombie guard: no message is handed to librdkafka after it, and
    /// messages still queued in librdkafka (not yet on the wire) when it passes are purged. The
    /// relay sets it just short of its lease's expiry, measured on the monotonic clock from the
    /// lease check, so a process that was paused (SIGSTOP, a long GC-like stall) and wakes after
    /// losing its lease publishes nothing new. Items not produced stay outcome::not_sent.
    ///
    /// `after_produce`, when set, runs once every item was handed to librdkafka and before the
    /// first delivery report is served (the relay's "after_produce" fault point hangs there).
    batch_outcome send(const std::vector<produce_item>& items,
                       std::chrono::steady_clock::time_point deadline,
                       std::chrono::steady_clock::time_point produce_until,
                       const std::function<bool()>& abandon,
                       const std::function<void()>& after_produce = {});

    /// Test builds' fault point: raises a fatal error inside librdkafka (as an idempotence
    /// failure such as OUT_OF_ORDER_SEQUENCE_NUMBER would), so every later produce fails with
    /// ERR__FATAL and the producer must be recreated.
    void raise_fatal_for_test(const char* reason);

    struct batch_state;  // per-batch delivery slots (public for the C callback only)

private:
    void serve(int timeout_ms);

    rd_kafka_s* _rk = nullptr;
    std::vector<std::shared_ptr<batch_state>> _unfinished;  // kept alive until every report
};

/// The sink the publisher uses: one producer at a time, created up front (so an invalid
/// kafka.properties entry fails start-up, not a loop) and recreated before the next send after a
/// fatal error or a purge made it unusable (issue 10, hole 1: every send goes through here, so
/// no round over several groups can use a dropped producer).
class kafka_sink final : public sink {
public:
    /// Throws ferry::error(permanent, "relay.kafka_config") for an invalid configuration.
    kafka_sink(const relay_options& options, ferry::metrics::counter restarts);
    batch_outcome send(const std::vector<produce_item>& items,
                       std::chrono::steady_clock::time_point deadline,
                       std::chrono::steady_clock::time_point produce_until,
                       const std::function<bool()>& abandon,
                       const std::function<void()>& after_produce) override;
    void raise_fatal_for_test(const char* reason) override;

private:
    void ensure_producer();

    const relay_options& _o;
    ferry::metrics::counter _restarts;
    std::unique_ptr<producer> _producer;
};

}  // namespace ferry::relay::detail
