#pragma once
// The relay's HTTP endpoints: /metrics (Prometheus text), /healthz (200 while the process
// runs), /readyz (200 when `ready()` is true, else 503). cpp-httplib stays out of this header.
//
// Lifecycle: the constructor binds (port 0 picks a free port) and starts a listener thread;
// stop() or the destructor shuts it down. Thread-safety: `ready` and the registry are called
// from the listener's threads.

#include <functional>
#include <memory>
#include <string>

#include "ferry/relay/metrics.hpp"

namespace ferry::relay {

class http_server {
public:
    /// `listen` is host:port ("127.0.0.1:0"). Throws ferry::error(permanent) if it cannot bind.
    http_server(const std::string& listen, std::shared_ptr<registry> metrics,
                std::function<bool()> ready);
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
