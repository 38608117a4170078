// `ferryctl config check|show`, driven in-process: the same CLI11 wiring and exception path as
// cli/src/main.cpp, with cmd_config.cpp compiled into the test. Files live in the test's temp
// directory; FERRY_* variables are cleared so the host environment cannot change the outcome.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "commands.hpp"

namespace {

using testing::HasSubstr;
using testing::Not;

struct run_result {
    int exit_code = -1;
    std::string out;
    std::string err;
};

// Mirrors main(): parse, turn CLI::ParseError (including CLI::RuntimeError) into app.exit().
run_result run(std::vector<std::string> args) {
    CLI::App app{"ferryctl"};
    app.require_subcommand(1);
    ferry::cli::globals g;
    app.add_option("-c,--config", g.config_path);
    ferry::cli::register_config(app, g);

    args.insert(args.begin(), "ferryctl");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());

    run_result r;
    testing::internal::CaptureStdout();
    testing::internal::CaptureStderr();
    try {
        app.parse(static_cast<int>(argv.size()), argv.data());
        r.exit_code = g.exit_code;
    } catch (const CLI::ParseError& e) {
        r.exit_code = app.exit(e);
    }
    r.out = testing::internal::GetCapturedStdout();
    r.err = testing::internal::GetCapturedStderr();
    return r;
}

class FerryctlConfigTest : public testing::Test {
protected:
    void SetUp() override {
        for (const char* v : {"FERRY_POSTGRES_DSN", "FERRY_KAFKA_BROKERS", "FERRY_REDIS_URL",
                              "FERRY_HTTP_LISTEN"}) {
            ::unsetenv(v);
        }
    }
    void TearDown() override {
        for (const auto& p : _files) std::remove(p.c_str());
        ::unsetenv("FERRY_HTTP_LISTEN");
    }

    std::string write(const std::string& name, const std::string& text) {
        const auto path = testing::TempDir() + "ferryctl_config_test_" + name;
        std::ofstream(path) << text;
        _files.push_back(path);
        return path;
    }

private:
    std::vector<std::string> _files;
};

TEST_F(FerryctlConfigTest, CheckValidFileExitsZero) {
    const auto path = write("ok.yaml", "kafka:\n  compression: zstd\n");
    const auto r = run({"config", "check", path});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "config ok: " + path + "\n");
    EXPECT_EQ(r.err, "");
}

TEST_F(FerryctlConfigTest, CheckInvalidFilePrintsEveryDiagnosticAndExitsTwo) {
    const auto path = write("bad.yaml", "kafka:\n  compression: brotli\nlog:\n  levle: info\n");
    const auto r = run({"config", "check", path});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(r.out, "");
    EXPECT_THAT(r.err, HasSubstr(path + ":2:16: kafka.compression: must be one of"));
    EXPECT_THAT(r.err, HasSubstr(path + ":4:3: log.levle: unknown key"));
    EXPECT_THAT(r.err, HasSubstr("2 errors"));
}

TEST_F(FerryctlConfigTest, CheckMissingFileExitsTwo) {
    const auto r = run({"config", "check", "/nonexistent/ferry.yaml"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("/nonexistent/ferry.yaml: cannot open file"));
}

TEST_F(FerryctlConfigTest, CheckAppliesEnvironmentOverrides) {
    const auto path = write("env.yaml", "log:\n  level: info\n");
    ::setenv("FERRY_HTTP_LISTEN", "nonsense", 1);
    const auto r = run({"config", "check", path});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("env: http.listen: FERRY_HTTP_LISTEN:"));
}

TEST_F(FerryctlConfigTest, ShowPrintsRedactedConfig) {
    const auto path = write("show.yaml",
                            "postgres:\n  dsn: postgresql://app:hunter2@db/app\n"
                            "kafka:\n  properties:\n    sasl.password: hunter2\n");
    const auto r = run({"--config", path, "config", "show"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("dsn: postgresql://app:***@db/app"));
    EXPECT_THAT(r.out, HasSubstr("sasl.password: \"***\""));
    EXPECT_THAT(r.out + r.err, Not(HasSubstr("hunter2")));
}

TEST_F(FerryctlConfigTest, ShowWithoutConfigUsesDefaultsAndEnvironment) {
    ::setenv("FERRY_HTTP_LISTEN", "0.0.0.0:1234", 1);
    const auto r = run({"config", "show"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("listen: 0.0.0.0:1234"));
    EXPECT_THAT(r.out, HasSubstr("compression: lz4"));
}

TEST_F(FerryctlConfigTest, ShowInvalidConfigExitsTwoThroughRuntimeError) {
    const auto path = write("invalid.yaml", "outbox:\n  max_key_bytes: 0\n");
    const auto r = run({"--config", path, "config", "show"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(r.out, "");
    EXPECT_THAT(r.err, HasSubstr(path + ":2:18: outbox.max_key_bytes:"));
}

TEST_F(FerryctlConfigTest, LoadConfigThrowsRuntimeErrorWithCodeTwo) {
    const auto path = write("throw.yaml", "nope: 1\n");
    ferry::cli::globals g;
    g.config_path = path;
    testing::internal::CaptureStderr();
    try {
        (void)g.load_config();
        testing::internal::GetCapturedStderr();
        FAIL() << "load_config accepted an invalid file";
    } catch (const CLI::ParseError& e) {  // what main() catches
        testing::internal::GetCapturedStderr();
        EXPECT_EQ(e.get_exit_code(), 2);
        EXPECT_EQ(e.get_name(), "RuntimeError");
    }
}

// The consumers: section is validated like the rest: a valid one passes (before the section
// existed it was an unknown section, exit 2); a bad one exits 2 naming each field and place.
TEST_F(FerryctlConfigTest, CheckValidatesTheConsumersSection) {
    const auto ok = write("consumers_ok.yaml",
                          "consumers:\n  - group: inventory\n    topics: [order-placed]\n"
                          "    lanes: 8\n    inbox:\n      retention: 72h\n");
    auto r = run({"config", "check", ok});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "config ok: " + ok + "\n");

    const auto bad = write("consumers_bad.yaml",
                           "consumers:\n  - group: inventory\n    topics: [order-placed]\n"
                           "    lanes: 0\n    retry:\n      max_attemps: 3\n");
    r = run({"config", "check", bad});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(r.out, "");
    EXPECT_THAT(r.err, HasSubstr(bad + ":4:12: consumers[0].lanes: must be between 1 and 256"));
    EXPECT_THAT(r.err, HasSubstr(bad + ":6:7: consumers[0].retry.max_attemps: unknown key"));
    EXPECT_THAT(r.err, HasSubstr("2 errors"));

    // config show renders the section back, secrets masked.
    const auto secret = write("consumers_show.yaml",
                              "consumers:\n  - group: g\n    topics: [t]\n"
                              "    dsn: postgresql://app:hunter2@db/app\n");
    r = run({"--config", secret, "config", "show"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("group: g"));
    EXPECT_THAT(r.out, HasSubstr("dsn: postgresql://app:***@db/app"));
    EXPECT_THAT(r.out + r.err, Not(HasSubstr("hunter2")));
}

}  // namespace
