#pragma once
// The ferry-relay daemon as a child process of a fault test (its own config and log file), and
// the checks of what arrived in Kafka that the fault tests share (relay_faulttest,
// relay_wal_faulttest). Needs FERRY_RELAY_PATH.

#include <httplib.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "ferry/test/child_process.hpp"
#include "ferry/test/dev_kafka.hpp"
#include "relay_fixture.hpp"

namespace ferry::relay_test {

using ferry::test::child_options;
using ferry::test::child_process;
using ferry::test::kafka_reader;
using ferry::test::kafka_record;

inline std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct relay_config {
    std::string brokers = ferry::test::kafka_brokers();
    std::string dsn = ferry::test::pg_dsn();
    std::string instance_id;
    std::map<std::string, std::string> env;
    std::string lease_ttl = "2s";
    int lease_groups = 1;
    std::string delivery_timeout = "10s";
    std::map<std::string, std::string> properties;  // kafka.properties
    std::size_t batch_size = 50;
    std::string source = "polling";  // relay.source
    std::string wal_slot;            // relay.wal_slot (WAL mode)
    std::string wal_publication;     // relay.wal_publication (WAL mode)
    std::size_t mark_lanes = 1;      // relay.mark_lanes
};

// One ferry-relay child process with its own config file and log file.
class relay_process {
public:
    relay_process(const relay_env& env, const relay_config& c) {
        const auto name = ferry::test::unique_name("relay_proc");
        _config_path = "/tmp/" + name + ".yaml";
        _log_path = "/tmp/" + name + ".log";
        std::ofstream out(_config_path);
        out << "postgres:\n  dsn: \"" << c.dsn << "\"\n  schema: " << env.schema.name()
            << "\nkafka:\n  brokers: \"" << c.brokers << "\"\n  compression: none\n";
        if (!c.properties.empty()) out << "  properties:\n";
        for (const auto& [prop, value] : c.properties) {
            out << "    " << prop << ": \"" << value << "\"\n";
        }
        out << "http:\n  listen: 127.0.0.1:0\nrelay:\n"
            << (c.instance_id.empty() ? "" : "  instance_id: " + c.instance_id + "\n")
            << "  lease_ttl: " << c.lease_ttl << "\n  lease_groups: " << c.lease_groups
            << "\n  batch_size: " << c.batch_size << "\n  source: " << c.source
            << "\n  poll_max: 20ms\n  delivery_timeout: " << c.delivery_timeout
            << "\n  shutdown_timeout: 5s\n  mark_lanes: " << c.mark_lanes << "\n";
        if (!c.wal_slot.empty()) out << "  wal_slot: " << c.wal_slot << "\n";
        if (!c.wal_publication.empty()) out << "  wal_publication: " << c.wal_publication << "\n";
        out.close();
        child_options opts;
        opts.env = c.env;
        opts.stderr_path = _log_path;
        _proc = std::make_unique<child_process>(
            FERRY_RELAY_PATH, std::vector<std::string>{"--config", _config_path}, opts);
        const auto listen = _proc->wait_for_prefix("http.listen=", 20s);
        if (!listen) throw std::runtime_error("ferry-relay did not start: " + log());
        _port = std::stoi(listen->substr(listen->rfind(':') + 1));
    }
    ~relay_process() {
        _proc.reset();
        std::remove(_config_path.c_str());
        if (!::testing::Test::HasFailure()) std::remove(_log_path.c_str());
    }

    child_process& proc() { return *_proc; }
    [[nodiscard]] std::string log() const { return read_file(_log_path); }
    [[nodiscard]] const std::string& log_path() const { return _log_path; }
    [[nodiscard]] std::string metrics() const {
        httplib::Client client("127.0.0.1", _port);
        auto res = client.Get("/metrics");
        return res ? res->body : std::string{};
    }

private:
    std::string _config_path;
    std::string _log_path;
    std::unique_ptr<child_process> _proc;
    int _port = 0;
};

// Per key, the first delivery of each message must follow key_seq 1, 2, 3, ...; a repeated
// message (a duplicate) is skipped, as a consumer's dedup would.
inline std::size_t order_violations(const std::vector<kafka_record>& records) {
    std::map<std::string, int> last;
    std::set<std::string> seen;
    std::size_t violations = 0;
    for (const auto& r : records) {
        const auto id = r.header("ferry-message-id").value_or("");
        if (!seen.insert(id).second) continue;
        const int s = std::stoi(r.header("key_seq").value_or("0"));
        auto& l = last[r.key.value_or("")];
        if (s != l + 1) ++violations;
        l = s;
    }
    return violations;
}

// Reads everything from Kafka and checks the history. Returns the duplicates.
inline std::size_t expect_no_loss(kafka_reader& reader, const std::set<std::string>& committed,
                                  std::size_t max_duplicates) {
    auto records = reader.read(committed.size(), 60s);
    records = reader.read_all(1s, 30s);
    const auto check = check_delivery(records, committed);
    EXPECT_EQ(check.lost, 0u) << describe(check);
    EXPECT_EQ(check.phantoms, 0u) << describe(check);
    EXPECT_LE(check.duplicates, max_duplicates) << describe(check);
    EXPECT_EQ(order_violations(records), 0u);
    std::cerr << "[history] committed=" << committed.size() << " " << describe(check) << "\n";
    return check.duplicates;
}

}  // namespace ferry::relay_test
