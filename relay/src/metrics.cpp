#include "ferry/relay/metrics.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace ferry::relay {
namespace {

std::string number(double v) {
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    if (std::isnan(v)) return "NaN";
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
    return std::string(buf, r.ptr);
}

std::string series(const std::string& name, const std::string& labels) {
    return labels.empty() ? name : name + "{" + labels + "}";
}

std::string with_label(const std::string& labels, const std::string& extra) {
    return labels.empty() ? extra : labels + "," + extra;
}

}  // namespace

histogram::histogram(std::vector<double> bounds)
    : _bounds(std::move(bounds)),
      _buckets(std::make_unique<std::atomic<std::uint64_t>[]>(_bounds.size())) {
    for (std::size_t i = 0; i < _bounds.size(); ++i) _buckets[i].store(0);
}

void histogram::observe(double v) noexcept {
    for (std::size_t i = 0; i < _bounds.size(); ++i) {
        if (v <= _bounds[i]) {
            _buckets[i].fetch_add(1, std::memory_order_relaxed);
            break;
        }
    }
    _count.fetch_add(1, std::memory_order_relaxed);
    _sum.fetch_add(v, std::memory_order_relaxed);
}

std::uint64_t histogram::cumulative(std::size_t i) const noexcept {
    std::uint64_t total = 0;
    for (std::size_t j = 0; j <= i && j < _bounds.size(); ++j) {
        total += _buckets[j].load(std::memory_order_relaxed);
    }
    return total;
}

registry::family& registry::family_of(const std::string& name, const std::string& type,
                                      const std::string& help) {
    auto [it, inserted] = _families.try_emplace(name);
    if (inserted) {
        it->second.type = type;
        it->second.help = help;
    } else if (it->second.type != type) {
        throw std::logic_error("metric " + name + " registered as " + it->second.type + " and " +
                               type);
    }
    return it->second;
}

counter& registry::get_counter(const std::string& name, const std::string& help,
                               const std::string& labels) {
    std::lock_guard lock(_mutex);
    auto& slot = family_of(name, "counter", help).counters[labels];
    if (!slot) slot = std::make_unique<counter>();
    return *slot;
}

gauge& registry::get_gauge(const std::string& name, const std::string& help,
                           const std::string& labels) {
    std::lock_guard lock(_mutex);
    auto& slot = family_of(name, "gauge", help).gauges[labels];
    if (!slot) slot = std::make_unique<gauge>();
    return *slot;
}

histogram& registry::get_histogram(const std::string& name, const std::string& help,
                                   const std::vector<double>& bounds, const std::string& labels) {
    std::lock_guard lock(_mutex);
    auto& slot = family_of(name, "histogram", help).histograms[labels];
    if (!slot) slot = std::make_unique<histogram>(bounds);
    return *slot;
}

void registry::add_collector(std::function<void(registry&)> fn) {
    std::lock_guard lock(_collectors_mutex);
    _collectors.push_back(std::move(fn));
}

std::string registry::render() {
    {
        std::lock_guard collectors(_collectors_mutex);
        for (const auto& fn : _collectors) fn(*this);
    }
    std::lock_guard lock(_mutex);
    std::string out;
    for (const auto& [name, f] : _families) {
        out += "# HELP " + name + " " + f.help + "\n";
        out += "# TYPE " + name + " " + f.type + "\n";
        for (const auto& [labels, c] : f.counters) {
            out += series(name, labels) + " " + std::to_string(c->value()) + "\n";
        }
        for (const auto& [labels, g] : f.gauges) {
            out += series(name, labels) + " " + number(g->value()) + "\n";
        }
        for (const auto& [labels, h] : f.histograms) {
            for (std::size_t i = 0; i < h->bounds().size(); ++i) {
                out += series(name + "_bucket",
                              with_label(labels, "le=\"" + number(h->bounds()[i]) + "\"")) +
                       " " + std::to_string(h->cumulative(i)) + "\n";
            }
            out += series(name + "_bucket", with_label(labels, "le=\"+Inf\"")) + " " +
                   std::to_string(h->count()) + "\n";
            out += series(name + "_sum", labels) + " " + number(h->sum()) + "\n";
            out += series(name + "_count", labels) + " " + std::to_string(h->count()) + "\n";
        }
    }
    return out;
}

}  // namespace ferry::relay
