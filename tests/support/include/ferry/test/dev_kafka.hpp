#pragma once

// A private ferry-dev-kafka (librdkafka mock cluster) for one fault test, with its control port.
//
// Integration tests share the harness's Kafka (kafka_brokers()); a test that takes brokers down
// or injects request errors must not disturb them, so it starts its own cluster here.
// Lifecycle: the constructor spawns build/bin/ferry-dev-kafka (or $FERRY_DEV_KAFKA_BIN) and
// waits for its bootstrap and control lines; the destructor SIGTERMs it. Control methods open
// a connection per command and throw std::runtime_error on an `error:` reply. One thread at a
// time.

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/test/child_process.hpp"

namespace ferry::test {

struct dev_kafka_options {
    int brokers = 3;
    // Pre-created topics: "name" or "name:partitions".
    std::vector<std::string> topics{};
    std::chrono::milliseconds start_timeout = std::chrono::seconds(20);
};

class dev_kafka {
public:
    explicit dev_kafka(const dev_kafka_options& options = {});
    ~dev_kafka();
    dev_kafka(const dev_kafka&) = delete;
    dev_kafka& operator=(const dev_kafka&) = delete;

    // host:port,host:port,... for bootstrap.servers.
    [[nodiscard]] const std::string& bootstrap() const { return _bootstrap; }
    [[nodiscard]] int control_port() const { return _control_port; }
    [[nodiscard]] int brokers() const { return _brokers; }

    // Broker ids are 1..brokers().
    void broker_down(int id);
    void broker_up(int id);
    void all_brokers_down();
    void all_brokers_up();
    void set_rtt(int id, std::chrono::milliseconds rtt);
    // The next `count` requests with this API key (0 = Produce, 3 = Metadata, 22 =
    // InitProducerId, ...) fail with `error`: a librdkafka error name such as
    // "NOT_LEADER_FOR_PARTITION" or "_TRANSPORT" (disconnect), or a number.
    void push_errors(int api_key, std::string_view error, int count = 1);
    void clear_errors(int api_key);
    // replication 0 means min(3, brokers()).
    void create_topic(std::string_view name, int partitions, int replication = 0);

    // Sends one raw control line and returns the reply (throws on `error:` replies).
    std::string command(std::string_view line);

    [[nodiscard]] child_process& process() { return *_process; }

private:
    std::unique_ptr<child_process> _process;
    std::string _bootstrap;
    int _control_port = 0;
    int _brokers = 0;
};

// The ferry-dev-kafka executable: $FERRY_DEV_KAFKA_BIN, else the one built with this library.
[[nodiscard]] std::string dev_kafka_path();

}  // namespace ferry::test
