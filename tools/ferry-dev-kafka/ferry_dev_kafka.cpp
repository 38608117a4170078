// ferry-dev-kafka: runs librdkafka's mock Kafka cluster as a stand-alone process.
//
// Tests and the local harness (tests/support/servers) need a Kafka that starts in milliseconds
// and whose brokers can be taken down or made to return errors on demand, from another process.
// librdkafka's mock cluster speaks the real protocol; this tool owns one and exposes its fault
// injection API over a tiny line-based TCP control port.
//
// stdout: exactly `bootstrap.servers=...`, then `control=127.0.0.1:PORT` when a control port was
// requested. Everything else (logs) goes to stderr. Runs until SIGTERM or SIGINT, then exits 0.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

// rdkafka_mock.h must follow rdkafka.h; keep clang-format from regrouping them.
// clang-format off
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
// clang-format on

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

void log_line(const std::string& line) { std::cerr << "ferry-dev-kafka: " << line << std::endl; }

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

template <typename T>
std::optional<T> parse_number(std::string_view s) {
    T value{};
    const auto* end = s.data() + s.size();
    auto [ptr, ec] = std::from_chars(s.data(), end, value);
    if (ec != std::errc{} || ptr != end) {
        return std::nullopt;
    }
    return value;
}

// Kafka protocol API keys by name, for the `errors` command. Numbers are accepted too.
std::optional<int16_t> parse_api_key(std::string_view s) {
    if (auto n = parse_number<int16_t>(s)) {
        return n;
    }
    static constexpr std::pair<std::string_view, int16_t> k_keys[] = {
        {"produce", 0},          {"fetch", 1},
        {"listoffsets", 2},      {"metadata", 3},
        {"offsetcommit", 8},     {"offsetfetch", 9},
        {"findcoordinator", 10}, {"joingroup", 11},
        {"heartbeat", 12},       {"leavegroup", 13},
        {"syncgroup", 14},       {"apiversions", 18},
        {"initproducerid", 22},  {"addpartitionstotxn", 24},
        {"addoffsetstotxn", 25}, {"endtxn", 26},
        {"txnoffsetcommit", 28},
    };
    const std::string name = lower(s);
    for (const auto& [key_name, key] : k_keys) {
        if (key_name == name) {
            return key;
        }
    }
    return std::nullopt;
}

// Error codes by number or by librdkafka name, with or without the RD_KAFKA_RESP_ERR_ prefix
// (e.g. NOT_LEADER_FOR_PARTITION, _TRANSPORT, 6).
std::optional<rd_kafka_resp_err_t> parse_error_code(std::string_view s) {
    if (auto n = parse_number<int>(s)) {
        return static_cast<rd_kafka_resp_err_t>(*n);
    }
    std::string name = lower(s);
    constexpr std::string_view k_prefix = "rd_kafka_resp_err_";
    if (name.starts_with(k_prefix)) {
        name.erase(0, k_prefix.size());
    }
    const rd_kafka_err_desc* descs = nullptr;
    size_t count = 0;
    rd_kafka_get_err_descs(&descs, &count);
    for (size_t i = 0; i < count; ++i) {
        if (descs[i].name != nullptr && lower(descs[i].name) == name) {
            return descs[i].code;
        }
    }
    return std::nullopt;
}

// Owns the mock cluster and the rd_kafka_t it lives on. Created and destroyed by main(); its
// methods are called from the control thread. The mock API itself is thread-safe (it serialises
// commands through the cluster's op queue or its lock), so no extra locking is needed here.
class mock_cluster {
public:
    mock_cluster(int brokers, int default_partitions)
        : _brokers(brokers), _default_partitions(default_partitions) {
        char errstr[512];
        rd_kafka_conf_t* conf = rd_kafka_conf_new();
        // The handle exists only to host the cluster; it never produces.
        rd_kafka_conf_set(conf, "client.id", "ferry-dev-kafka", errstr, sizeof(errstr));
        // Hide the notice that this handle has no bootstrap.servers (it never connects);
        // the mock's warnings and errors still reach stderr.
        rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr));
        // The mock brokers' accepted sockets take this handle's socket options. Real Kafka
        // brokers set TCP_NODELAY; without it the mock's small responses wait out the
        // client's 40 ms delayed ACK (Nagle), which distorts every latency measurement.
        rd_kafka_conf_set(conf, "socket.nagle.disable", "true", errstr, sizeof(errstr));
        _rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (_rk == nullptr) {
            rd_kafka_conf_destroy(conf);
            throw std::runtime_error(std::string("rd_kafka_new failed: ") + errstr);
        }
        _cluster = rd_kafka_mock_cluster_new(_rk, brokers);
        if (_cluster == nullptr) {
            rd_kafka_destroy(_rk);
            throw std::runtime_error("rd_kafka_mock_cluster_new failed");
        }
    }
    ~mock_cluster() {
        rd_kafka_mock_cluster_destroy(_cluster);
        rd_kafka_destroy(_rk);
    }
    mock_cluster(const mock_cluster&) = delete;
    mock_cluster& operator=(const mock_cluster&) = delete;

    [[nodiscard]] std::string bootstraps() const {
        return rd_kafka_mock_cluster_bootstraps(_cluster);
    }
    [[nodiscard]] int brokers() const { return _brokers; }
    [[nodiscard]] int default_partitions() const { return _default_partitions; }
    [[nodiscard]] int default_replication() const { return std::min(3, _brokers); }

    rd_kafka_resp_err_t create_topic(const std::string& name, int partitions, int replication) {
        return rd_kafka_mock_topic_create(_cluster, name.c_str(), partitions, replication);
    }
    rd_kafka_resp_err_t set_down(int32_t id) { return rd_kafka_mock_broker_set_down(_cluster, id); }
    rd_kafka_resp_err_t set_up(int32_t id) { return rd_kafka_mock_broker_set_up(_cluster, id); }
    rd_kafka_resp_err_t set_rtt(int32_t id, int ms) {
        return rd_kafka_mock_broker_set_rtt(_cluster, id, ms);
    }
    void push_errors(int16_t api_key, rd_kafka_resp_err_t err, size_t count) {
        const std::vector<rd_kafka_resp_err_t> errors(count, err);
        rd_kafka_mock_push_request_errors_array(_cluster, api_key, errors.size(), errors.data());
    }
    void clear_errors(int16_t api_key) { rd_kafka_mock_clear_request_errors(_cluster, api_key); }

private:
    int _brokers;
    int _default_partitions;
    rd_kafka_t* _rk = nullptr;
    rd_kafka_mock_cluster_t* _cluster = nullptr;
};

std::string reply_for(rd_kafka_resp_err_t err) {
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        return "ok";
    }
    return std::string("error: ") + rd_kafka_err2name(err) + ": " + rd_kafka_err2str(err);
}

// Runs one control command and returns its one-line reply. Broker ids are 1..N as in the mock;
// `all` applies a broker command to every broker.
std::string execute(mock_cluster& cluster, const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> words;
    for (std::string w; in >> w;) {
        words.push_back(w);
    }
    if (words.empty()) {
        return "error: empty command";
    }
    const std::string cmd = lower(words[0]);
    auto broker_ids = [&](const std::string& arg) -> std::optional<std::vector<int32_t>> {
        std::vector<int32_t> ids;
        if (lower(arg) == "all") {
            for (int32_t id = 1; id <= cluster.brokers(); ++id) {
                ids.push_back(id);
            }
            return ids;
        }
        auto id = parse_number<int32_t>(arg);
        if (!id || *id < 1 || *id > cluster.brokers()) {
            return std::nullopt;
        }
        ids.push_back(*id);
        return ids;
    };
    auto for_brokers = [&](const std::string& arg, auto&& fn) -> std::string {
        auto ids = broker_ids(arg);
        if (!ids) {
            return "error: broker id must be 1.." + std::to_string(cluster.brokers()) +
                   " or all, got '" + arg + "'";
        }
        for (int32_t id : *ids) {
            if (auto err = fn(id); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                return reply_for(err);
            }
        }
        return "ok";
    };

    if (cmd == "ping" && words.size() == 1) {
        return "ok";
    }
    if (cmd == "down" && words.size() == 2) {
        return for_brokers(words[1], [&](int32_t id) { return cluster.set_down(id); });
    }
    if (cmd == "up" && words.size() == 2) {
        return for_brokers(words[1], [&](int32_t id) { return cluster.set_up(id); });
    }
    if (cmd == "rtt" && words.size() == 3) {
        auto ms = parse_number<int>(words[2]);
        if (!ms || *ms < 0) {
            return "error: rtt must be a non-negative number of milliseconds";
        }
        return for_brokers(words[1], [&](int32_t id) { return cluster.set_rtt(id, *ms); });
    }
    if (cmd == "errors" && words.size() == 4) {
        auto api_key = parse_api_key(words[1]);
        auto err = parse_error_code(words[2]);
        auto count = parse_number<size_t>(words[3]);
        if (!api_key) {
            return "error: unknown API key '" + words[1] + "'";
        }
        if (!err) {
            return "error: unknown error code '" + words[2] + "'";
        }
        if (!count || *count == 0 || *count > 100000) {
            return "error: count must be 1..100000";
        }
        cluster.push_errors(*api_key, *err, *count);
        return "ok";
    }
    if (cmd == "clear-errors" && words.size() == 2) {
        auto api_key = parse_api_key(words[1]);
        if (!api_key) {
            return "error: unknown API key '" + words[1] + "'";
        }
        cluster.clear_errors(*api_key);
        return "ok";
    }
    if (cmd == "create-topic" && words.size() >= 2 && words.size() <= 4) {
        int partitions = cluster.default_partitions();
        int replication = cluster.default_replication();
        if (words.size() >= 3) {
            auto p = parse_number<int>(words[2]);
            if (!p || *p < 1) {
                return "error: partitions must be a positive number";
            }
            partitions = *p;
        }
        if (words.size() == 4) {
            auto r = parse_number<int>(words[3]);
            if (!r || *r < 1 || *r > cluster.brokers()) {
                return "error: replication must be 1.." + std::to_string(cluster.brokers());
            }
            replication = *r;
        }
        return reply_for(cluster.create_topic(words[1], partitions, replication));
    }
    return "error: unknown command or wrong arguments: '" + line +
           "' (commands: ping, down ID|all, up ID|all, rtt ID|all MS, errors API_KEY ERRCODE "
           "COUNT, clear-errors API_KEY, create-topic NAME [PARTITIONS [REPLICATION]])";
}

// The control port: a single thread multiplexing any number of clients with poll(). Each
// newline-terminated command gets exactly one reply line. Owned by main(); stop() wakes the
// thread through a pipe and joins it.
class control_server {
public:
    control_server(mock_cluster& cluster, uint16_t port) : _cluster(cluster) {
        _listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (_listen_fd < 0) {
            throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
        }
        int one = 1;
        ::setsockopt(_listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(port);
        if (::bind(_listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
            ::listen(_listen_fd, 16) != 0) {
            const std::string why = std::strerror(errno);
            ::close(_listen_fd);
            throw std::runtime_error("cannot listen on 127.0.0.1:" + std::to_string(port) + ": " +
                                     why);
        }
        socklen_t len = sizeof(addr);
        ::getsockname(_listen_fd, reinterpret_cast<sockaddr*>(&addr), &len);
        _port = ntohs(addr.sin_port);
        if (::pipe2(_wake, O_CLOEXEC) != 0) {
            ::close(_listen_fd);
            throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
        }
        _thread = std::thread([this] { run(); });
    }
    ~control_server() {
        stop();
        ::close(_listen_fd);
        ::close(_wake[0]);
        ::close(_wake[1]);
    }
    control_server(const control_server&) = delete;
    control_server& operator=(const control_server&) = delete;

    [[nodiscard]] uint16_t port() const { return _port; }

    void stop() {
        if (_thread.joinable()) {
            const char c = 'x';
            (void)!::write(_wake[1], &c, 1);
            _thread.join();
        }
    }

private:
    struct client {
        int fd;
        std::string buffer;
    };

    void run() {
        std::vector<client> clients;
        for (;;) {
            std::vector<pollfd> fds;
            fds.push_back({_wake[0], POLLIN, 0});
            fds.push_back({_listen_fd, POLLIN, 0});
            for (const auto& c : clients) {
                fds.push_back({c.fd, POLLIN, 0});
            }
            if (::poll(fds.data(), fds.size(), -1) < 0) {
                if (errno == EINTR) {
                    continue;
                }
                log_line(std::string("control poll failed: ") + std::strerror(errno));
                break;
            }
            if (fds[0].revents != 0) {
                break;
            }
            // Serve the clients that were polled before accepting new ones: fds[2..] matches
            // clients[0..] only as they were when poll() was called. Walk backwards so erasing
            // a closed client keeps the remaining indices aligned.
            for (size_t i = fds.size() - 2; i-- > 0;) {
                if (fds[i + 2].revents == 0) {
                    continue;
                }
                if (!serve(clients[i])) {
                    ::close(clients[i].fd);
                    clients.erase(clients.begin() + static_cast<std::ptrdiff_t>(i));
                }
            }
            if ((fds[1].revents & POLLIN) != 0) {
                int fd = ::accept4(_listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
                if (fd >= 0) {
                    clients.push_back({fd, {}});
                }
            }
        }
        for (const auto& c : clients) {
            ::close(c.fd);
        }
    }

    // Reads what is available and answers each complete line. False when the client is gone.
    bool serve(client& c) {
        char buf[4096];
        const ssize_t n = ::read(c.fd, buf, sizeof(buf));
        if (n <= 0) {
            return n < 0 && (errno == EINTR || errno == EAGAIN);
        }
        c.buffer.append(buf, static_cast<size_t>(n));
        if (c.buffer.size() > size_t{64} * 1024) {
            return false;  // Not a line protocol client; drop it rather than grow forever.
        }
        for (size_t pos; (pos = c.buffer.find('\n')) != std::string::npos;) {
            std::string line = c.buffer.substr(0, pos);
            c.buffer.erase(0, pos + 1);
            if (!line.empty() && line.back() == '\r') {
                line.pop_back();
            }
            std::string reply;
            try {
                reply = execute(_cluster, line);
            } catch (const std::exception& e) {
                reply = std::string("error: ") + e.what();
            }
            std::string note = "control: '";
            note.append(line).append("' -> ").append(reply);
            log_line(note);
            reply += '\n';
            if (!write_all(c.fd, reply)) {
                return false;
            }
        }
        return true;
    }

    static bool write_all(int fd, std::string_view data) {
        while (!data.empty()) {
            const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return false;
            }
            data.remove_prefix(static_cast<size_t>(n));
        }
        return true;
    }

    mock_cluster& _cluster;
    int _listen_fd = -1;
    int _wake[2] = {-1, -1};
    uint16_t _port = 0;
    std::thread _thread;
};

struct topic_spec {
    std::string name;
    int partitions;
};

std::optional<topic_spec> parse_topic(const std::string& arg, int default_partitions) {
    const auto colon = arg.rfind(':');
    if (colon == std::string::npos) {
        return topic_spec{arg, default_partitions};
    }
    auto p = parse_number<int>(std::string_view(arg).substr(colon + 1));
    if (colon == 0 || !p || *p < 1) {
        return std::nullopt;
    }
    return topic_spec{arg.substr(0, colon), *p};
}

void write_file_atomically(const std::string& path, const std::string& content) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << content << '\n';
        if (!out.flush()) {
            throw std::runtime_error("cannot write " + tmp);
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " +
                                 std::strerror(errno));
    }
}

int run(int argc, char** argv) {
    CLI::App app{"librdkafka mock Kafka cluster for Ferry's tests"};
    int brokers = 3;
    // librdkafka's mock auto-creates unknown topics with 4 partitions and offers no public knob
    // to change that, so --partitions only applies to --topic and create-topic.
    int partitions = 4;
    std::vector<std::string> topics;
    std::string bootstrap_file;
    int control_port = -1;
    app.add_option("--brokers", brokers, "Number of mock brokers (ids 1..N)")
        ->check(CLI::Range(1, 32));
    app.add_option("--partitions", partitions,
                   "Partitions for --topic/create-topic without an explicit count "
                   "(auto-created topics always get the mock's default of 4)")
        ->check(CLI::Range(1, 10000));
    app.add_option("--topic", topics, "Pre-create a topic: NAME[:PARTITIONS] (repeatable)");
    app.add_option("--bootstrap-file", bootstrap_file,
                   "Also write the bootstrap servers (host:port,...) to this file");
    app.add_option("--control-port", control_port,
                   "Listen for control commands on 127.0.0.1:PORT (0 = any free port)")
        ->check(CLI::Range(0, 65535));
    CLI11_PARSE(app, argc, argv);

    // Block the stop signals before librdkafka starts its threads, so that they inherit the mask
    // and only sigwait() below ever sees SIGTERM/SIGINT.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    try {
        mock_cluster cluster(brokers, partitions);
        for (const auto& arg : topics) {
            auto spec = parse_topic(arg, partitions);
            if (!spec) {
                log_line("invalid --topic '" + arg + "': expected NAME or NAME:PARTITIONS");
                return 2;
            }
            if (auto err = cluster.create_topic(spec->name, spec->partitions,
                                                cluster.default_replication());
                err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                log_line("cannot create topic " + spec->name + ": " + rd_kafka_err2str(err));
                return 1;
            }
        }

        std::optional<control_server> control;
        if (control_port >= 0) {
            control.emplace(cluster, static_cast<uint16_t>(control_port));
        }

        const std::string bootstraps = cluster.bootstraps();
        if (!bootstrap_file.empty()) {
            write_file_atomically(bootstrap_file, bootstraps);
        }
        std::printf("bootstrap.servers=%s\n", bootstraps.c_str());
        if (control) {
            std::printf("control=127.0.0.1:%u\n", static_cast<unsigned>(control->port()));
        }
        std::fflush(stdout);
        log_line("mock cluster with " + std::to_string(brokers) + " broker(s) at " + bootstraps +
                 (control ? ", control port " + std::to_string(control->port()) : std::string()));

        int sig = 0;
        while (sigwait(&stop_signals, &sig) != 0) {
        }
        log_line(std::string("stopping on ") + strsignal(sig));
        if (control) {
            control->stop();
        }
    } catch (const std::exception& e) {
        log_line(std::string("fatal: ") + e.what());
        return 1;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        log_line(std::string("fatal: ") + e.what());
        return 1;
    }
}
