// ferry-relay's command line, without servers: a bad configuration is reported in full on
// stderr with exit code 2, before anything connects.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "ferry/test/child_process.hpp"
#include "ferry/test/unique_name.hpp"

namespace {

using namespace std::chrono_literals;
using testing::HasSubstr;

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

TEST(RelayCliTest, InvalidConfigurationPrintsEveryDiagnosticAndExitsTwo) {
    const auto name = ferry::test::unique_name("relay_cli");
    const auto config = "/tmp/" + name + ".yaml";
    const auto err = "/tmp/" + name + ".err";
    {
        std::ofstream out(config);
        out << "relay:\n  batch_size: 0\n  lease_tll: 5s\nkafka:\n  compression: brotli\n";
    }
    ferry::test::child_options opts;
    opts.stderr_path = err;
    ferry::test::child_process proc(FERRY_RELAY_PATH, {"--config", config}, opts);
    const auto status = proc.wait(10s);
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(status->exited);
    EXPECT_EQ(status->code, 2);
    const auto text = read_file(err);
    EXPECT_THAT(text, HasSubstr(config + ":2:15: relay.batch_size:"));
    EXPECT_THAT(text, HasSubstr("relay.lease_tll: unknown key"));
    EXPECT_THAT(text, HasSubstr("kafka.compression: must be one of"));
    EXPECT_TRUE(proc.lines().empty()) << "nothing on stdout for a failed start";
    std::remove(config.c_str());
    std::remove(err.c_str());
}

TEST(RelayCliTest, MissingConfigFileExitsTwo) {
    const auto err = "/tmp/" + ferry::test::unique_name("relay_cli") + ".err";
    ferry::test::child_options opts;
    opts.stderr_path = err;
    ferry::test::child_process proc(FERRY_RELAY_PATH, {"--config", "/nonexistent/ferry.yaml"},
                                    opts);
    const auto status = proc.wait(10s);
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(status->code, 2);
    EXPECT_THAT(read_file(err), HasSubstr("cannot open file"));
    std::remove(err.c_str());
}

TEST(RelayCliTest, InvalidKafkaPropertyExitsTwoBeforeConnecting) {
    const auto name = ferry::test::unique_name("relay_cli");
    const auto config = "/tmp/" + name + ".yaml";
    const auto err = "/tmp/" + name + ".err";
    {
        std::ofstream out(config);
        // Nothing listens on port 1: the relay must fail on the property, not on a server.
        out << "postgres:\n  dsn: postgresql://127.0.0.1:1/x\nkafka:\n  properties:\n"
               "    no.such.property: 1\nhttp:\n  listen: 127.0.0.1:0\n";
    }
    ferry::test::child_options opts;
    opts.stderr_path = err;
    ferry::test::child_process proc(FERRY_RELAY_PATH, {"--config", config}, opts);
    const auto status = proc.wait(10s);
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(status->code, 2) << read_file(err);
    EXPECT_THAT(read_file(err), HasSubstr("no.such.property"));
    std::remove(config.c_str());
    std::remove(err.c_str());
}

}  // namespace
