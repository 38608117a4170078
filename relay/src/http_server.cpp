#include "http_server.hpp"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cctype>
#include <charconv>
#include <optional>
#include <thread>

#include "ferry/common/error.hpp"
#include "ferry/common/redact.hpp"
#include "ferry/internal/http_auth.hpp"

namespace ferry::relay {

std::int64_t parse_limit(const std::string& name, const std::string& value, std::int64_t cap) {
    std::int64_t n = 0;
    const auto* end = value.data() + value.size();
    const bool digits = !value.empty() && value.size() <= 19 &&
                        value.find_first_not_of("0123456789") == std::string::npos;
    const auto r = digits ? std::from_chars(value.data(), end, n) : std::from_chars_result{};
    if (!digits || r.ec != std::errc{} || r.ptr != end || n < 1 || n > cap) {
        throw http_bad_request("http.bad_" + name,
                               name + " must be a whole number from 1 to " + std::to_string(cap));
    }
    return n;
}

bool constant_time_equal(std::string_view given, std::string_view expected) noexcept {
    return internal::constant_time_equal(given, expected);
}

namespace {

std::string json_escaped(const std::string& text) { return internal::json_string_body(text); }

void error_body(httplib::Response& res, int status, const std::string& message,
                const std::string& code, std::uint64_t ref) {
    res.status = status;
    res.set_content("{\"error\":\"" + json_escaped(message) + "\",\"code\":\"" +
                        json_escaped(code) + "\",\"ref\":" + std::to_string(ref) + "}",
                    "application/json");
}

// The value of "Authorization: Bearer <token>" (scheme case-insensitive), or nullopt.
std::optional<std::string> bearer_of(const httplib::Request& req) {
    if (!req.has_header("Authorization")) return std::nullopt;
    return internal::bearer_token(req.get_header_value("Authorization"));
}

}  // namespace

class http_server::impl {
public:
    impl(const std::string& listen, ferry::metrics::registry& metrics, std::function<bool()> ready,
         report_routes reports, http_limits limits)
        : _metrics(metrics),
          _ready(std::move(ready)),
          _reports(std::move(reports)),
          _limits(std::move(limits)) {
        const auto colon = listen.rfind(':');
        if (colon == std::string::npos) {
            throw ferry::error(error_kind::permanent, "relay.http_listen",
                               "http.listen must be host:port, got \"" + listen + "\"",
                               "http.listen");
        }
        _host = listen.substr(0, colon);
        if (_host.size() >= 2 && _host.front() == '[' && _host.back() == ']') {
            _host = _host.substr(1, _host.size() - 2);
        }
        const int requested = std::stoi(listen.substr(colon + 1));
        _server.set_payload_max_length(_limits.max_body_bytes);
        // Before routing: the target length (414), then the token of protected paths (401).
        _server.set_pre_routing_handler(
            [this](const httplib::Request& req, httplib::Response& res) {
                if (req.target.size() > _limits.max_uri_bytes) {
                    error_body(res, 414,
                               "request target longer than " +
                                   std::to_string(_limits.max_uri_bytes) + " bytes",
                               "http.uri_too_long", next_ref());
                    return httplib::Server::HandlerResponse::Handled;
                }
                if (needs_token(req.path) && !authorized(req, res)) {
                    return httplib::Server::HandlerResponse::Handled;
                }
                return httplib::Server::HandlerResponse::Unhandled;
            });
        _server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
            res.set_content(_metrics.serialize(), ferry::metrics::text_content_type);
        });
        _server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
            res.set_content("ok\n", "text/plain");
        });
        _server.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
            const bool ok = _ready && _ready();
            res.status = ok ? 200 : 503;
            res.set_content(ok ? "ready\n" : "not ready\n", "text/plain");
        });
        if (_reports.list) {
            _server.Get("/reports", [this](const httplib::Request& req, httplib::Response& res) {
                answer(req, res, [&] { return _reports.list(query_of(req)); });
            });
        }
        if (_reports.show) {
            _server.Get(R"(/reports/(\d{1,18}))",
                        [this](const httplib::Request& req, httplib::Response& res) {
                            const auto id = std::stoll(req.matches[1].str());
                            answer(req, res, [&] { return _reports.show(id, query_of(req)); });
                        });
        }
        if (requested == 0) {
            _port = _server.bind_to_any_port(_host);
        } else {
            _port = _server.bind_to_port(_host, requested) ? requested : -1;
        }
        if (_port <= 0) {
            throw ferry::error(error_kind::permanent, "relay.http_listen",
                               "cannot listen on " + listen, "http.listen");
        }
        _thread = std::thread([this] { _server.listen_after_bind(); });
    }
    ~impl() { stop(); }

    void stop() {
        if (_thread.joinable()) {
            _server.stop();
            _thread.join();
        }
    }

    static report_routes::query query_of(const httplib::Request& req) {
        report_routes::query q;
        for (const auto& [k, v] : req.params) q[k] = v;
        return q;
    }

    std::uint64_t next_ref() { return _ref.fetch_add(1, std::memory_order_relaxed) + 1; }

    [[nodiscard]] bool needs_token(const std::string& path) const {
        if (_limits.token.empty()) return false;
        if (path == "/reports" || path.rfind("/reports/", 0) == 0) return true;
        return _limits.token_for_metrics && path == "/metrics";
    }

    // RFC 6750: no credentials -> 401 with a bare challenge; wrong ones -> 401 invalid_token.
    bool authorized(const httplib::Request& req, httplib::Response& res) {
        const auto given = bearer_of(req);
        if (given && constant_time_equal(*given, _limits.token)) return true;
        const auto ref = next_ref();
        res.set_header("WWW-Authenticate", given ? R"(Bearer realm="ferry", error="invalid_token")"
                                                 : R"(Bearer realm="ferry")");
        error_body(res, 401, given ? "invalid bearer token" : "a bearer token is required",
                   "http.unauthorized", ref);
        spdlog::warn("event=http_unauthorized ref={} path={} remote={} reason={}", ref, req.path,
                     req.remote_addr, given ? "invalid_token" : "missing_token");
        return false;
    }

    /// Runs a report route. A client mistake is a 400 with its message; any other failure is
    /// logged (redacted) under a ref and answered with a generic message: a ferry::error's text
    /// can hold libpq's (host, port, user, database), which the client must never see.
    template <class Fn>
    void answer(const httplib::Request& req, httplib::Response& res, Fn&& fn) {
        try {
            auto [status, body] = fn();
            res.status = status;
            res.set_content(body, "application/json");
        } catch (const http_bad_request& e) {
            error_body(res, 400, e.what(), e.code(), next_ref());
        } catch (const ferry::error& e) {
            const auto ref = next_ref();
            const bool client = e.kind() == error_kind::permanent;
            spdlog::warn("event=http_error ref={} path={} code={} kind={} error=\"{}\"", ref,
                         req.path, e.code(), to_string(e.kind()), redact_dsn(e.what()));
            if (!client) res.set_header("Retry-After", "1");
            error_body(res, client ? 400 : 503,
                       client ? "the request could not be answered (see the relay log)"
                              : "reports are unavailable, try again later",
                       e.code(), ref);
        } catch (const std::exception& e) {
            const auto ref = next_ref();
            spdlog::error("event=http_error ref={} path={} error=\"{}\"", ref, req.path,
                          redact_dsn(e.what()));
            error_body(res, 500, "internal error", "http.internal", ref);
        }
    }

    ferry::metrics::registry& _metrics;
    std::function<bool()> _ready;
    report_routes _reports;
    http_limits _limits;
    std::atomic<std::uint64_t> _ref{0};
    httplib::Server _server;
    std::string _host;
    int _port = -1;
    std::thread _thread;
};

http_server::http_server(const std::string& listen, ferry::metrics::registry& metrics,
                         std::function<bool()> ready, report_routes reports, http_limits limits)
    : _impl(std::make_unique<impl>(listen, metrics, std::move(ready), std::move(reports),
                                   std::move(limits))) {}
http_server::~http_server() = default;
const std::string& http_server::host() const { return _impl->_host; }
int http_server::port() const { return _impl->_port; }
void http_server::stop() { _impl->stop(); }

}  // namespace ferry::relay
