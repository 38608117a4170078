#include "ferry/test/fault_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <deque>
#include <future>
#include <list>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace ferry::test {

namespace {

using clock = std::chrono::steady_clock;
constexpr std::size_t k_chunk = 64 * 1024;
constexpr std::size_t k_max_queued = 4 * 1024 * 1024;  // per direction, then stop reading

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

void set_nonblocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL, 0);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        throw std::runtime_error(errno_text("fcntl"));
    }
}

// Closing with SO_LINGER {1, 0} sends RST instead of FIN.
void close_reset(int fd) {
    if (fd < 0) return;
    linger l{1, 0};
    (void)::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd);
}

int listen_on(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(errno_text("socket"));
    const int one = 1;
    (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd, 128) != 0) {
        const auto e = errno_text("bind/listen");
        ::close(fd);
        throw std::runtime_error(e + " (127.0.0.1:" + std::to_string(port) + ")");
    }
    set_nonblocking(fd);
    return fd;
}

std::uint16_t local_port(int fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        throw std::runtime_error(errno_text("getsockname"));
    }
    return ntohs(addr.sin_port);
}

bool valid_name(std::string_view s) {
    if (s.empty()) return false;
    for (const char c : s) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
    }
    return true;
}

std::uint16_t parse_port(std::string_view s, std::string_view what, bool allow_zero) {
    unsigned v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || v > 65535 || (!allow_zero && v == 0)) {
        throw std::invalid_argument(std::string(what) + ": not a port number: '" + std::string(s) +
                                    "'");
    }
    return static_cast<std::uint16_t>(v);
}

enum class mode { normal, blackhole, refuse };

const char* mode_name(mode m) {
    switch (m) {
        case mode::normal:
            return "normal";
        case mode::blackhole:
            return "blackhole";
        case mode::refuse:
            return "refuse";
    }
    return "?";
}

struct chunk {
    std::string data;
    std::size_t off = 0;
    clock::time_point due;
};

struct direction {
    std::deque<chunk> queue;
    std::size_t queued = 0;
    bool eof_read = false;      // the source said FIN
    bool shut_written = false;  // FIN forwarded
};

struct route_state {
    proxy_route spec;
    int listener = -1;
    mode m = mode::normal;
    std::chrono::milliseconds latency{0};
    std::uint64_t accepted = 0, bytes = 0, resets = 0;
    std::size_t open = 0;
};

struct connection {
    route_state* route = nullptr;
    int client = -1;
    int upstream = -1;
    bool connecting = true;  // upstream connect in progress
    direction up;            // client -> upstream
    direction down;          // upstream -> client
    bool dead = false;
};

struct control_client {
    int fd = -1;
    std::string in, out;
    bool dead = false;
};

}  // namespace

proxy_route parse_route(std::string_view spec) {
    const auto eq = spec.find('=');
    if (eq == std::string_view::npos) {
        throw std::invalid_argument("route '" + std::string(spec) +
                                    "': expected NAME=HOST:PORT[@LISTEN_PORT]");
    }
    proxy_route r;
    r.name = std::string(spec.substr(0, eq));
    if (!valid_name(r.name)) {
        throw std::invalid_argument("route '" + std::string(spec) +
                                    "': the name must be [A-Za-z0-9_-]+");
    }
    auto rest = spec.substr(eq + 1);
    if (const auto at = rest.find('@'); at != std::string_view::npos) {
        r.listen_port = parse_port(rest.substr(at + 1), "route " + r.name + " listen port", true);
        rest = rest.substr(0, at);
    }
    const auto colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
        throw std::invalid_argument("route " + r.name + ": upstream must be HOST:PORT, got '" +
                                    std::string(rest) + "'");
    }
    r.upstream_host = std::string(rest.substr(0, colon));
    r.upstream_port = parse_port(rest.substr(colon + 1), "route " + r.name + " upstream", false);
    return r;
}

struct fault_proxy::impl {
    std::vector<std::unique_ptr<route_state>> routes;
    int control_listener = -1;
    int control_port_value = -1;
    int wake[2] = {-1, -1};
    std::list<connection> conns;
    std::list<control_client> controls;
    std::atomic<bool> stopping{false};
    std::atomic<bool> running{false};
    std::thread thread;
    std::mutex mutex;  // guards pending
    std::deque<std::pair<std::string, std::promise<std::string>>> pending;

    route_state* find(std::string_view name) {
        for (auto& r : routes) {
            if (r->spec.name == name) return r.get();
        }
        return nullptr;
    }

    void kill_conn(connection& c, bool count_reset) {
        if (c.dead) return;
        close_reset(c.client);
        close_reset(c.upstream);
        c.client = c.upstream = -1;
        c.dead = true;
        --c.route->open;
        if (count_reset) ++c.route->resets;
    }

    void close_conn(connection& c) {
        if (c.dead) return;
        ::close(c.client);
        ::close(c.upstream);
        c.client = c.upstream = -1;
        c.dead = true;
        --c.route->open;
    }

    std::string execute(std::string_view line) {
        std::istringstream in{std::string(line)};
        std::string verb, target, arg;
        in >> verb >> target >> arg;
        if (verb == "ping") return "ok";
        if (verb.empty()) return "error: empty command";
        std::vector<route_state*> targets;
        if (target == "all") {
            for (auto& r : routes) targets.push_back(r.get());
        } else if (auto* r = find(target)) {
            targets.push_back(r);
        } else {
            return "error: unknown route '" + target + "'";
        }
        if (verb == "stats") {
            if (targets.size() != 1) return "error: stats needs one route";
            const auto* r = targets.front();
            std::ostringstream out;
            out << "ok accepted=" << r->accepted << " open=" << r->open << " bytes=" << r->bytes
                << " resets=" << r->resets << " mode=" << mode_name(r->m)
                << " latency_ms=" << r->latency.count();
            return out.str();
        }
        if (verb == "heal") {
            for (auto* r : targets) {
                r->m = mode::normal;
                r->latency = std::chrono::milliseconds(0);
            }
            return "ok";
        }
        if (verb == "blackhole" || verb == "refuse") {
            for (auto* r : targets) r->m = verb == "blackhole" ? mode::blackhole : mode::refuse;
            return "ok";
        }
        if (verb == "latency") {
            long ms = -1;
            const auto [p, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), ms);
            if (ec != std::errc{} || p != arg.data() + arg.size() || ms < 0 || ms > 600000) {
                return "error: latency: MS must be 0..600000, got '" + arg + "'";
            }
            for (auto* r : targets) r->latency = std::chrono::milliseconds(ms);
            return "ok";
        }
        if (verb == "reset") {
            for (auto& c : conns) {
                for (auto* r : targets) {
                    if (c.route == r) kill_conn(c, true);
                }
            }
            return "ok";
        }
        return "error: unknown command '" + verb + "'";
    }

    void accept_on(route_state& r) {
        for (;;) {
            const int fd = ::accept4(r.listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0) return;  // EAGAIN or a transient error: poll again
            ++r.accepted;
            if (r.m == mode::refuse) {
                ++r.resets;
                close_reset(fd);
                continue;
            }
            const int one = 1;
            (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            const int up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            if (up < 0) {
                close_reset(fd);
                continue;
            }
            (void)::setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            sockaddr_in addr{};
            addr.sin_family = AF_INET;
            addr.sin_port = htons(r.spec.upstream_port);
            const std::string host =
                r.spec.upstream_host == "localhost" ? "127.0.0.1" : r.spec.upstream_host;
            if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
                close_reset(fd);
                ::close(up);
                continue;
            }
            const int rc = ::connect(up, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
            if (rc != 0 && errno != EINPROGRESS) {
                close_reset(fd);
                ::close(up);
                continue;
            }
            connection c;
            c.route = &r;
            c.client = fd;
            c.upstream = up;
            c.connecting = rc != 0;
            ++r.open;
            conns.push_back(std::move(c));
        }
    }

    // Reads from `from` into d; false when the connection must be reset.
    bool read_into(connection& c, int from, direction& d) {
        char buf[k_chunk];
        const auto n = ::recv(from, buf, sizeof buf, 0);
        if (n > 0) {
            d.queue.push_back(chunk{std::string(buf, static_cast<std::size_t>(n)), 0,
                                    clock::now() + c.route->latency});
            d.queued += static_cast<std::size_t>(n);
            c.route->bytes += static_cast<std::uint64_t>(n);
            return true;
        }
        if (n == 0) {
            d.eof_read = true;
            return true;
        }
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    }

    bool write_from(int to, direction& d) {
        const auto now = clock::now();
        while (!d.queue.empty() && d.queue.front().due <= now) {
            auto& ch = d.queue.front();
            const auto n =
                ::send(to, ch.data.data() + ch.off, ch.data.size() - ch.off, MSG_NOSIGNAL);
            if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
            ch.off += static_cast<std::size_t>(n);
            d.queued -= static_cast<std::size_t>(n);
            if (ch.off < ch.data.size()) return true;
            d.queue.pop_front();
        }
        if (d.queue.empty() && d.eof_read && !d.shut_written) {
            (void)::shutdown(to, SHUT_WR);
            d.shut_written = true;
        }
        return true;
    }

    void handle_control(control_client& cc, short revents) {
        if (revents & (POLLIN | POLLHUP | POLLERR)) {
            char buf[4096];
            const auto n = ::recv(cc.fd, buf, sizeof buf, 0);
            if (n <= 0) {
                if (n == 0 || (errno != EAGAIN && errno != EINTR)) cc.dead = true;
            } else {
                cc.in.append(buf, static_cast<std::size_t>(n));
                for (auto nl = cc.in.find('\n'); nl != std::string::npos; nl = cc.in.find('\n')) {
                    std::string line = cc.in.substr(0, nl);
                    cc.in.erase(0, nl + 1);
                    if (!line.empty() && line.back() == '\r') line.pop_back();
                    cc.out += execute(line) + "\n";
                }
                if (cc.in.size() > 65536) cc.dead = true;
            }
        }
        if (!cc.out.empty() && !cc.dead) {
            const auto n = ::send(cc.fd, cc.out.data(), cc.out.size(), MSG_NOSIGNAL);
            if (n > 0) cc.out.erase(0, static_cast<std::size_t>(n));
            if (n < 0 && errno != EAGAIN && errno != EINTR) cc.dead = true;
        }
    }

    void drain_pending() {
        char b[256];
        while (::read(wake[0], b, sizeof b) > 0) {
        }
        std::deque<std::pair<std::string, std::promise<std::string>>> todo;
        {
            std::lock_guard lock(mutex);
            todo.swap(pending);
        }
        for (auto& [line, p] : todo) p.set_value(execute(line));
    }

    void loop() {
        std::vector<pollfd> fds;
        // What each pollfd entry is: 0 wake, 1 control listener, 2 route listener (index),
        // 3 control client, 4 client side, 5 upstream side.
        struct tag {
            int kind;
            void* ptr;
        };
        std::vector<tag> tags;
        while (!stopping.load()) {
            fds.clear();
            tags.clear();
            fds.push_back({wake[0], POLLIN, 0});
            tags.push_back({0, nullptr});
            if (control_listener >= 0) {
                fds.push_back({control_listener, POLLIN, 0});
                tags.push_back({1, nullptr});
            }
            for (auto& r : routes) {
                fds.push_back({r->listener, POLLIN, 0});
                tags.push_back({2, r.get()});
            }
            for (auto& cc : controls) {
                fds.push_back(
                    {cc.fd, static_cast<short>(POLLIN | (cc.out.empty() ? 0 : POLLOUT)), 0});
                tags.push_back({3, &cc});
            }
            auto next_due = clock::time_point::max();
            const auto now = clock::now();
            for (auto& c : conns) {
                const bool held = c.route->m == mode::blackhole;
                short cev = 0, uev = 0;
                if (!held) {
                    if (!c.up.eof_read && c.up.queued < k_max_queued) cev |= POLLIN;
                    if (!c.connecting && !c.down.eof_read && c.down.queued < k_max_queued) {
                        uev |= POLLIN;
                    }
                    for (auto* d : {&c.up, &c.down}) {
                        if (d->queue.empty()) continue;
                        if (d->queue.front().due > now) {
                            next_due = std::min(next_due, d->queue.front().due);
                        } else if (d == &c.up) {
                            if (!c.connecting) uev |= POLLOUT;
                        } else {
                            cev |= POLLOUT;
                        }
                    }
                    // A FIN to forward with nothing queued: handle it on the next pass.
                    if ((c.up.eof_read && c.up.queue.empty() && !c.up.shut_written) ||
                        (c.down.eof_read && c.down.queue.empty() && !c.down.shut_written)) {
                        next_due = now;
                    }
                }
                if (c.connecting) uev |= POLLOUT;
                fds.push_back({c.client, cev, 0});
                tags.push_back({4, &c});
                fds.push_back({c.upstream, uev, 0});
                tags.push_back({5, &c});
            }
            int timeout_ms = 200;
            if (next_due != clock::time_point::max()) {
                const auto wait =
                    std::chrono::duration_cast<std::chrono::milliseconds>(next_due - clock::now())
                        .count();
                timeout_ms = static_cast<int>(std::clamp<long>(wait + 1, 0, 200));
            }
            const int n = ::poll(fds.data(), fds.size(), timeout_ms);
            if (n < 0 && errno != EINTR) throw std::runtime_error(errno_text("poll"));
            for (std::size_t i = 0; i < fds.size(); ++i) {
                const auto rev = fds[i].revents;
                const auto& t = tags[i];
                switch (t.kind) {
                    case 0:
                        if (rev) drain_pending();
                        break;
                    case 1:
                        if (rev & POLLIN) {
                            const int fd = ::accept4(control_listener, nullptr, nullptr,
                                                     SOCK_CLOEXEC | SOCK_NONBLOCK);
                            if (fd >= 0) controls.push_back(control_client{fd, {}, {}, false});
                        }
                        break;
                    case 2:
                        if (rev & POLLIN) accept_on(*static_cast<route_state*>(t.ptr));
                        break;
                    case 3:
                        handle_control(*static_cast<control_client*>(t.ptr), rev);
                        break;
                    case 4:
                    case 5: {
                        auto& c = *static_cast<connection*>(t.ptr);
                        if (c.dead) break;
                        const bool client_side = t.kind == 4;
                        if (!client_side && c.connecting) {
                            if (rev & (POLLOUT | POLLERR | POLLHUP)) {
                                int err = 0;
                                socklen_t len = sizeof err;
                                (void)::getsockopt(c.upstream, SOL_SOCKET, SO_ERROR, &err, &len);
                                if (err != 0) {
                                    kill_conn(c, false);
                                    break;
                                }
                                c.connecting = false;
                            }
                            break;
                        }
                        if (c.route->m == mode::blackhole) break;
                        const int fd = client_side ? c.client : c.upstream;
                        auto& in_dir = client_side ? c.up : c.down;
                        auto& out_dir = client_side ? c.down : c.up;
                        if ((rev & (POLLERR)) != 0) {
                            kill_conn(c, false);
                            break;
                        }
                        if ((rev & (POLLIN | POLLHUP)) != 0 && !in_dir.eof_read &&
                            !read_into(c, fd, in_dir)) {
                            kill_conn(c, false);
                            break;
                        }
                        if (!write_from(fd, out_dir)) kill_conn(c, false);
                        break;
                    }
                    default:
                        break;
                }
            }
            // Deferred work: delayed chunks that became due, FINs, finished connections.
            for (auto& c : conns) {
                if (c.dead || c.connecting || c.route->m == mode::blackhole) continue;
                if (!write_from(c.upstream, c.up) || !write_from(c.client, c.down)) {
                    kill_conn(c, false);
                    continue;
                }
                if (c.up.shut_written && c.down.shut_written) close_conn(c);
            }
            conns.remove_if([](const connection& c) { return c.dead; });
            for (auto& cc : controls) {
                if (cc.dead) ::close(cc.fd);
            }
            controls.remove_if([](const control_client& cc) { return cc.dead; });
        }
        drain_pending();  // nobody waits forever on a command sent while stopping
    }

    void close_all() {
        for (auto& c : conns) kill_conn(c, false);
        conns.clear();
        for (auto& cc : controls) ::close(cc.fd);
        controls.clear();
    }
};

fault_proxy::fault_proxy(std::vector<proxy_route> routes, int control_port)
    : _impl(std::make_unique<impl>()) {
    if (routes.empty()) throw std::invalid_argument("fault_proxy: at least one route is needed");
    if (::pipe2(_impl->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        throw std::runtime_error(errno_text("pipe2"));
    }
    try {
        for (auto& spec : routes) {
            if (!valid_name(spec.name)) {
                throw std::invalid_argument("fault_proxy: route name '" + spec.name +
                                            "' must be [A-Za-z0-9_-]+");
            }
            if (_impl->find(spec.name) != nullptr || spec.name == "all") {
                throw std::invalid_argument("fault_proxy: route name '" + spec.name +
                                            "' is reserved or used twice");
            }
            auto r = std::make_unique<route_state>();
            r->spec = spec;
            r->listener = listen_on(spec.listen_port);
            r->spec.listen_port = local_port(r->listener);
            _impl->routes.push_back(std::move(r));
        }
        if (control_port >= 0) {
            _impl->control_listener = listen_on(static_cast<std::uint16_t>(control_port));
            _impl->control_port_value = local_port(_impl->control_listener);
        }
    } catch (...) {
        for (auto& r : _impl->routes) ::close(r->listener);
        if (_impl->control_listener >= 0) ::close(_impl->control_listener);
        ::close(_impl->wake[0]);
        ::close(_impl->wake[1]);
        throw;
    }
}

fault_proxy::~fault_proxy() {
    stop();
    if (_impl->thread.joinable()) _impl->thread.join();
    _impl->close_all();
    for (auto& r : _impl->routes) ::close(r->listener);
    if (_impl->control_listener >= 0) ::close(_impl->control_listener);
    ::close(_impl->wake[0]);
    ::close(_impl->wake[1]);
}

void fault_proxy::start() {
    _impl->running = true;
    _impl->thread = std::thread([this] { _impl->loop(); });
}

void fault_proxy::run() {
    _impl->running = true;
    _impl->loop();
}

void fault_proxy::stop() {
    _impl->stopping = true;
    const char b = 's';
    (void)!::write(_impl->wake[1], &b, 1);
}

std::uint16_t fault_proxy::port(std::string_view route) const {
    for (const auto& r : _impl->routes) {
        if (r->spec.name == route) return r->spec.listen_port;
    }
    throw std::out_of_range("fault_proxy: no route '" + std::string(route) + "'");
}

int fault_proxy::control_port() const { return _impl->control_port_value; }

std::string fault_proxy::command(std::string_view line) {
    if (!_impl->running.load() || _impl->stopping.load()) return _impl->execute(line);
    std::future<std::string> reply;
    {
        std::lock_guard lock(_impl->mutex);
        _impl->pending.emplace_back(std::string(line), std::promise<std::string>{});
        reply = _impl->pending.back().second.get_future();
    }
    const char b = 'c';
    (void)!::write(_impl->wake[1], &b, 1);
    return reply.get();
}

}  // namespace ferry::test
