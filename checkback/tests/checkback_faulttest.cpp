// Check-back inside the real ferry-relay daemon: a relay whose clock runs two hours ahead
// (libfaketime) makes no premature decision, and a half message whose producer crashed after
// prepare is resolved by the callback resolver, committed, and published to Kafka.
#include <httplib.h>

#include <fstream>

#include "checkback_fixture.hpp"
#include "ferry/test/child_process.hpp"
#include "ferry/test/kafka_reader.hpp"
#include "ferry/test/unique_name.hpp"

using namespace ferry;
using namespace std::chrono_literals;

namespace {

constexpr const char* k_faketime_lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// ferry-relay with a callback resolver for group "payments", as a child process.
class relay_daemon {
public:
    relay_daemon(const std::string& schema, std::map<std::string, std::string> env = {}) {
        const auto name = test::unique_name("cb_relay");
        _config = "/tmp/" + name + ".yaml";
        _log = "/tmp/" + name + ".log";
        std::ofstream out(_config);
        out << "postgres:\n  dsn: \"" << test::pg_dsn() << "\"\n  schema: " << schema
            << "\nkafka:\n  brokers: \"" << test::kafka_brokers() << "\"\n"
            << "http:\n  listen: 127.0.0.1:0\nlog:\n  level: debug\n"
            << "relay:\n  lease_ttl: 2s\n  poll_max: 20ms\n  shutdown_timeout: 3s\n"
            << "checkback:\n  tick: 100ms\n  groups:\n    payments:\n      resolver: callback\n"
            << "      timeout: 2s\n";
        out.close();
        test::child_options o;
        o.env = std::move(env);
        o.stderr_path = _log;
        _proc = std::make_unique<test::child_process>(
            FERRY_RELAY_PATH, std::vector<std::string>{"--config", _config}, o);
        if (!_proc->wait_for_prefix("http.listen=", 20s))
            throw std::runtime_error("ferry-relay did not start: " + log());
    }
    ~relay_daemon() {
        _proc.reset();
        std::remove(_config.c_str());
        if (!::testing::Test::HasFailure()) std::remove(_log.c_str());
    }
    [[nodiscard]] std::string log() const { return read_file(_log); }

private:
    std::string _config, _log;
    std::unique_ptr<test::child_process> _proc;
};

}  // namespace

class CheckbackFaultTest : public CheckbackFixture {};

TEST_F(CheckbackFaultTest, RelayClockTwoHoursAheadMakesNoPrematureDecision) {
    ASSERT_EQ(access(k_faketime_lib, R_OK), 0)
        << "libfaketime is missing (Debian package faketime)";
    std::atomic<int> asked{0};
    outbox::checkback_responder responder(responder_opts("payments-1"),
                                          [&](const outbox::half_message_info&) {
                                              ++asked;
                                              return outbox::check_decision::rollback;
                                          });
    responder.start();
    outbox::half_options later;
    later.producer_group = "payments";
    later.check_first_after = 30s;  // due in 30 s by the database's clock
    const auto not_yet = prepare("tx-live", later);
    outbox::half_options now_due;
    now_due.producer_group = "payments";
    now_due.check_first_after = 0ms;
    const auto due = prepare("tx-due", now_due);  // the positive control: due at once

    relay_daemon relay(
        schema(),
        {{"LD_PRELOAD", k_faketime_lib}, {"FAKETIME", "+2h"}, {"FAKETIME_DONT_RESET", "1"}});
    // The control is decided, so the skewed relay's scheduler does run and does ask.
    ASSERT_TRUE(eventually([&] { return read(due).state == "rolled_back"; }, 15s)) << relay.log();
    // Its clock really is two hours ahead: log timestamps come from the system clock.
    const auto log = relay.log();
    const auto ts = log.substr(0, log.find('Z'));
    std::tm tm{};
    ASSERT_NE(strptime(ts.c_str(), "%Y-%m-%dT%H:%M:%S", &tm), nullptr) << log.substr(0, 200);
    const auto relay_now = timegm(&tm);
    EXPECT_GT(relay_now - std::time(nullptr), 3600) << "libfaketime did not skew the relay's clock";
    // Three more seconds of ticks: the live transaction's message is not checked early.
    std::this_thread::sleep_for(3s);
    const auto r = read(not_yet);
    EXPECT_EQ(r.state, "pending");
    EXPECT_EQ(r.check_count, 0);
    EXPECT_EQ(asked.load(), 1) << "only the due control was asked";
}

TEST_F(CheckbackFaultTest, ProducerCrashedAfterPrepareIsCommittedByCheckbackAndPublished) {
    const auto topic = test::unique_name("payments");
    outbox::message m;
    m.topic = topic;
    m.key = "pay-77";
    m.payload = R"({"amount":77})";
    outbox::half_options o;
    o.producer_group = "payments";
    o.producer_instance = "payments-crashed";
    o.check_first_after = 0ms;
    const auto id = outbox::prepare(writer(), conn(), m, "tx-77", o);
    // The producer that prepared it is gone; a peer of the group answers from the service's
    // own state (the payment went through).
    outbox::checkback_responder peer(
        responder_opts("payments-peer"), [](const outbox::half_message_info& h) {
            return h.tx_ref == "tx-77" ? outbox::check_decision::commit
                                       : outbox::check_decision::unknown;
        });
    peer.start();
    relay_daemon relay(schema());
    ASSERT_TRUE(eventually([&] { return read(id).state == "committed"; }, 15s)) << relay.log();
    EXPECT_EQ(read(id).decided_by, "checkback");
    test::kafka_reader reader(topic);
    const auto records = reader.read(1, 20s);
    ASSERT_EQ(records.size(), 1u) << reader.last_error();
    EXPECT_EQ(records[0].header("ferry-message-id"), id.to_string());
    EXPECT_EQ(records[0].key, "pay-77");
    EXPECT_EQ(records[0].value, R"({"amount":77})");
}
