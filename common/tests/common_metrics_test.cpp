// The shared metrics registry (ferry/common/metrics.hpp): naming rules, family conflicts, label
// escaping, collectors, and the serialized text checked by promtool (a declared dependency:
// Debian package `prometheus`; the test fails when it is missing).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "ferry/common/error.hpp"
#include "ferry/common/metrics.hpp"
#include "ferry/internal/instance_id.hpp"
#include "ferry/internal/pg_array.hpp"

namespace fm = ferry::metrics;

namespace {

struct promtool_result {
    int exit_code = -1;
    std::string output;
};

std::string promtool_path() {
    if (const char* p = std::getenv("FERRY_PROMTOOL")) return p;
    for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
        const auto p = std::filesystem::path(dir) / "promtool";
        if (std::filesystem::exists(p)) return p.string();
    }
    return {};
}

promtool_result promtool_check(const std::string& text) {
    const auto tool = promtool_path();
    if (tool.empty()) {
        ADD_FAILURE() << "promtool not found: install the Debian package `prometheus` "
                         "(scripts/lib/packages.sh lists it) or set FERRY_PROMTOOL";
        return {};
    }
    const auto file = std::filesystem::temp_directory_path() /
                      ("ferry_metrics_" + std::to_string(::getpid()) + ".prom");
    {
        std::ofstream out(file, std::ios::binary);
        out << text;
    }
    promtool_result r;
    const std::string cmd = tool + " check metrics < " + file.string() + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return r;
    char buf[512];
    while (std::fgets(buf, sizeof buf, p) != nullptr) r.output += buf;
    const int status = ::pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::filesystem::remove(file);
    return r;
}

std::string code_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const ferry::error& e) {
        return e.code();
    }
    return "";
}

}  // namespace

TEST(MetricsTest, CountersGaugesAndHistogramsSerialize) {
    fm::registry r;
    const auto commits =
        r.add_counter("ferry_test_checks_total", "Checks by outcome.", {{"outcome", "commit"}});
    const auto rollbacks =
        r.add_counter("ferry_test_checks_total", "Checks by outcome.", {{"outcome", "rollback"}});
    commits.inc();
    commits.inc(2);
    rollbacks.inc();
    commits.inc(-5);  // ignored: counters never go down
    EXPECT_DOUBLE_EQ(commits.value(), 3);
    // Registering the same series again returns the same counter.
    EXPECT_DOUBLE_EQ(
        r.add_counter("ferry_test_checks_total", "Checks by outcome.", {{"outcome", "commit"}})
            .value(),
        3);
    const auto g = r.add_gauge("ferry_test_pending", "Pending things.");
    g.set(7);
    g.dec(2);
    g.inc(0.5);
    EXPECT_DOUBLE_EQ(g.value(), 5.5);
    const auto h = r.add_histogram("ferry_test_latency_seconds", "Latency.", {0.01, 0.1, 1});
    h.observe(0.05);
    h.observe(3);

    const auto text = r.serialize();
    EXPECT_NE(text.find("# TYPE ferry_test_checks_total counter"), std::string::npos) << text;
    EXPECT_NE(text.find("ferry_test_checks_total{outcome=\"commit\"} 3"), std::string::npos)
        << text;
    EXPECT_NE(text.find("ferry_test_checks_total{outcome=\"rollback\"} 1"), std::string::npos)
        << text;
    EXPECT_NE(text.find("ferry_test_pending 5.5"), std::string::npos) << text;
    EXPECT_NE(text.find("ferry_test_latency_seconds_bucket{le=\"0.1\"} 1"), std::string::npos)
        << text;
    EXPECT_NE(text.find("ferry_test_latency_seconds_count 2"), std::string::npos) << text;
}

TEST(MetricsTest, NamesFollowPrometheusConventions) {
    fm::registry r;
    EXPECT_EQ(code_of([&] { (void)r.add_counter("ferry_checks", "x"); }), "metrics.invalid_name");
    EXPECT_EQ(code_of([&] { (void)r.add_gauge("ferry_rows_total", "x"); }), "metrics.invalid_name");
    EXPECT_EQ(code_of([&] { (void)r.add_gauge("ferry_lag_ms", "x"); }), "metrics.invalid_name");
    EXPECT_EQ(code_of([&] { (void)r.add_counter("ferry_sent_kb_total", "x"); }),
              "metrics.invalid_name");
    EXPECT_EQ(code_of([&] { (void)r.add_gauge("Ferry-Lag", "x"); }), "metrics.invalid_name");
    EXPECT_EQ(code_of([&] { (void)r.add_gauge("ferry_lag_seconds", ""); }), "metrics.invalid_name");
    EXPECT_EQ(code_of([&] {
                  (void)r.add_histogram("ferry_batch_count", "x", {1, 2});
              }),
              "metrics.invalid_name");
    EXPECT_EQ(code_of([&] {
                  (void)r.add_histogram("ferry_batch_rows", "x", {2, 1});
              }),
              "metrics.invalid_name");
    EXPECT_EQ(code_of([&] {
                  (void)r.add_histogram("ferry_batch_rows", "x", {1}, {{"le", "1"}});
              }),
              "metrics.invalid_name");
    EXPECT_EQ(code_of([&] {
                  (void)r.add_gauge("ferry_lag_seconds", "x", {{"bad-label", "v"}});
              }),
              "metrics.invalid_name");
    EXPECT_EQ(code_of([&] {
                  (void)r.add_gauge("ferry_lag_seconds", "x", {{"__name", "v"}});
              }),
              "metrics.invalid_name");
    try {
        (void)r.add_gauge("ferry_lag_ms", "x");
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.field(), "ferry_lag_ms");
        EXPECT_NE(std::string(e.what()).find("_seconds"), std::string::npos) << e.what();
    }
    EXPECT_EQ(code_of([&] { (void)r.add_gauge("ferry_lag_seconds", "Lag."); }), "");
    EXPECT_EQ(code_of([&] { (void)r.add_gauge("ferry_queue_bytes", "Bytes."); }), "");
}

TEST(MetricsTest, AFamilyKeepsItsTypeHelpLabelsAndBuckets) {
    fm::registry r;
    (void)r.add_gauge("ferry_x_seconds", "Help.", {{"group", "a"}});
    EXPECT_EQ(code_of([&] { (void)r.add_histogram("ferry_x_seconds", "Help.", {1}); }),
              "metrics.conflict");
    EXPECT_EQ(code_of([&] {
                  (void)r.add_gauge("ferry_x_seconds", "Other help.", {{"group", "b"}});
              }),
              "metrics.conflict");
    EXPECT_EQ(code_of([&] {
                  (void)r.add_gauge("ferry_x_seconds", "Help.", {{"topic", "b"}});
              }),
              "metrics.conflict");
    EXPECT_EQ(code_of([&] {
                  (void)r.add_gauge("ferry_x_seconds", "Help.", {{"group", "b"}});
              }),
              "");
    (void)r.add_histogram("ferry_y_seconds", "Help.", {1, 2});
    EXPECT_EQ(code_of([&] {
                  (void)r.add_histogram("ferry_y_seconds", "Help.", {1, 3});
              }),
              "metrics.conflict");
}

TEST(MetricsTest, NastyLabelValuesAreEscaped) {
    fm::registry r;
    const std::string nasty = "a\"b\\c\nd}e,f=g'h {x=\"y\"} \xc3\xa9";
    r.add_counter("ferry_nasty_total", "Help with a \\ backslash\nand a newline.", {{"key", nasty}})
        .inc();
    const auto text = r.serialize();
    EXPECT_NE(text.find("key=\"a\\\"b\\\\c\\nd}e,f=g'h {x=\\\"y\\\"} \xc3\xa9\""),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("# HELP ferry_nasty_total Help with a \\\\ backslash\\nand a newline.\n"),
              std::string::npos)
        << text;
    // No raw newline inside the sample line: every line is a comment or a complete sample.
    std::size_t start = 0;
    while (start < text.size()) {
        const auto end = text.find('\n', start);
        const auto line = text.substr(start, end - start);
        if (!line.empty() && line[0] != '#') {
            // (a HELP line broken by a raw newline would show up here as a stray line)
            EXPECT_EQ(line.rfind("ferry_nasty_total{", 0), 0u) << "broken line: " << line;
        }
        start = end == std::string::npos ? text.size() : end + 1;
    }
    const auto check = promtool_check(text);
    EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << text;
}

TEST(MetricsTest, PromtoolAcceptsAFullRegistry) {
    fm::registry r;
    for (const char* o : {"commit", "rollback", "unknown"}) {
        r.add_counter("ferry_checkback_checks_total", "Check-backs by outcome.", {{"outcome", o}})
            .inc();
    }
    r.add_gauge("ferry_half_oldest_pending_age_seconds", "Age.").set(1.5);
    r.add_gauge("ferry_rows", "Rows by table.", {{"table", "half_message"}}).set(3);
    r.add_histogram("ferry_batch_seconds", "Batch time.", {0.001, 0.01, 0.1}, {{"group", "0"}})
        .observe(0.02);
    const auto text = r.serialize();
    const auto check = promtool_check(text);
    EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << text;
    EXPECT_EQ(check.output, "") << text;
}

TEST(MetricsTest, PromtoolCheckCanFail) {
    // Negative control: the check above is not vacuous.
    const auto check = promtool_check(
        "# HELP ferry_bad A counter without _total.\n"
        "# TYPE ferry_bad counter\nferry_bad 1\n");
    EXPECT_NE(check.exit_code, 0) << check.output;
}

TEST(MetricsTest, CollectorsRunAtSerializeUntilTheirHandleGoes) {
    fm::registry r;
    const auto g = r.add_gauge("ferry_age_seconds", "Age.");
    int calls = 0;
    {
        auto handle = r.add_collector([&] { g.set(++calls); });
        (void)r.serialize();
        const auto text = r.serialize();
        EXPECT_NE(text.find("ferry_age_seconds 2"), std::string::npos) << text;
        auto moved = std::move(handle);
        (void)r.serialize();
        EXPECT_EQ(calls, 3);
    }
    (void)r.serialize();
    EXPECT_EQ(calls, 3);  // unregistered with the handle
    // A collector that throws does not take the others down.
    auto bad = r.add_collector([] { throw std::runtime_error("source gone"); });
    auto good = r.add_collector([&] { g.set(42); });
    EXPECT_NE(r.serialize().find("ferry_age_seconds 42"), std::string::npos);
}

TEST(MetricsTest, RemovedSeriesDisappear) {
    fm::registry r;
    const auto a = r.add_gauge("ferry_lag_seconds", "Lag.", {{"partition", "0"}});
    const auto b = r.add_gauge("ferry_lag_seconds", "Lag.", {{"partition", "1"}});
    a.set(1);
    b.set(2);
    r.remove(a);
    const auto text = r.serialize();
    EXPECT_EQ(text.find("partition=\"0\""), std::string::npos) << text;
    EXPECT_NE(text.find("ferry_lag_seconds{partition=\"1\"} 2"), std::string::npos) << text;
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
    fm::registry r;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&r, t] {
            for (int i = 0; i < 10000; ++i) {
                r.add_counter("ferry_ops_total", "Ops.", {{"worker", std::to_string(t % 2)}}).inc();
                if (i % 1000 == 0) (void)r.serialize();
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_DOUBLE_EQ(r.add_counter("ferry_ops_total", "Ops.", {{"worker", "0"}}).value(), 20000);
    EXPECT_DOUBLE_EQ(r.add_counter("ferry_ops_total", "Ops.", {{"worker", "1"}}).value(), 20000);
}

TEST(MetricsTest, ProcessRegistryIsOneObject) {
    EXPECT_EQ(&fm::process_registry(), &fm::process_registry());
    fm::registry mine;
    EXPECT_EQ(&fm::or_process(nullptr), &fm::process_registry());
    EXPECT_EQ(&fm::or_process(&mine), &mine);
}

TEST(PgArrayTest, QuotesAndEscapesTextElements) {
    using ferry::internal::array_literal;
    EXPECT_EQ(array_literal(std::vector<std::string>{}), "{}");
    EXPECT_EQ(array_literal(std::vector<std::string>{"a", "b c", "NULL", "x,y", "q\"\\"}),
              "{\"a\",\"b c\",\"NULL\",\"x,y\",\"q\\\"\\\\\"}");
    EXPECT_EQ(array_literal(std::vector<std::optional<std::string>>{"a", std::nullopt}),
              "{\"a\",NULL}");
    EXPECT_EQ(array_literal(std::vector<long long>{1, -2, 3}), "{1,-2,3}");
    EXPECT_EQ(array_literal(std::vector<int>{}), "{}");
    // Escapes at the start, in the middle and at the end of an element, and runs of them.
    EXPECT_EQ(array_literal(std::vector<std::string>{"\"ab\\c\"", "\\\\", "", "{}"}),
              "{\"\\\"ab\\\\c\\\"\",\"\\\\\\\\\",\"\",\"{}\"}");
    EXPECT_EQ(array_literal(std::vector<std::int64_t>{INT64_MIN, INT64_MAX, 0}),
              "{-9223372036854775808,9223372036854775807,0}");
}

TEST(PgArrayTest, BuilderQuotesLikeArrayLiteral) {
    ferry::internal::array_builder empty;
    EXPECT_EQ(std::move(empty).take(), "{}");
    ferry::internal::array_builder b(3, 8);
    b.add("a\"b");
    b.add_null();
    b.add("c\\");
    EXPECT_EQ(std::move(b).take(), "{\"a\\\"b\",NULL,\"c\\\\\"}");
}

TEST(InstanceIdTest, HostPidAndSixHexDigits) {
    const auto a = ferry::internal::default_instance_id();
    const auto b = ferry::internal::default_instance_id();
    const auto pid = "-" + std::to_string(::getpid()) + "-";
    ASSERT_NE(a.find(pid), std::string::npos) << a;
    const auto suffix = a.substr(a.rfind('-') + 1);
    EXPECT_EQ(suffix.size(), 6u) << a;
    EXPECT_EQ(suffix.find_first_not_of("0123456789abcdef"), std::string::npos) << a;
    EXPECT_FALSE(a.substr(0, a.find(pid)).empty()) << a;
    // Two components of one process get different ids (suffix collision: 1 in 16M).
    EXPECT_NE(a, b);
}
