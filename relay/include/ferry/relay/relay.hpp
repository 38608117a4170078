#pragma once
// The relay: publishes committed outbox rows to Kafka and marks them, under leases with epochs
// (docs/adr/0002-relay-claiming-and-fencing.md, relay/README.md).
//
// Lifecycle: construct with options, start() launches two threads (the lease keeper and the
// publish worker), stop() stops claiming, finishes or abandons the in-flight batch within
// options.shutdown_timeout, releases the leases and joins the threads. The destructor calls
// stop(). A relay is started at most once.
// Thread-safety: start()/stop() from one thread; ready(), counters and metrics() from any.

#include <cstdint>
#include <memory>
#include <string>

#include "ferry/common/metrics.hpp"
#include "ferry/relay/options.hpp"

namespace ferry::relay {

/// This instance's totals since start, for tests and logs (the metrics registry may be shared
/// by several relays of one process, so its series can hold more).
struct relay_counts {
    std::uint64_t published = 0;  // rows acknowledged by Kafka and marked
    std::uint64_t parked = 0;
    std::uint64_t expired = 0;
    std::uint64_t fenced = 0;  // batches whose mark was refused (lease lost)
    std::uint64_t batches = 0;
};

class relay {
public:
    /// The relay's metrics go to `metrics` (ADR 0030: one registry per process); nullptr means
    /// ferry::metrics::process_registry(). It must outlive the relay.
    explicit relay(relay_options options, ferry::metrics::registry* metrics = nullptr);
    ~relay();
    relay(const relay&) = delete;
    relay& operator=(const relay&) = delete;

    /// Validates the options (throws ferry::error(permanent)) and starts the threads. Server
    /// outages are not errors here: the threads retry with backoff.
    void start();
    /// Graceful stop, bounded by options.shutdown_timeout plus one database round trip.
    void stop();

    /// Connected to PostgreSQL and holding or waiting for a lease (for /readyz).
    [[nodiscard]] bool ready() const;
    [[nodiscard]] int groups_held() const;
    [[nodiscard]] const std::string& instance_id() const;
    [[nodiscard]] relay_counts counts() const;
    [[nodiscard]] ferry::metrics::registry& metrics();

private:
    class impl;
    std::unique_ptr<impl> _impl;
};

}  // namespace ferry::relay
