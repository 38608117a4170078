#pragma once
// Small helpers shared by Ferry's benchmarks: command-line (--out FILE), latency samples with
// percentiles, a summary table on stdout and a JSON result file. Benchmarks interleave the
// variant under test with its baseline in rounds, so both see the same machine noise.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ferry::bench {

struct args {
    std::string out;     // JSON result path
    double scale = 1.0;  // FERRY_BENCH_SCALE shrinks or grows iteration counts

    static args parse(int argc, char** argv) {
        args a;
        for (int i = 1; i < argc; ++i) {
            std::string s = argv[i];
            if (s == "--out" && i + 1 < argc) a.out = argv[++i];
        }
        if (const char* sc = std::getenv("FERRY_BENCH_SCALE")) a.scale = std::atof(sc);
        if (a.scale <= 0) a.scale = 1.0;
        return a;
    }
    [[nodiscard]] int scaled(int n) const { return std::max(1, static_cast<int>(n * scale)); }
};

/// Latency samples in microseconds.
class samples {
public:
    void add(double us) { _v.push_back(us); }
    void add(const samples& other) { _v.insert(_v.end(), other._v.begin(), other._v.end()); }
    [[nodiscard]] std::size_t size() const { return _v.size(); }
    [[nodiscard]] double percentile(double p) const {
        if (_v.empty()) return 0;
        auto v = _v;
        std::sort(v.begin(), v.end());
        const auto idx =
            static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
        return v[std::min(idx, v.size() - 1)];
    }
    [[nodiscard]] double mean() const {
        if (_v.empty()) return 0;
        double s = 0;
        for (double x : _v) s += x;
        return s / static_cast<double>(_v.size());
    }
    [[nodiscard]] nlohmann::json summary() const {
        return {{"n", size()},
                {"mean_us", mean()},
                {"p50_us", percentile(50)},
                {"p90_us", percentile(90)},
                {"p99_us", percentile(99)}};
    }

private:
    std::vector<double> _v;
};

inline double elapsed_us(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - since)
        .count();
}

// The current time as ISO 8601 UTC, e.g. 2026-12-01T02:00:27Z: a results file's "run", the name
// docs use for the figures they quote.
inline std::string utc_now() {
    const auto t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

inline void write_json(const args& a, const nlohmann::json& j) {
    const auto text = j.dump(2);
    if (!a.out.empty()) {
        std::ofstream f(a.out);
        f << text << "\n";
        if (!f) {
            std::cerr << "bench: cannot write " << a.out << "\n";
            std::exit(1);
        }
        std::cout << "results written to " << a.out << "\n";
    }
}

/// Prints rows of (name, value, unit) as an aligned table.
inline void print_table(const std::string& title,
                        const std::vector<std::tuple<std::string, double, std::string>>& rows) {
    std::printf("\n%s\n", title.c_str());
    std::printf("%-48s %14s  %s\n", "metric", "value", "unit");
    std::printf("%-48s %14s  %s\n", std::string(48, '-').c_str(), "--------------", "----");
    for (const auto& [name, value, unit] : rows) {
        std::printf("%-48s %14.3f  %s\n", name.c_str(), value, unit.c_str());
    }
}

}  // namespace ferry::bench
