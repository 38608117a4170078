// ferry-fault-proxy: the TCP fault proxy of tests/support as a process, for scripts/chaos.
//
//   ferry-fault-proxy --route NAME=HOST:PORT[@LISTEN_PORT]... [--control-port PORT]
//
// stdout: one line `route NAME=127.0.0.1:PORT` per route, then `control=127.0.0.1:PORT`, flushed
// at once. The control protocol is fault_proxy's (ferry/test/fault_proxy.hpp): one text command
// per line, one reply line each. SIGTERM or SIGINT stops it with exit code 0; bad arguments exit 2.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "ferry/test/fault_proxy.hpp"

namespace {
ferry::test::fault_proxy* g_proxy = nullptr;
void on_signal(int) {
    if (g_proxy != nullptr) g_proxy->stop();  // stop() only writes to a pipe: signal-safe
}
int usage(const std::string& why) {
    std::cerr << "ferry-fault-proxy: " << why
              << "\nusage: ferry-fault-proxy --route NAME=HOST:PORT[@LISTEN_PORT]... "
                 "[--control-port PORT]\n";
    return 2;
}
}  // namespace

int main(int argc, char** argv) {
    std::vector<ferry::test::proxy_route> routes;
    int control = 0;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            if ((a == "--route" || a == "--control-port") && i + 1 >= argc) {
                return usage(a + " needs a value");
            }
            if (a == "--route") {
                routes.push_back(ferry::test::parse_route(argv[++i]));
            } else if (a == "--control-port") {
                control = std::stoi(argv[++i]);
                if (control < 0 || control > 65535) return usage("--control-port: 0..65535");
            } else {
                return usage("unknown argument '" + a + "'");
            }
        }
        if (routes.empty()) return usage("at least one --route is needed");
        ferry::test::fault_proxy proxy(routes, control);
        g_proxy = &proxy;
        std::signal(SIGTERM, on_signal);
        std::signal(SIGINT, on_signal);
        std::signal(SIGPIPE, SIG_IGN);
        for (const auto& r : routes) {
            std::cout << "route " << r.name << "=127.0.0.1:" << proxy.port(r.name) << "\n";
        }
        std::cout << "control=127.0.0.1:" << proxy.control_port() << std::endl;
        proxy.run();
        g_proxy = nullptr;
    } catch (const std::invalid_argument& e) {
        return usage(e.what());
    } catch (const std::exception& e) {
        std::cerr << "ferry-fault-proxy: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
