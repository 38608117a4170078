// fault_proxy (unit): an in-process echo server behind the proxy, every mode checked by what a
// client actually receives (bytes, timing, resets), and the control protocol over TCP.
#include "ferry/test/fault_proxy.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ferry::test::fault_proxy;
using ferry::test::proxy_route;

namespace {

int connect_to(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// Echo server: one thread per connection, echoes until EOF, then closes.
class echo_server {
public:
    echo_server() {
        _fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::bind(_fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        EXPECT_EQ(::listen(_fd, 16), 0);
        socklen_t len = sizeof a;
        ::getsockname(_fd, reinterpret_cast<sockaddr*>(&a), &len);
        _port = ntohs(a.sin_port);
        _thread = std::thread([this] {
            for (;;) {
                const int c = ::accept(_fd, nullptr, nullptr);
                if (c < 0) return;
                ++_accepted;
                _workers.emplace_back([c] {
                    char buf[65536];
                    for (;;) {
                        const auto n = ::recv(c, buf, sizeof buf, 0);
                        if (n <= 0) break;
                        std::size_t off = 0;
                        while (off < static_cast<std::size_t>(n)) {
                            const auto w = ::send(c, buf + off, n - off, MSG_NOSIGNAL);
                            if (w <= 0) break;
                            off += static_cast<std::size_t>(w);
                        }
                    }
                    ::close(c);
                });
            }
        });
    }
    ~echo_server() {
        ::shutdown(_fd, SHUT_RDWR);
        ::close(_fd);
        _thread.join();
        for (auto& w : _workers) w.join();
    }
    [[nodiscard]] std::uint16_t port() const { return _port; }
    [[nodiscard]] int accepted() const { return _accepted.load(); }

private:
    int _fd = -1;
    std::uint16_t _port = 0;
    std::atomic<int> _accepted{0};
    std::thread _thread;
    std::vector<std::thread> _workers;
};

void send_all(int fd, const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
        const auto n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        ASSERT_GT(n, 0) << std::strerror(errno);
        off += static_cast<std::size_t>(n);
    }
}

// Reads exactly n bytes within timeout; nullopt on timeout, "" + errno text on error/EOF.
struct read_result {
    std::string data;
    bool timed_out = false;
    bool eof = false;
    int error = 0;
};
read_result read_n(int fd, std::size_t n, std::chrono::milliseconds timeout) {
    read_result r;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[65536];
    while (r.data.size() < n) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - std::chrono::steady_clock::now())
                              .count();
        if (left <= 0) {
            r.timed_out = true;
            return r;
        }
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left)) == 0) continue;
        const auto got = ::recv(fd, buf, std::min(sizeof buf, n - r.data.size()), 0);
        if (got == 0) {
            r.eof = true;
            return r;
        }
        if (got < 0) {
            r.error = errno;
            return r;
        }
        r.data.append(buf, static_cast<std::size_t>(got));
    }
    return r;
}

struct fixture {
    echo_server echo;
    fault_proxy proxy{{proxy_route{"echo", "127.0.0.1", echo.port(), 0}}, 0};
    fixture() { proxy.start(); }
    int client() { return connect_to(proxy.port("echo")); }
};

}  // namespace

TEST(FaultProxyTest, ParseRouteAcceptsAndRejects) {
    const auto r = ferry::test::parse_route("pg=127.0.0.1:5432@6000");
    EXPECT_EQ(r.name, "pg");
    EXPECT_EQ(r.upstream_host, "127.0.0.1");
    EXPECT_EQ(r.upstream_port, 5432);
    EXPECT_EQ(r.listen_port, 6000);
    EXPECT_EQ(ferry::test::parse_route("redis=localhost:6379").listen_port, 0);
    EXPECT_THROW((void)ferry::test::parse_route("pg"), std::invalid_argument);
    EXPECT_THROW((void)ferry::test::parse_route("p g=127.0.0.1:1"), std::invalid_argument);
    EXPECT_THROW((void)ferry::test::parse_route("pg=127.0.0.1"), std::invalid_argument);
    EXPECT_THROW((void)ferry::test::parse_route("pg=127.0.0.1:0"), std::invalid_argument);
    EXPECT_THROW((void)ferry::test::parse_route("pg=127.0.0.1:99999"), std::invalid_argument);
    EXPECT_THROW(fault_proxy({}, -1), std::invalid_argument);
}

TEST(FaultProxyTest, ForwardsBothWaysAndLargeTransfersIntact) {
    fixture f;
    const int c = f.client();
    ASSERT_GE(c, 0);
    std::string big(3 * 1024 * 1024 + 17, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) % 251);
    std::thread writer([&] { send_all(c, big); });
    const auto r = read_n(c, big.size(), 30s);
    writer.join();
    ASSERT_FALSE(r.timed_out);
    EXPECT_TRUE(r.data == big) << "bytes were changed or reordered";
    // A half close is forwarded: the echo server sees EOF, closes, and the client sees EOF.
    ::shutdown(c, SHUT_WR);
    const auto end = read_n(c, 1, 10s);
    EXPECT_TRUE(end.eof);
    ::close(c);
    EXPECT_NE(f.proxy.command("stats echo").find("accepted=1"), std::string::npos);
}

TEST(FaultProxyTest, LatencyDelaysEveryChunk) {
    fixture f;
    const int c = f.client();
    ASSERT_EQ(f.proxy.command("latency echo 300"), "ok");
    const auto t0 = std::chrono::steady_clock::now();
    send_all(c, "ping");
    const auto r = read_n(c, 4, 10s);
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(r.data, "ping");
    // One delay each way.
    EXPECT_GE(took, 600ms);
    ASSERT_EQ(f.proxy.command("heal echo"), "ok");
    const auto t1 = std::chrono::steady_clock::now();
    send_all(c, "pong");
    EXPECT_EQ(read_n(c, 4, 10s).data, "pong");
    EXPECT_LT(std::chrono::steady_clock::now() - t1, 300ms);
    ::close(c);
}

TEST(FaultProxyTest, BlackholeHoldsBytesUntilHealed) {
    fixture f;
    const int c = f.client();
    send_all(c, "a");
    ASSERT_EQ(read_n(c, 1, 10s).data, "a");
    ASSERT_EQ(f.proxy.command("blackhole echo"), "ok");
    send_all(c, "held");
    const auto during = read_n(c, 4, 700ms);
    EXPECT_TRUE(during.timed_out) << "data passed a blackhole";
    EXPECT_TRUE(during.data.empty());
    // A new connection during the partition gets nowhere either.
    const int c2 = f.client();
    send_all(c2, "x");
    EXPECT_TRUE(read_n(c2, 1, 500ms).timed_out);
    ASSERT_EQ(f.proxy.command("heal all"), "ok");
    EXPECT_EQ(read_n(c, 4, 10s).data, "held");
    EXPECT_EQ(read_n(c2, 1, 10s).data, "x");
    ::close(c);
    ::close(c2);
}

TEST(FaultProxyTest, ResetBreaksOpenConnectionsAndRefuseBreaksNewOnes) {
    fixture f;
    const int c = f.client();
    send_all(c, "a");
    ASSERT_EQ(read_n(c, 1, 10s).data, "a");
    ASSERT_EQ(f.proxy.command("reset echo"), "ok");
    const auto r = read_n(c, 1, 5s);
    EXPECT_TRUE(r.error == ECONNRESET || r.eof) << "error=" << r.error;
    EXPECT_NE(f.proxy.command("stats echo").find("resets=1"), std::string::npos);
    ::close(c);
    // reset is one-shot: the next connection works.
    const int c2 = f.client();
    send_all(c2, "b");
    EXPECT_EQ(read_n(c2, 1, 10s).data, "b");
    ::close(c2);

    ASSERT_EQ(f.proxy.command("refuse echo"), "ok");
    const int before = f.echo.accepted();
    const int c3 = f.client();  // the TCP handshake completes with the proxy, then RST
    if (c3 >= 0) {
        const auto r3 = read_n(c3, 1, 5s);
        EXPECT_TRUE(r3.error == ECONNRESET || r3.eof);
        ::close(c3);
    }
    EXPECT_EQ(f.echo.accepted(), before) << "a refused connection reached the upstream";
    ASSERT_EQ(f.proxy.command("heal echo"), "ok");
    const int c4 = f.client();
    send_all(c4, "c");
    EXPECT_EQ(read_n(c4, 1, 10s).data, "c");
    ::close(c4);
}

TEST(FaultProxyTest, ControlPortSpeaksTheTextProtocol) {
    fixture f;
    const int c = connect_to(static_cast<std::uint16_t>(f.proxy.control_port()));
    ASSERT_GE(c, 0);
    send_all(c, "ping\nlatency echo nope\nfrobnicate echo\nblackhole nowhere\nstats echo\n");
    std::string got;
    while (std::count(got.begin(), got.end(), '\n') < 5) {
        const auto r = read_n(c, 1, 5s);
        ASSERT_FALSE(r.timed_out || r.eof) << got;
        got += r.data;
    }
    EXPECT_EQ(got.substr(0, got.find('\n')), "ok");
    EXPECT_NE(got.find("error: latency: MS must be"), std::string::npos) << got;
    EXPECT_NE(got.find("error: unknown command 'frobnicate'"), std::string::npos) << got;
    EXPECT_NE(got.find("error: unknown route 'nowhere'"), std::string::npos) << got;
    EXPECT_NE(got.find("ok accepted=0 open=0"), std::string::npos) << got;
    ::close(c);
}
