#pragma once
// HTTP for consumer processes: /metrics, /healthz and /readyz, served by a small embeddable
// server (cpp-httplib stays out of this header).
//
//   /metrics  Prometheus text of the metrics registry (options.metrics, default the process
//             registry). Each served consumer is exported into it (metrics_exporter): its
//             counters and gauges, lag per partition, retry-table and dead-letter depth.
//   /healthz  200 while the process runs.
//   /readyz   200 when every served consumer is running, has partitions assigned, reaches its
//             PostgreSQL and (dedup modes redis / redis_and_inbox) its Redis; else 503. The body
//             is JSON naming each check; failure details go to the log (redacted), never to the
//             client.
// Security: with a token and token_for_metrics, /metrics needs `Authorization: Bearer <token>`
// (401 otherwise, compared in constant time); the probes stay open. Targets longer than
// max_uri_bytes get 414, bodies longer than max_body_bytes 413.
//
// Lifecycle: the server binds in its constructor (port 0 picks a free port) and serves on its
// own threads until stop() or destruction. The consumers must outlive the server; they may be
// started after it (readiness says 503 until then). Thread-safety: host()/port()/stop() from
// the owning thread; the routes run on cpp-httplib's threads.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "ferry/common/metrics.hpp"
#include "ferry/consumer/consumer.hpp"

namespace ferry::consumer {

struct http_options {
    /// host:port; port 0 picks a free port (see port()). IPv6 as [::1]:9464.
    std::string listen = "127.0.0.1:9464";
    /// Bearer token for /metrics when token_for_metrics; empty = no token. Never logged.
    std::string token;
    bool token_for_metrics = false;
    std::size_t max_body_bytes = 16 * 1024;
    std::size_t max_uri_bytes = 4096;
    /// The registry /metrics serves and the consumers are exported into; nullptr = the process
    /// registry (ferry::metrics::process_registry()).
    ferry::metrics::registry* metrics = nullptr;
    /// How long one readiness probe may wait for PostgreSQL or Redis.
    std::chrono::milliseconds probe_timeout{2000};
    /// Retry-table and dead-letter depth are counted (SELECT count(*)) at most this often.
    std::chrono::milliseconds depth_interval{5000};
};

/// One consumer's readiness, as /readyz reports it.
struct readiness {
    std::string group;
    bool running = false;
    std::size_t assigned_partitions = 0;
    bool postgres = false;
    bool redis_used = false;
    bool redis = false;  // meaningful when redis_used
    [[nodiscard]] bool ready() const noexcept {
        return running && assigned_partitions > 0 && postgres && (!redis_used || redis);
    }
};

/// Checks one consumer's readiness: running, partitions assigned, PostgreSQL (`SELECT 1` on a
/// connection of its own, reopened after a failure) and Redis (PING) when its dedup mode uses
/// Redis. Thread-safe (one probe at a time).
class readiness_probe {
public:
    readiness_probe(const consumer& c, std::chrono::milliseconds timeout);
    ~readiness_probe();
    readiness_probe(const readiness_probe&) = delete;
    readiness_probe& operator=(const readiness_probe&) = delete;

    [[nodiscard]] readiness check();

private:
    struct impl;
    std::unique_ptr<impl> _impl;
};

/// Exports a consumer's metrics into a registry: a collector refreshes, at every serialize(),
/// the ferry_consumer_* families labelled with the group (counters from metrics(), gauges,
/// ferry_consumer_partition_lag{topic,partition}, ferry_consumer_retry_depth and
/// ferry_consumer_dead_letter_depth, counted at most every depth_interval). Destroying it
/// removes the collector and the consumer's series. The consumer must outlive it.
class metrics_exporter {
public:
    metrics_exporter(const consumer& c, ferry::metrics::registry& registry,
                     std::chrono::milliseconds depth_interval = std::chrono::seconds(5),
                     std::chrono::milliseconds timeout = std::chrono::seconds(2));
    ~metrics_exporter();
    metrics_exporter(const metrics_exporter&) = delete;
    metrics_exporter& operator=(const metrics_exporter&) = delete;

private:
    struct impl;
    std::unique_ptr<impl> _impl;
};

class http_server {
public:
    /// Binds options.listen and serves `consumers` (not owned). Throws
    /// ferry::error(permanent, "consumer.http_listen", field "http.listen") when it cannot bind.
    http_server(http_options options, std::vector<const consumer*> consumers);
    ~http_server();
    http_server(const http_server&) = delete;
    http_server& operator=(const http_server&) = delete;

    [[nodiscard]] const std::string& host() const;
    /// The bound port (the chosen one when options.listen asked for port 0).
    [[nodiscard]] int port() const;
    void stop();

private:
    class impl;
    std::unique_ptr<impl> _impl;
};

}  // namespace ferry::consumer
