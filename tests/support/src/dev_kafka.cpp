#include "ferry/test/dev_kafka.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#ifndef FERRY_DEV_KAFKA_PATH
#error "FERRY_DEV_KAFKA_PATH must be defined by the build (tests/support/CMakeLists.txt)"
#endif

namespace ferry::test {

std::string dev_kafka_path() {
    const char* env = std::getenv("FERRY_DEV_KAFKA_BIN");
    return env != nullptr && *env != '\0' ? env : FERRY_DEV_KAFKA_PATH;
}

dev_kafka::dev_kafka(const dev_kafka_options& options) : _brokers(options.brokers) {
    std::vector<std::string> args{"--brokers", std::to_string(options.brokers), "--control-port",
                                  "0"};
    for (const auto& t : options.topics) {
        args.emplace_back("--topic");
        args.push_back(t);
    }
    _process = std::make_unique<child_process>(dev_kafka_path(), args);
    auto bootstrap = _process->wait_for_prefix("bootstrap.servers=", options.start_timeout);
    auto control = _process->wait_for_prefix("control=", options.start_timeout);
    if (!bootstrap || !control) {
        const auto status = _process->wait(std::chrono::milliseconds(0));
        throw std::runtime_error(
            "ferry-dev-kafka (" + dev_kafka_path() +
            ") did not print its bootstrap and control "
            "lines within the start timeout" +
            (status ? "; it " + status->describe() : std::string("; still running")) +
            " (its log is in this test's stderr)");
    }
    _bootstrap = *bootstrap;
    const auto colon = control->rfind(':');
    _control_port = std::stoi(control->substr(colon + 1));
}

dev_kafka::~dev_kafka() {
    if (_process) {
        _process->shutdown(std::chrono::seconds(10));
    }
}

std::string dev_kafka::command(std::string_view line) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw std::runtime_error(std::string("dev_kafka: socket: ") + std::strerror(errno));
    }
    // Mock commands run through the cluster's op queue and return quickly; a generous receive
    // timeout only guards against a wedged tool hanging the test forever.
    timeval tv{30, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(_control_port));
    std::string reply;
    std::string error;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        error = std::string("connect: ") + std::strerror(errno);
    } else {
        std::string request(line);
        request += '\n';
        std::string_view pending = request;
        while (error.empty() && !pending.empty()) {
            const ssize_t n = ::send(fd, pending.data(), pending.size(), MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                error = std::string("send: ") + std::strerror(errno);
                break;
            }
            pending.remove_prefix(static_cast<std::size_t>(n));
        }
        char c;
        while (error.empty()) {
            const ssize_t n = ::recv(fd, &c, 1, 0);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                error = n == 0 ? "connection closed before the reply"
                               : std::string("recv: ") + std::strerror(errno);
                break;
            }
            if (c == '\n') {
                break;
            }
            reply.push_back(c);
        }
    }
    ::close(fd);
    if (!error.empty()) {
        throw std::runtime_error("dev_kafka control '" + std::string(line) + "': " + error);
    }
    if (reply != "ok") {
        throw std::runtime_error("dev_kafka control '" + std::string(line) + "': " + reply);
    }
    return reply;
}

void dev_kafka::broker_down(int id) { command("down " + std::to_string(id)); }
void dev_kafka::broker_up(int id) { command("up " + std::to_string(id)); }
void dev_kafka::all_brokers_down() { command("down all"); }
void dev_kafka::all_brokers_up() { command("up all"); }

void dev_kafka::set_rtt(int id, std::chrono::milliseconds rtt) {
    command("rtt " + std::to_string(id) + " " + std::to_string(rtt.count()));
}

void dev_kafka::push_errors(int api_key, std::string_view error, int count) {
    command("errors " + std::to_string(api_key) + " " + std::string(error) + " " +
            std::to_string(count));
}

void dev_kafka::clear_errors(int api_key) { command("clear-errors " + std::to_string(api_key)); }

void dev_kafka::create_topic(std::string_view name, int partitions, int replication) {
    std::string line = "create-topic " + std::string(name) + " " + std::to_string(partitions);
    if (replication > 0) {
        line += " " + std::to_string(replication);
    }
    command(line);
}

}  // namespace ferry::test
