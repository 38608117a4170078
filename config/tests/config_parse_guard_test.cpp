// Unit tests of the parse guard (config/src/parse_guard.hpp): work run in a forked child with a
// time and a memory limit, and the YAML load built on it (load_limits.parse_timeout,
// parse_memory). The yaml-cpp hangs below are the ones fuzz_config found (ADR 0050).

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ferry/config/config.hpp"
#include "parse_guard.hpp"

namespace {

using namespace std::chrono_literals;
using ferry::config::load_limits;
using ferry::config::load_string;
using ferry::config::detail::isolation_limits;
using ferry::config::detail::isolation_status;
using ferry::config::detail::run_isolated;
using testing::HasSubstr;

ferry::config::env_lookup no_env() {
    return [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
}

// Every input on which fuzz_config found yaml-cpp 0.7 never returning. load_string refuses the
// first four by a lexical check before yaml-cpp sees them; the child's time limit must catch
// all of them on its own, since the next member of the family will get past that check.
const std::vector<std::string>& known_hangs() {
    static const std::vector<std::string> hangs = {
        ",kafka:\n",            // regression_comma_document_start.yaml
        "{},ka:A",              // regression_flow_entry_after_flow_node.yaml
        "!-,!---",              // regression_flow_entry_after_tag.yaml
        std::string("\0,", 2),  // regression_nul_byte.yaml
        "!a\xc6[\n,",           // regression_tag_with_stray_byte_into_flow.yaml
    };
    return hangs;
}

TEST(ConfigParseGuardTest, WorkThatReturnsIsFinishedAndRanInTheChild) {
    int touched = 0;
    const auto out = run_isolated([&] { touched = 1; }, {5s, 0});
    EXPECT_EQ(out.status, isolation_status::finished);
    EXPECT_EQ(touched, 0) << "the work ran in this process, not in a child";
}

TEST(ConfigParseGuardTest, WorkThatThrowsHasStillFinished) {
    const auto out = run_isolated([] { throw std::runtime_error("parse error"); }, {5s, 0});
    EXPECT_EQ(out.status, isolation_status::finished);
}

TEST(ConfigParseGuardTest, EndlessWorkIsKilledAtTheTimeLimit) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto out = run_isolated(
        [] {
            std::atomic<unsigned long> spins{0};
            for (;;) spins.fetch_add(1, std::memory_order_relaxed);
        },
        {300ms, 0});
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(out.status, isolation_status::timed_out);
    EXPECT_GE(out.elapsed, 300ms);
    EXPECT_GE(took, 300ms);
    EXPECT_LT(took, 10s);
}

// The limit is on CPU time: a child that uses none (starved, or waiting on something that never
// comes) is stopped by the wall-clock backstop at 10 times the limit instead.
TEST(ConfigParseGuardTest, IdleWorkIsKilledAtTenTimesTheLimitInWallTime) {
    const auto out = run_isolated(
        [] {
            for (;;) ::pause();
        },
        {100ms, 0});
    EXPECT_EQ(out.status, isolation_status::timed_out);
    EXPECT_GE(out.elapsed, 1000ms);
    EXPECT_LT(out.elapsed, 10s);
}

TEST(ConfigParseGuardTest, ACrashIsReportedWithItsSignalOrExitCode) {
    const auto aborted = run_isolated([] { std::abort(); }, {10s, 0});
    EXPECT_EQ(aborted.status, isolation_status::crashed);
    EXPECT_EQ(aborted.signal, SIGABRT);

    const auto exited = run_isolated([] { ::_exit(3); }, {10s, 0});
    EXPECT_EQ(exited.status, isolation_status::crashed);
    EXPECT_EQ(exited.signal, 0);
    EXPECT_EQ(exited.code, 3);
}

TEST(ConfigParseGuardTest, WorkPastTheMemoryLimitIsOutOfMemory) {
    if (!ferry::config::detail::k_memory_limit_applies) {
        GTEST_SKIP() << "RLIMIT_AS is not applied in a sanitizer build";
    }
    const auto out = run_isolated(
        [] {
            std::vector<std::unique_ptr<char[]>> blocks;
            for (int i = 0; i < 64; ++i) {  // 1 GiB in 16 MiB blocks, each touched
                blocks.emplace_back(new char[16 << 20]);
                blocks.back()[0] = 1;
            }
        },
        {30s, 64u << 20});
    EXPECT_EQ(out.status, isolation_status::out_of_memory);

    // The same work within a limit that fits it: the limit is relative to what is mapped.
    const auto fits = run_isolated(
        [] {
            auto block = std::make_unique<char[]>(16 << 20);
            block[0] = 1;
        },
        {30s, 64u << 20});
    EXPECT_EQ(fits.status, isolation_status::finished);
}

// A process with threads (the relay, libFuzzer's RSS thread): another thread allocating without
// pause while the forks happen must not leave the child stuck on a malloc lock.
TEST(ConfigParseGuardTest, ForkingWhileAnotherThreadAllocatesStillFinishes) {
#if defined(__SANITIZE_ADDRESS__)
    constexpr bool asan = true;
#elif defined(__has_feature)
    constexpr bool asan = __has_feature(address_sanitizer);
#else
    constexpr bool asan = false;
#endif
    if (asan) {
        // What this proves is glibc's: its malloc takes its locks around fork. ASan replaces
        // malloc, and clang 14's runtime does not lock its allocator around fork, so a child
        // forked while the churn thread is inside it can block (1 of 50 under clang -O0 ASan,
        // killed by the wall-clock backstop). CI runs this suite in the normal stage too.
        GTEST_SKIP() << "ASan's allocator is not fork-safe; this tests glibc's malloc";
    }
    std::atomic<bool> stop{false};
    std::thread churn([&] {
        while (!stop.load()) {
            auto p = std::make_unique<std::string>(1000, 'x');
            (void)p->size();
        }
    });
    int finished = 0;
    for (int i = 0; i < 50; ++i) {
        const auto out = run_isolated(
            [] {
                const std::lock_guard lock(ferry::config::detail::yaml_mutex());
                (void)YAML::Load("relay: {batch_size: 7}\nkafka: [a, b]\n");
            },
            {10s, 0});
        finished += out.status == isolation_status::finished ? 1 : 0;
    }
    stop = true;
    churn.join();
    EXPECT_EQ(finished, 50);
}

TEST(ConfigParseGuardTest, EveryKnownYamlCppHangIsATimeoutInTheChild) {
    for (const auto& text : known_hangs()) {
        const auto out = run_isolated([&] { (void)YAML::LoadAll(text); }, {300ms, 0});
        EXPECT_EQ(out.status, isolation_status::timed_out) << text;
        EXPECT_LT(out.elapsed, 10s) << text;
    }
}

TEST(ConfigParseGuardTest, TheTimeLimitIsNamedWithItsValue) {
    load_limits limits;
    limits.parse_timeout = 500ms;
    const auto r = load_string("!a\xc6[\n,", "t.yaml", no_env(), limits);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].line, 0);
    EXPECT_EQ(r.errors[0].message,
              "YAML parse did not finish within 500 ms (yaml-cpp hang on malformed input; "
              "load_limits.parse_timeout)");
}

TEST(ConfigParseGuardTest, ParseMemoryLimitIsNamed) {
    if (!ferry::config::detail::k_memory_limit_applies) {
        GTEST_SKIP() << "RLIMIT_AS is not applied in a sanitizer build";
    }
    // About 300k nodes in 900 KB: well over 100 MiB of yaml-cpp's node objects, more than the
    // free heap a parent keeps mapped (glibc trims above 32 MiB at most).
    std::string yaml = "relay:\n";
    for (int i = 0; yaml.size() < 900 * 1024; ++i) {
        yaml += "  k" + std::to_string(i) + ": [a, b, c, d, e, f, g]\n";
    }
    load_limits limits;
    limits.parse_memory = 1u << 20;
    limits.parse_timeout = 60s;
    const auto r = load_string(yaml, "t.yaml", no_env(), limits);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].to_string(),
              "t.yaml: YAML parse needed more than 1 MiB of memory (load_limits.parse_memory)");
}

// The child only vouches for the text; the load itself is unchanged: values, syntax errors
// with their line and column, and the depth limit's place are what they were without it.
TEST(ConfigParseGuardTest, GuardedAndInProcessParsesAgree) {
    load_limits in_process;
    in_process.parse_timeout = 0ms;
    const std::vector<std::string> texts = {
        "relay:\n  batch_size: 7\nkafka:\n  brokers: a:9092,b:9092\n",
        "relay:\n  batch_size: [1,\n",                                   // syntax error
        "relay:\n  batch_size: 7\n  batch_size: 8\n",                    // duplicate key
        "relay: " + std::string(40, '[') + std::string(40, ']') + "\n",  // depth limit
        "relay:\n  batch_size: 7\n---\nlog: {}\n",                       // two documents
    };
    for (const auto& text : texts) {
        const auto guarded = load_string(text, "t.yaml", no_env());
        const auto direct = load_string(text, "t.yaml", no_env(), in_process);
        ASSERT_EQ(guarded.errors.size(), direct.errors.size()) << text;
        for (std::size_t i = 0; i < guarded.errors.size(); ++i) {
            EXPECT_EQ(guarded.errors[i].to_string(), direct.errors[i].to_string()) << text;
            EXPECT_GT(guarded.errors[i].line, 0) << text;
        }
        EXPECT_EQ(ferry::config::render_redacted(guarded.config),
                  ferry::config::render_redacted(direct.config))
            << text;
    }
    const auto syntax = load_string(texts[1], "t.yaml", no_env());
    ASSERT_EQ(syntax.errors.size(), 1u);
    EXPECT_THAT(syntax.errors[0].to_string(), HasSubstr("t.yaml:3:1: YAML syntax error"));
}

}  // namespace
