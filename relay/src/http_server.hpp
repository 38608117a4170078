#pragma once
// The relay's HTTP endpoints: /metrics (Prometheus text), /healthz (200 while the process
// runs), /readyz (200 when `ready()` is true, else 503), and optionally /reports. cpp-httplib
// stays out of this header.
//
// Security (http_limits): /reports and /reports/{id}, and /metrics when asked, need
// `Authorization: Bearer <token>` when a token is set (401 with `WWW-Authenticate: Bearer`
// otherwise; compared in constant time); /healthz and /readyz stay open for probes. Requests
// with a target longer than max_uri_bytes get 414, with a body longer than max_body_bytes 413.
// Error bodies are `{"error": <generic text>, "code": <stable code>, "ref": <n>}`: the detail of
// a ferry::error (which may hold libpq text: host, user, database) goes to the log, redacted,
// under the same ref, never to the client. Only an `http_bad_request` carries its own message.
//
// Lifecycle: the constructor binds (port 0 picks a free port) and starts a listener thread;
// stop() or the destructor shuts it down. Thread-safety: `ready` and the routes are called from
// the listener's threads (cpp-httplib's pool).

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ferry/common/error.hpp"
#include "ferry/common/metrics.hpp"

namespace ferry::relay {

/// Optional JSON endpoints GET /reports and GET /reports/{id} (reconciliation reports). Each
/// returns (HTTP status, JSON body); called on the listener's threads, so they must be
/// thread-safe (the daemon's draw connections from a bounded_pool).
struct report_routes {
    using query = std::map<std::string, std::string>;
    std::function<std::pair<int, std::string>(const query&)> list;
    std::function<std::pair<int, std::string>(std::int64_t id, const query&)> show;
};

/// A request the client must fix; answered 400 with this message and code (so the message
/// must hold nothing but what the client sent and the rule it broke).
class http_bad_request : public std::runtime_error {
public:
    http_bad_request(std::string code, const std::string& message)
        : std::runtime_error(message), _code(std::move(code)) {}
    [[nodiscard]] const std::string& code() const noexcept { return _code; }

private:
    std::string _code;
};

struct http_limits {
    /// Bearer token for /reports (and /metrics with token_for_metrics); empty = no token.
    std::string token;
    bool token_for_metrics = false;
    /// Longest request body (413 beyond it); every route is a GET, so this stays small.
    std::size_t max_body_bytes = 16 * 1024;
    /// Longest request target, path and query (414 beyond it). cpp-httplib refuses beyond 8192
    /// on its own.
    std::size_t max_uri_bytes = 4096;
};

/// Parses a `limit`-style query value strictly: digits only, 1..cap. Throws http_bad_request
/// naming the parameter and the cap.
[[nodiscard]] std::int64_t parse_limit(const std::string& name, const std::string& value,
                                       std::int64_t cap);

/// True when `given` equals `expected`; the time taken depends only on expected's length.
[[nodiscard]] bool constant_time_equal(std::string_view given, std::string_view expected) noexcept;

/// A fixed number of reusable T (a report_store: one PostgreSQL connection each), created on
/// first need and reused. acquire() waits at most `wait` for a free one and then throws
/// ferry::error(retryable, "http.pool_exhausted"), answered 503. A lease whose T broke
/// (a lost connection) is discard()ed: its slot is freed and the next acquire creates a new T.
/// Thread-safe; the pool must outlive its leases.
template <class T>
class bounded_pool {
public:
    using factory = std::function<std::unique_ptr<T>()>;

    bounded_pool(std::size_t size, std::chrono::milliseconds wait, factory make)
        : _size(size == 0 ? 1 : size), _wait(wait), _make(std::move(make)) {}

    class lease {
    public:
        lease(bounded_pool* p, std::unique_ptr<T> item) : _pool(p), _item(std::move(item)) {}
        lease(lease&& o) noexcept : _pool(o._pool), _item(std::move(o._item)) { o._pool = nullptr; }
        lease& operator=(lease&&) = delete;
        lease(const lease&) = delete;
        lease& operator=(const lease&) = delete;
        ~lease() {
            if (_pool != nullptr) _pool->give_back(std::move(_item));
        }
        T& operator*() const { return *_item; }
        T* operator->() const { return _item.get(); }
        /// The item is broken: destroy it instead of returning it.
        void discard() { _item.reset(); }

    private:
        bounded_pool* _pool;
        std::unique_ptr<T> _item;
    };

    [[nodiscard]] lease acquire() {
        std::unique_lock lock(_mutex);
        if (!_free.wait_for(lock, _wait, [&] { return !_idle.empty() || _out < _size; })) {
            ++_exhausted;
            throw ferry::error(error_kind::retryable, "http.pool_exhausted",
                               "all " + std::to_string(_size) +
                                   " report connections stayed busy for " +
                                   std::to_string(_wait.count()) + " ms");
        }
        ++_out;
        if (!_idle.empty()) {
            auto item = std::move(_idle.back());
            _idle.pop_back();
            return lease(this, std::move(item));
        }
        lock.unlock();
        try {
            return lease(this, _make());
        } catch (...) {
            give_back(nullptr);
            throw;
        }
    }

    /// Items in use or idle (at most size()).
    [[nodiscard]] std::size_t open() const {
        std::lock_guard lock(_mutex);
        return _out + _idle.size();
    }
    [[nodiscard]] std::size_t size() const noexcept { return _size; }
    [[nodiscard]] std::uint64_t exhausted() const {
        std::lock_guard lock(_mutex);
        return _exhausted;
    }

private:
    void give_back(std::unique_ptr<T> item) {
        {
            std::lock_guard lock(_mutex);
            --_out;
            if (item) _idle.push_back(std::move(item));
        }
        _free.notify_one();
    }

    const std::size_t _size;
    const std::chrono::milliseconds _wait;
    const factory _make;
    mutable std::mutex _mutex;
    std::condition_variable _free;
    std::vector<std::unique_ptr<T>> _idle;
    std::size_t _out = 0;  // leased or being created; _out + _idle.size() <= _size
    std::uint64_t _exhausted = 0;
};

class http_server {
public:
    /// `listen` is host:port ("127.0.0.1:0"). Throws ferry::error(permanent) if it cannot bind.
    http_server(const std::string& listen, ferry::metrics::registry& metrics,
                std::function<bool()> ready, report_routes reports = {}, http_limits limits = {});
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
