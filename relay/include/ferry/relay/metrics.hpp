#pragma once
// A tiny in-house Prometheus metrics registry: counters, gauges and histograms backed by
// atomics, rendered in the Prometheus text exposition format (version 0.0.4).
//
// Ownership and lifecycle: the registry owns every metric it hands out; references stay valid
// for the registry's lifetime. Thread-safety: registration and render() take an internal mutex;
// updating a metric (inc, set, observe) is lock-free and may happen from any thread.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ferry::relay {

class counter {
public:
    void inc(std::uint64_t n = 1) noexcept { _value.fetch_add(n, std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t value() const noexcept {
        return _value.load(std::memory_order_relaxed);
    }

private:
    std::atomic<std::uint64_t> _value{0};
};

class gauge {
public:
    void set(double v) noexcept { _value.store(v, std::memory_order_relaxed); }
    void add(double v) noexcept { _value.fetch_add(v, std::memory_order_relaxed); }
    [[nodiscard]] double value() const noexcept { return _value.load(std::memory_order_relaxed); }

private:
    std::atomic<double> _value{0};
};

class histogram {
public:
    /// `bounds`: ascending upper bounds of the buckets (+Inf is implied).
    explicit histogram(std::vector<double> bounds);
    void observe(double v) noexcept;
    [[nodiscard]] std::uint64_t count() const noexcept {
        return _count.load(std::memory_order_relaxed);
    }
    [[nodiscard]] double sum() const noexcept { return _sum.load(std::memory_order_relaxed); }
    [[nodiscard]] const std::vector<double>& bounds() const noexcept { return _bounds; }
    /// Cumulative count of observations <= bounds()[i].
    [[nodiscard]] std::uint64_t cumulative(std::size_t i) const noexcept;

private:
    std::vector<double> _bounds;
    std::unique_ptr<std::atomic<std::uint64_t>[]> _buckets;
    std::atomic<std::uint64_t> _count{0};
    std::atomic<double> _sum{0};
};

class registry {
public:
    /// Returns the series `name{labels}`, creating it (and its family) on first use.
    /// `labels` is the inside of the braces, already formatted: `group="3"`, or empty.
    counter& get_counter(const std::string& name, const std::string& help,
                         const std::string& labels = {});
    gauge& get_gauge(const std::string& name, const std::string& help,
                     const std::string& labels = {});
    histogram& get_histogram(const std::string& name, const std::string& help,
                             const std::vector<double>& bounds, const std::string& labels = {});

    /// Every metric in the Prometheus text format, families sorted by name. Collectors run
    /// first, so metrics owned elsewhere (the check-back scheduler's) are current.
    [[nodiscard]] std::string render();

    /// Registers fn to run at the start of every render(), to copy values kept elsewhere into
    /// this registry. It runs under no lock of the registry and may call get_*() and update.
    void add_collector(std::function<void(registry&)> fn);

private:
    struct family {
        std::string type;
        std::string help;
        std::map<std::string, std::unique_ptr<counter>> counters;
        std::map<std::string, std::unique_ptr<gauge>> gauges;
        std::map<std::string, std::unique_ptr<histogram>> histograms;
    };
    family& family_of(const std::string& name, const std::string& type, const std::string& help);

    mutable std::mutex _mutex;
    std::map<std::string, family> _families;
    std::mutex _collectors_mutex;
    std::vector<std::function<void(registry&)>> _collectors;
};

}  // namespace ferry::relay
