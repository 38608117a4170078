#pragma once
// A small TCP fault proxy: listens on 127.0.0.1 and forwards each accepted connection to an
// upstream server, so a test can break the network between its processes and PostgreSQL or
// Redis (this kernel has no tc netem, and toxiproxy is not packaged).
//
// One process, one thread, poll(2). Each route has a mode, changed at any time by a control
// command (the same text protocol on the optional control port and through command()):
//
//   ping                       -> ok
//   heal NAME|all              normal forwarding again (held data flows on, in order)
//   blackhole NAME|all         a partition: nothing is forwarded in either direction, bytes are
//                              held (TCP stays open, the kernel buffers fill); new connections are
//                              accepted but not connected upstream until healed
//   latency NAME|all MS        every chunk is delivered MS milliseconds after it was read
//   reset NAME|all             every open connection of the route is reset (RST) now, once
//   refuse NAME|all            new connections are reset at once until healed
//   stats NAME                 -> ok accepted=N open=N bytes=N resets=N mode=M
//
// Each reply is one line: `ok ...` or `error: <reason>`.
//
// Lifecycle: the constructor binds every listener (port 0 picks a free one); start() runs the
// loop on a background thread, run() on the calling thread until stop(). stop() closes every
// socket. Thread-safety: command(), port(), control_port() and stop() are safe from any thread.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::test {

struct proxy_route {
    std::string name;           // [A-Za-z0-9_-]+, unique
    std::string upstream_host;  // numeric IPv4 or "localhost"
    std::uint16_t upstream_port = 0;
    std::uint16_t listen_port = 0;  // 0: a free port
};

// Parses NAME=HOST:PORT[@LISTEN_PORT]; throws std::invalid_argument naming the problem.
[[nodiscard]] proxy_route parse_route(std::string_view spec);

class fault_proxy {
public:
    // control_port: -1 no control listener, 0 a free port, else that port.
    explicit fault_proxy(std::vector<proxy_route> routes, int control_port = -1);
    ~fault_proxy();
    fault_proxy(const fault_proxy&) = delete;
    fault_proxy& operator=(const fault_proxy&) = delete;

    void start();  // background thread
    void run();    // on this thread, until stop()
    void stop();

    // The listening port of a route (throws std::out_of_range for an unknown name).
    [[nodiscard]] std::uint16_t port(std::string_view route) const;
    [[nodiscard]] int control_port() const;
    // Executes one control line; from another thread while the loop runs, or directly when it
    // does not. Returns the reply line.
    std::string command(std::string_view line);

private:
    struct impl;
    std::unique_ptr<impl> _impl;
};

}  // namespace ferry::test
