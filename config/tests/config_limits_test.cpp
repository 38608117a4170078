// Unit tests of the limits on hostile configuration text (ferry::config::load_limits): a size
// limit and a nesting-depth limit, each a single diagnostic that names the limit, checked before
// yaml-cpp builds a node.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <string>
#include <utility>
#include <vector>

#include "ferry/config/config.hpp"

namespace {

using ferry::config::load_file;
using ferry::config::load_limits;
using ferry::config::load_result;
using ferry::config::load_string;
using testing::HasSubstr;
using testing::Not;

ferry::config::env_lookup no_env() {
    return [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
}

std::string nested_lists(const std::string& prefix, std::size_t lists) {
    return prefix + std::string(lists, '[') + std::string(lists, ']') + "\n";
}

// load_string on its own thread: a parser that never returns fails the test (and ends the
// process, since that thread cannot be stopped) instead of hanging the suite.
load_result load_or_fail(const std::string& yaml, std::chrono::seconds limit) {
    auto result =
        std::async(std::launch::async, [&yaml] { return load_string(yaml, "t.yaml", no_env()); });
    if (result.wait_for(limit) != std::future_status::ready) {
        ADD_FAILURE() << "load_string did not return within " << limit.count() << " s on: " << yaml;
        std::fflush(nullptr);
        std::_Exit(1);
    }
    return result.get();
}

TEST(ConfigLimitsTest, TextOverTheSizeLimitIsOneErrorNamingTheLimit) {
    load_limits limits;
    limits.max_bytes = 64;
    std::string yaml = "relay:\n  batch_size: 7\n";
    yaml += "# " + std::string(64 - yaml.size() - 3, 'x') + "\n";
    ASSERT_EQ(yaml.size(), 64u);

    const auto at_limit = load_string(yaml, "t.yaml", no_env(), limits);
    ASSERT_TRUE(at_limit.ok()) << at_limit.errors.front().to_string();
    EXPECT_EQ(at_limit.config.relay.batch_size, 7u);

    const auto over = load_string(yaml + "\n", "t.yaml", no_env(), limits);
    ASSERT_EQ(over.errors.size(), 1u);
    EXPECT_THAT(over.errors[0].to_string(),
                HasSubstr("65 bytes is over the size limit of 64 bytes for a configuration "
                          "(load_limits.max_bytes)"));
    // Nothing of the refused text is applied.
    EXPECT_EQ(over.config.relay.batch_size, ferry::config::relay_config{}.batch_size);
}

TEST(ConfigLimitsTest, DefaultSizeLimitIsOneMebibyte) {
    EXPECT_EQ(load_limits{}.max_bytes, 1048576u);
}

TEST(ConfigLimitsTest, FileOverTheSizeLimitIsRefusedWithoutReadingItAll) {
    const std::string path = ::testing::TempDir() + "ferry_config_limits_big.yaml";
    {
        std::ofstream out(path, std::ios::binary);
        out << "relay:\n  batch_size: 7\n" << std::string(2 * 1024 * 1024, '#') << "\n";
    }
    const auto big = load_file(path, no_env());
    std::remove(path.c_str());
    ASSERT_EQ(big.errors.size(), 1u);
    EXPECT_EQ(big.errors[0].source, path);
    EXPECT_THAT(big.errors[0].message,
                HasSubstr("file is over the size limit of 1048576 bytes for a configuration "
                          "(load_limits.max_bytes)"));

    // An endless file: before the limit, load_file read until memory ran out.
    const auto t0 = std::chrono::steady_clock::now();
    const auto zero = load_file("/dev/zero", no_env());
    ASSERT_EQ(zero.errors.size(), 1u);
    EXPECT_THAT(zero.errors[0].message, HasSubstr("load_limits.max_bytes"));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
}

TEST(ConfigLimitsTest, NestingPastTheDepthLimitIsOneErrorWithItsPlace) {
    load_limits limits;
    limits.max_depth = 4;
    // Root map, kafka's map and 2 lists: depth 4, within the limit (the value is just the wrong
    // type).
    const auto ok_depth =
        load_string(nested_lists("kafka:\n  brokers: ", 2), "t.yaml", no_env(), limits);
    ASSERT_FALSE(ok_depth.ok());
    for (const auto& e : ok_depth.errors) {
        EXPECT_THAT(e.message, Not(HasSubstr("depth limit"))) << e.to_string();
    }

    const auto deep =
        load_string(nested_lists("kafka:\n  brokers: ", 3), "t.yaml", no_env(), limits);
    ASSERT_EQ(deep.errors.size(), 1u);
    EXPECT_EQ(deep.errors[0].to_string(),
              "t.yaml:2:14: nesting is deeper than the depth limit of 4 levels of maps and lists "
              "(load_limits.max_depth)");
}

TEST(ConfigLimitsTest, HostileNestingIsRefusedByTheDefaultDepthLimit) {
    // 100000 levels: yaml-cpp alone stops at 2000 with its own exception; the limit answers at
    // level 33, naming itself.
    const auto r = load_string(nested_lists("relay: ", 100000), "t.yaml", no_env());
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_THAT(r.errors[0].message,
                HasSubstr("depth limit of 32 levels of maps and lists (load_limits.max_depth)"));
    EXPECT_EQ(r.errors[0].line, 1);
    EXPECT_EQ(r.errors[0].column, 8 + 31);

    // Block style counts the same way as flow style.
    std::string block = "relay:\n";
    for (int level = 1; level < 40; ++level) {
        block += std::string(static_cast<std::size_t>(level) * 2, ' ') + "k" +
                 std::to_string(level) + ":\n";
    }
    const auto b = load_string(block, "t.yaml", no_env());
    ASSERT_EQ(b.errors.size(), 1u);
    EXPECT_THAT(b.errors[0].message, HasSubstr("load_limits.max_depth"));
}

TEST(ConfigLimitsTest, FerrysDeepestSectionFitsWellWithinTheDefaultDepth) {
    load_limits limits;
    limits.max_depth = 5;
    const auto r = load_string(R"(
checkback:
  groups:
    payments:
      resolver: http
      url: https://payments.internal/check
      headers:
        X-Team: payments
)",
                               "t.yaml", no_env(), limits);
    ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
    EXPECT_EQ(r.config.checkback.groups.at("payments").headers.at("X-Team"), "payments");
}

// Found by fuzz_config: yaml-cpp 0.7 never returns on a document whose first token is ','. The
// load must end with one error at that line and column instead of hanging the relay at start-up.
TEST(ConfigLimitsTest, DocumentStartingWithACommaIsRefusedNotHungFoundByFuzzConfig) {
    const std::vector<std::pair<std::string, std::pair<int, int>>> cases = {
        {",kafka:\n", {1, 1}},
        {"# comment\n\n  ,\n", {3, 3}},
        {"relay:\n  batch_size: 7\n---\n&a !t ,x\n", {4, 7}},
        {"--- ,\n", {1, 5}},
        // After a complete top-level flow collection or quoted scalar (found by fuzz_config
        // with "{},ka:A"; each of these hung before).
        {"{},ka:A", {1, 3}},
        {"\"x\",y", {1, 4}},
        {"'x' ,\n", {1, 5}},
        {"[a] # c\n\n  ,\n", {3, 3}},
        {"--- [a]\n, x\n", {2, 1}},
        {"{a: \"}\"},x\n", {1, 9}},
        {"[a, {b: c}],x\n", {1, 12}},
        // A tag or anchor ends at a flow indicator (found by fuzz_config with "!-,!---").
        {"!-,!---", {1, 3}},
        {"&a,x\n", {1, 3}},
    };
    for (const auto& [yaml, at] : cases) {
        const auto loaded = load_or_fail(yaml, std::chrono::seconds(20));
        ASSERT_FALSE(loaded.ok()) << yaml;
        ASSERT_EQ(loaded.errors.size(), 1u) << yaml;
        EXPECT_EQ(loaded.errors.front().line, at.first) << yaml;
        EXPECT_EQ(loaded.errors.front().column, at.second) << yaml;
        EXPECT_THAT(loaded.errors.front().message, HasSubstr("cannot start with ','"));
    }
    // A zero byte makes yaml-cpp read the text as UTF-16 or UTF-32, where "\0," is a comma at
    // the document's start again (found by fuzz_config): refused where it is.
    for (const auto& [yaml, at] : std::vector<std::pair<std::string, std::pair<int, int>>>{
             {std::string("\0,", 2), {1, 1}},
             {std::string("log:\n  le\0vel: info\n", 20), {2, 5}}}) {
        const auto loaded = load_or_fail(yaml, std::chrono::seconds(20));
        ASSERT_EQ(loaded.errors.size(), 1u);
        EXPECT_EQ(loaded.errors.front().line, at.first);
        EXPECT_EQ(loaded.errors.front().column, at.second);
        EXPECT_THAT(loaded.errors.front().message, HasSubstr("zero byte"));
    }
    // A comma later in a document is an ordinary value for yaml-cpp: no false refusal.
    EXPECT_TRUE(load_string("log:\n  level: info\n# a, b\n", "t.yaml", no_env()).ok());
    EXPECT_TRUE(load_string("{log: {level: info}}\n# a, b\n", "t.yaml", no_env()).ok());
    EXPECT_TRUE(load_string("log: {level: info}\n", "t.yaml", no_env()).ok());
}

}  // namespace

// Found by fuzz_config (its fourth 10-minute run): a tag holding a byte that is not UTF-8,
// running into a '[', then a ',' at the start of the next line. yaml-cpp 0.7 never returns on
// it, and the lexical guard above cannot see it (it takes the '[' for a flow collection).
// Such a text is now parsed first in a child process with a time limit, and a parse that does
// not finish is one error naming the cause and the limit, not a hung start-up.
TEST(ConfigLimitsTest, TagWithAStrayByteIntoAFlowIndicatorIsATimeoutNotAHangFoundByFuzzConfig) {
    const std::vector<std::string> cases = {
        // The input fuzz_config found, as it was.
        "!kafka:e:\xc6\xdf\xd2\xcf\xf5\xdf\xdf\xa1"
        "atcKKKKKK[KKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKK\n,KKKKKKKKKKKKKKKKKKKKKK:"
        "\r\rKKKKKKsqlKKK\x03"
        "KKKKKKKKKKKKKKKKKKKKKKK\r\r\rkafk\xf3"
        ":\r\r\r\r\r\r\r\r\xbe"
        "\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\xf5\xdd batdo\n",
        // The same, reduced by hand.
        "!a\xc6[\n,",
    };
    for (const auto& yaml : cases) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto loaded = load_or_fail(yaml, std::chrono::seconds(30));
        const auto took = std::chrono::steady_clock::now() - t0;
        ASSERT_EQ(loaded.errors.size(), 1u) << yaml;
        EXPECT_EQ(loaded.errors.front().to_string(),
                  "t.yaml: YAML parse did not finish within 2 s (yaml-cpp hang on malformed "
                  "input; load_limits.parse_timeout)");
        // The limit is 2 s of the child's CPU time, with 10 times that in wall time as the
        // backstop: a starved child (a loaded machine, a sanitizer build) may take up to 20 s,
        // plus the fork and the kill; a hang would run into load_or_fail's 30 s.
        EXPECT_GE(took, std::chrono::seconds(2));
        EXPECT_LT(took, std::chrono::seconds(25));
        // Nothing of the refused text is applied.
        EXPECT_EQ(loaded.config.kafka.brokers, ferry::config::kafka_config{}.brokers);
    }
}
