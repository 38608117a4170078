// The prometheus-cpp edge: the only file that sees prometheus-cpp types. Its exceptions
// (std::invalid_argument for a bad label name or a family clash) become ferry::error here.
#include "ferry/common/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <set>
#include <sstream>
#include <variant>

#include "ferry/common/error.hpp"

namespace ferry::metrics {
namespace {

using counter_family = prometheus::Family<prometheus::Counter>;
using gauge_family = prometheus::Family<prometheus::Gauge>;
using histogram_family = prometheus::Family<prometheus::Histogram>;

[[noreturn]] void invalid(const std::string& name, const std::string& why) {
    throw ferry::error(error_kind::permanent, "metrics.invalid_name", "metric " + name + ": " + why,
                       name);
}

[[noreturn]] void conflict(const std::string& name, const std::string& why) {
    throw ferry::error(error_kind::permanent, "metrics.conflict",
                       "metric " + name + " is already registered " + why, name);
}

bool is_lower_snake(const std::string& s, bool allow_leading_digit) {
    if (s.empty()) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        const bool ok = (c >= 'a' && c <= 'z') || c == '_' ||
                        (c >= '0' && c <= '9' && (i > 0 || allow_leading_digit));
        if (!ok) return false;
    }
    return true;
}

bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix.data(), suffix.size()) == 0;
}

// Units Prometheus wants in base form: seconds, bytes, ratios.
const std::set<std::string>& non_base_units() {
    static const std::set<std::string> units{
        "ms",   "millis",    "milliseconds", "us",        "micros", "microseconds",
        "ns",   "nanos",     "nanoseconds",  "minutes",   "hours",  "days",
        "kb",   "kib",       "mb",           "mib",       "gb",     "gib",
        "bits", "kilobytes", "megabytes",    "gigabytes", "percent"};
    return units;
}

void check_label_names(const std::string& metric, const labels& l, bool histogram) {
    for (const auto& [k, v] : l) {
        (void)v;
        if (k.empty() || !(std::isalpha(static_cast<unsigned char>(k[0])) || k[0] == '_') ||
            !std::all_of(k.begin(), k.end(),
                         [](unsigned char c) { return std::isalnum(c) || c == '_'; })) {
            invalid(metric, "label name \"" + k + "\" must match [a-zA-Z_][a-zA-Z0-9_]*");
        }
        if (k.rfind("__", 0) == 0) invalid(metric, "label name \"" + k + "\" starts with __");
        if (histogram && k == "le") invalid(metric, "label name \"le\" is reserved in histograms");
    }
}

// prometheus-cpp 1.0 writes HELP text as given; the text format wants `\` and newlines escaped
// (a raw newline would end the comment and break the page). Found by common_metrics_test.
std::string escape_help(const std::string& help) {
    std::string out;
    out.reserve(help.size());
    for (char c : help) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

std::set<std::string> names_of(const labels& l) {
    std::set<std::string> out;
    for (const auto& [k, v] : l) out.insert(k);
    return out;
}

}  // namespace

bool valid_name(const std::string& name, const std::string& type, std::string* why) {
    auto fail = [&](std::string reason) {
        if (why) *why = std::move(reason);
        return false;
    };
    if (!is_lower_snake(name, false) || name.front() == '_') {
        return fail("names are lower snake case: [a-z][a-z0-9_]*");
    }
    if (type == "counter" && (!ends_with(name, "_total") || name == "_total")) {
        return fail("a counter's name ends in _total");
    }
    if (type != "counter" && ends_with(name, "_total")) {
        return fail("only counters end in _total");
    }
    if (type == "histogram" &&
        (ends_with(name, "_bucket") || ends_with(name, "_sum") || ends_with(name, "_count"))) {
        return fail("a histogram's name must not end in _bucket, _sum or _count");
    }
    std::size_t start = 0;
    while (start <= name.size()) {
        const auto end = std::min(name.find('_', start), name.size());
        const auto part = name.substr(start, end - start);
        if (non_base_units().count(part)) {
            return fail("unit \"" + part + "\": use base units (_seconds, _bytes, _ratio)");
        }
        start = end + 1;
    }
    if (type != "counter" && type != "gauge" && type != "histogram") {
        return fail("unknown metric type " + type);
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
void counter::inc(double amount) const noexcept {
    if (!(amount >= 0)) return;  // negative or NaN: a counter never goes down
    static_cast<prometheus::Counter*>(_metric)->Increment(amount);
}
double counter::value() const noexcept {
    return static_cast<prometheus::Counter*>(_metric)->Value();
}
void gauge::set(double value) const noexcept {
    static_cast<prometheus::Gauge*>(_metric)->Set(value);
}
void gauge::inc(double amount) const noexcept {
    static_cast<prometheus::Gauge*>(_metric)->Increment(amount);
}
void gauge::dec(double amount) const noexcept {
    static_cast<prometheus::Gauge*>(_metric)->Decrement(amount);
}
double gauge::value() const noexcept { return static_cast<prometheus::Gauge*>(_metric)->Value(); }
void histogram::observe(double value) const noexcept {
    static_cast<prometheus::Histogram*>(_metric)->Observe(value);
}

// ---------------------------------------------------------------------------------------------
struct registry::impl {
    struct family_info {
        std::string type;
        std::string help;
        std::set<std::string> label_names;
        std::vector<double> buckets;
        std::variant<counter_family*, gauge_family*, histogram_family*> family;
    };

    std::shared_ptr<prometheus::Registry> reg =
        std::make_shared<prometheus::Registry>(prometheus::Registry::InsertBehavior::Throw);
    std::mutex mu;  // families and owner
    std::map<std::string, family_info> families;
    std::map<const void*, std::string> owner;  // series -> family name, for remove()

    std::mutex collectors_mu;
    std::map<std::uint64_t, std::function<void()>> collectors;
    std::uint64_t next_collector = 1;

    /// Finds or creates the family; checks that a re-registration matches the first one.
    family_info& family(const std::string& name, const std::string& type, const std::string& help,
                        const labels& l, const std::vector<double>& buckets) {
        std::string why;
        if (!valid_name(name, type, &why)) invalid(name, why);
        if (help.empty()) invalid(name, "help text must not be empty");
        check_label_names(name, l, type == "histogram");
        auto it = families.find(name);
        if (it != families.end()) {
            const auto& f = it->second;
            if (f.type != type) conflict(name, "as a " + f.type + ", not a " + type);
            if (f.help != help) conflict(name, "with another help text (\"" + f.help + "\")");
            if (f.label_names != names_of(l)) {
                std::string first;
                for (const auto& n : f.label_names) first += (first.empty() ? "" : ",") + n;
                conflict(name, "with the label names {" + first + "}");
            }
            if (f.buckets != buckets) conflict(name, "with other histogram buckets");
            return it->second;
        }
        family_info f{type, help, names_of(l), buckets, static_cast<counter_family*>(nullptr)};
        try {
            if (type == "counter") {
                f.family =
                    &prometheus::BuildCounter().Name(name).Help(escape_help(help)).Register(*reg);
            } else if (type == "gauge") {
                f.family =
                    &prometheus::BuildGauge().Name(name).Help(escape_help(help)).Register(*reg);
            } else {
                f.family =
                    &prometheus::BuildHistogram().Name(name).Help(escape_help(help)).Register(*reg);
            }
        } catch (const std::invalid_argument& e) {
            invalid(name, e.what());
        }
        return families.emplace(name, std::move(f)).first->second;
    }

    template <typename Metric, typename... Args>
    Metric* add(prometheus::Family<Metric>* fam, const std::string& name, const labels& l,
                Args&&... args) {
        try {
            auto* m =
                &fam->Add(prometheus::Labels(l.begin(), l.end()), std::forward<Args>(args)...);
            owner[m] = name;
            return m;
        } catch (const std::invalid_argument& e) {
            invalid(name, e.what());
        }
    }

    template <typename Metric>
    void remove(const void* metric) {
        std::lock_guard lock(mu);
        const auto o = owner.find(metric);
        if (o == owner.end()) return;
        auto* fam = std::get<prometheus::Family<Metric>*>(families.at(o->second).family);
        fam->Remove(static_cast<Metric*>(const_cast<void*>(metric)));
        owner.erase(o);
    }
};

registry::registry() : _impl(std::make_unique<impl>()) {}
registry::~registry() = default;

counter registry::add_counter(const std::string& name, const std::string& help,
                              const labels& series_labels) {
    std::lock_guard lock(_impl->mu);
    auto& f = _impl->family(name, "counter", help, series_labels, {});
    return counter(_impl->add(std::get<counter_family*>(f.family), name, series_labels));
}

gauge registry::add_gauge(const std::string& name, const std::string& help,
                          const labels& series_labels) {
    std::lock_guard lock(_impl->mu);
    auto& f = _impl->family(name, "gauge", help, series_labels, {});
    return gauge(_impl->add(std::get<gauge_family*>(f.family), name, series_labels));
}

histogram registry::add_histogram(const std::string& name, const std::string& help,
                                  const std::vector<double>& buckets, const labels& series_labels) {
    if (buckets.empty()) invalid(name, "a histogram needs at least one bucket");
    for (std::size_t i = 0; i < buckets.size(); ++i) {
        if (!std::isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
            invalid(name, "histogram buckets must be finite and strictly increasing");
        }
    }
    std::lock_guard lock(_impl->mu);
    auto& f = _impl->family(name, "histogram", help, series_labels, buckets);
    return histogram(_impl->add(std::get<histogram_family*>(f.family), name, series_labels,
                                prometheus::Histogram::BucketBoundaries(buckets)));
}

void registry::remove(const counter& c) { _impl->remove<prometheus::Counter>(c._metric); }
void registry::remove(const gauge& g) { _impl->remove<prometheus::Gauge>(g._metric); }
void registry::remove(const histogram& h) { _impl->remove<prometheus::Histogram>(h._metric); }

collector_handle registry::add_collector(std::function<void()> fn) {
    std::lock_guard lock(_impl->collectors_mu);
    const auto id = _impl->next_collector++;
    _impl->collectors.emplace(id, std::move(fn));
    return collector_handle(this, id);
}

void registry::remove_collector(std::uint64_t id) noexcept {
    std::lock_guard lock(_impl->collectors_mu);
    _impl->collectors.erase(id);
}

std::string registry::serialize() {
    {
        std::lock_guard lock(_impl->collectors_mu);
        for (auto& [id, fn] : _impl->collectors) {
            (void)id;
            try {
                fn();
            } catch (...) {
                // A collector that cannot read its source leaves its gauges at the last value;
                // one broken source must not take /metrics down for everything else.
            }
        }
    }
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, _impl->reg->Collect());
    return out.str();
}

// ---------------------------------------------------------------------------------------------
collector_handle::~collector_handle() { reset(); }

collector_handle::collector_handle(collector_handle&& other) noexcept
    : _owner(other._owner), _id(other._id) {
    other._owner = nullptr;
}

collector_handle& collector_handle::operator=(collector_handle&& other) noexcept {
    if (this != &other) {
        reset();
        _owner = other._owner;
        _id = other._id;
        other._owner = nullptr;
    }
    return *this;
}

void collector_handle::reset() noexcept {
    if (_owner) _owner->remove_collector(_id);
    _owner = nullptr;
}

registry& process_registry() {
    static registry* r = new registry();  // never destroyed: see the header
    return *r;
}

}  // namespace ferry::metrics
