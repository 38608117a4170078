#pragma once
// The relay's HTTP endpoints: /metrics (Prometheus text), /healthz (200 while the process
// runs), /readyz (200 when `ready()` is true, else 503). cpp-httplib stays out of this header.
//
// Lifecycle: the constructor binds (port 0 picks a free port) and starts a listener thread;
// stop() or the destructor shuts it down. Thread-safety: `ready` and the registry are called
// from the listener's threads.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "ferry/common/metrics.hpp"

namespace ferry::relay {

/// Optional JSON endpoints GET /reports and GET /reports/{id} (reconciliation reports). Each
/// returns (HTTP status, JSON body); called on the listener's threads, so they must be
/// thread-safe (the daemon's open a connection per request). Empty functions: no such route.
struct report_routes {
    using query = std::map<std::string, std::string>;
    std::function<std::pair<int, std::string>(const query&)> list;
    std::function<std::pair<int, std::string>(std::int64_t id, const query&)> show;
};

class http_server {
public:
    /// `listen` is host:port ("127.0.0.1:0"). Throws ferry::error(permanent) if it cannot bind.
    http_server(const std::string& listen, ferry::metrics::registry& metrics,
                std::function<bool()> ready, report_routes reports = {});
    ~http_server();
    http_server(const http_server&) = delete;
    http_server& operator=(const http_server&) = delete;

    [[nodiscard]] const std::string& host() const;
    [[nodiscard]] int port() const;
    void stop();

private:
    class impl;
    std::unique_ptr<impl> _impl;
};

}  // namespace ferry::relay
