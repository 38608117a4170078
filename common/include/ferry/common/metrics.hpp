#pragma once
// The one metrics registry of a Ferry process, on prometheus-cpp (ADR 0030).
//
// Every module registers its counters, gauges and histograms here, and whoever serves /metrics
// (ferry-relay, a consumer service) calls serialize() on the same registry. Modules take a
// `ferry::metrics::registry*` in their options; nullptr means process_registry(), the registry
// the whole process shares. Tests and services that want separate numbers pass their own.
//
// Names follow Prometheus conventions and are checked when a metric is registered: counters
// end in `_total`, other types never do, durations are `_seconds` and sizes `_bytes` (a name
// with `_ms`, `_milliseconds`, `_kb`, ... is refused). A name is one family: registering it
// again with the same type, help, label names (and buckets) returns the same series for the
// same label values; anything else throws ferry::error(permanent, "metrics.conflict").
// Label values may be any UTF-8 text; the text format escapes them (\\, \", \n).
//
// No prometheus-cpp type appears here: the third-party edge is metrics.cpp.
//
// Ownership and threads: the registry owns every metric; handles (counter, gauge, histogram)
// are cheap to copy and stay valid for the registry's lifetime (or until remove()). Every
// member function may be called from any thread; inc/set/observe are lock-free or take a
// per-metric lock only.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ferry::metrics {

/// Label name -> value for one series ({"outcome", "commit"}).
using labels = std::map<std::string, std::string>;

/// Content-Type of serialize()'s output (Prometheus text exposition format 0.0.4).
inline constexpr const char* text_content_type = "text/plain; version=0.0.4; charset=utf-8";

class registry;

/// A monotonically increasing value. inc() with a negative or NaN amount is ignored.
class counter {
public:
    void inc(double amount = 1.0) const noexcept;
    [[nodiscard]] double value() const noexcept;

private:
    friend class registry;
    explicit counter(void* metric) : _metric(metric) {}
    void* _metric;  // prometheus::Counter, owned by the registry
};

/// A value that goes up and down.
class gauge {
public:
    void set(double value) const noexcept;
    void inc(double amount = 1.0) const noexcept;
    void dec(double amount = 1.0) const noexcept;
    [[nodiscard]] double value() const noexcept;

private:
    friend class registry;
    explicit gauge(void* metric) : _metric(metric) {}
    void* _metric;  // prometheus::Gauge
};

/// Observations sorted into fixed buckets (`_bucket`, `_sum`, `_count` series).
class histogram {
public:
    void observe(double value) const noexcept;

private:
    friend class registry;
    explicit histogram(void* metric) : _metric(metric) {}
    void* _metric;  // prometheus::Histogram
};

/// Unregisters its collector when destroyed (or reset()). Movable, not copyable.
class collector_handle {
public:
    collector_handle() = default;
    ~collector_handle();
    collector_handle(collector_handle&& other) noexcept;
    collector_handle& operator=(collector_handle&& other) noexcept;
    collector_handle(const collector_handle&) = delete;
    collector_handle& operator=(const collector_handle&) = delete;
    void reset() noexcept;

private:
    friend class registry;
    collector_handle(registry* owner, std::uint64_t id) : _owner(owner), _id(id) {}
    registry* _owner = nullptr;
    std::uint64_t _id = 0;
};

class registry {
public:
    registry();
    ~registry();
    registry(const registry&) = delete;
    registry& operator=(const registry&) = delete;

    /// The series `name{labels}` of a counter family, created on first use. Throws
    /// ferry::error(permanent): "metrics.invalid_name" (name or label name breaks the rules
    /// above, field = the name), "metrics.conflict" (the family exists with another type, help
    /// or label names).
    [[nodiscard]] counter add_counter(const std::string& name, const std::string& help,
                                      const labels& series_labels = {});
    [[nodiscard]] gauge add_gauge(const std::string& name, const std::string& help,
                                  const labels& series_labels = {});
    /// `buckets`: strictly increasing upper bounds (+Inf is implied). The label name `le` is
    /// reserved.
    [[nodiscard]] histogram add_histogram(const std::string& name, const std::string& help,
                                          const std::vector<double>& buckets,
                                          const labels& series_labels = {});

    /// Removes one series (a partition that was revoked, a group that went away). The handle
    /// and its copies must not be used afterwards. Unknown handles are ignored.
    void remove(const counter& c);
    void remove(const gauge& g);
    void remove(const histogram& h);

    /// `fn` runs at the start of every serialize(), to refresh gauges whose value lives
    /// elsewhere (a queue length, an age). It runs on the scraping thread, under no lock of the
    /// registry except the collector list's: it may call add_*() and update metrics, but must not
    /// add or destroy collectors. Destroying the handle waits for a running call to finish.
    [[nodiscard]] collector_handle add_collector(std::function<void()> fn);

    /// Every family in the Prometheus text exposition format (0.0.4), collectors run first.
    [[nodiscard]] std::string serialize();

private:
    friend class collector_handle;
    void remove_collector(std::uint64_t id) noexcept;
    struct impl;
    std::unique_ptr<impl> _impl;
};

/// The registry the whole process shares (created on first use, never destroyed, so metrics
/// handles held by static objects stay valid until exit).
[[nodiscard]] registry& process_registry();

/// `options.metrics` or, when it is nullptr, process_registry().
[[nodiscard]] inline registry& or_process(registry* r) { return r ? *r : process_registry(); }

/// True when `name` follows the naming rules above for a family of this type.
/// `type` is "counter", "gauge" or "histogram". `why` (optional) receives the reason.
[[nodiscard]] bool valid_name(const std::string& name, const std::string& type,
                              std::string* why = nullptr);

}  // namespace ferry::metrics
