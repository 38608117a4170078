#include "http_server.hpp"

#include <httplib.h>

#include <thread>

#include "ferry/common/error.hpp"

namespace ferry::relay {

class http_server::impl {
public:
    impl(const std::string& listen, ferry::metrics::registry& metrics, std::function<bool()> ready,
         report_routes reports)
        : _metrics(metrics), _ready(std::move(ready)), _reports(std::move(reports)) {
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
                answer(res, [&] { return _reports.list(query_of(req)); });
            });
        }
        if (_reports.show) {
            _server.Get(R"(/reports/(\d{1,18}))",
                        [this](const httplib::Request& req, httplib::Response& res) {
                            const auto id = std::stoll(req.matches[1].str());
                            answer(res, [&] { return _reports.show(id, query_of(req)); });
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

    /// Runs a report route; a ferry::error becomes a JSON error body (4xx when permanent, 503
    /// when the database is unavailable) instead of a dropped connection.
    template <class Fn>
    static void answer(httplib::Response& res, Fn&& fn) {
        try {
            auto [status, body] = fn();
            res.status = status;
            res.set_content(body, "application/json");
        } catch (const ferry::error& e) {
            res.status = e.kind() == error_kind::permanent ? 400 : 503;
            std::string msg;
            for (char c : std::string(e.what())) {
                if (c == '"' || c == '\\') msg += '\\';
                if (static_cast<unsigned char>(c) >= 0x20) msg += c;
            }
            res.set_content("{\"error\":\"" + msg + "\",\"code\":\"" + e.code() + "\"}",
                            "application/json");
        } catch (const std::exception&) {
            res.status = 500;
            res.set_content("{\"error\":\"internal error\"}", "application/json");
        }
    }

    ferry::metrics::registry& _metrics;
    std::function<bool()> _ready;
    report_routes _reports;
    httplib::Server _server;
    std::string _host;
    int _port = -1;
    std::thread _thread;
};

http_server::http_server(const std::string& listen, ferry::metrics::registry& metrics,
                         std::function<bool()> ready, report_routes reports)
    : _impl(std::make_unique<impl>(listen, metrics, std::move(ready), std::move(reports))) {}
http_server::~http_server() = default;
const std::string& http_server::host() const { return _impl->_host; }
int http_server::port() const { return _impl->_port; }
void http_server::stop() { _impl->stop(); }

}  // namespace ferry::relay
