#include "http_server.hpp"

#include <httplib.h>

#include <thread>

#include "ferry/common/error.hpp"

namespace ferry::relay {

class http_server::impl {
public:
    impl(const std::string& listen, std::shared_ptr<registry> metrics, std::function<bool()> ready)
        : _metrics(std::move(metrics)), _ready(std::move(ready)) {
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
            res.set_content(_metrics->render(), "text/plain; version=0.0.4; charset=utf-8");
        });
        _server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
            res.set_content("ok\n", "text/plain");
        });
        _server.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
            const bool ok = _ready && _ready();
            res.status = ok ? 200 : 503;
            res.set_content(ok ? "ready\n" : "not ready\n", "text/plain");
        });
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

    std::shared_ptr<registry> _metrics;
    std::function<bool()> _ready;
    httplib::Server _server;
    std::string _host;
    int _port = -1;
    std::thread _thread;
};

http_server::http_server(const std::string& listen, std::shared_ptr<registry> metrics,
                         std::function<bool()> ready)
    : _impl(std::make_unique<impl>(listen, std::move(metrics), std::move(ready))) {}
http_server::~http_server() = default;
const std::string& http_server::host() const { return _impl->_host; }
int http_server::port() const { return _impl->_port; }
void http_server::stop() { _impl->stop(); }

}  // namespace ferry::relay
