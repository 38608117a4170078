// Durations and byte sizes as written in configuration files.
//
// Both parsers are strict on purpose: a value that is only half understood ("5 sec", "1.5.0s",
// "10mb") is rejected rather than guessed at, and arithmetic overflow is a parse failure, not
// a wrapped number.

#include "units.hpp"

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>

#include "ferry/config/config.hpp"

namespace ferry::config {
namespace {

constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// Reads a run of digits at `pos`. nullopt when there is none or it does not fit in uint64.
std::optional<std::uint64_t> read_digits(std::string_view text, std::size_t& pos) {
    const auto start = pos;
    std::uint64_t value = 0;
    while (pos < text.size() && is_digit(text[pos])) {
        const auto digit = static_cast<std::uint64_t>(text[pos] - '0');
        if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
        ++pos;
    }
    if (pos == start) return std::nullopt;
    return value;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
    // Longest suffix first: "ms" must win over "s" and "m".
    static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 4> units = {
        {{"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}}};

    std::size_t pos = 0;
    const auto whole = read_digits(text, pos);
    if (!whole) return std::nullopt;

    // Fraction kept as numerator / 10^digits so "1.5s" is exact; more than 9 digits is noise.
    std::uint64_t frac = 0;
    std::uint64_t frac_scale = 1;
    if (pos < text.size() && text[pos] == '.') {
        ++pos;
        const auto start = pos;
        while (pos < text.size() && is_digit(text[pos])) {
            if (pos - start >= 9) return std::nullopt;
            frac = frac * 10 + static_cast<std::uint64_t>(text[pos] - '0');
            frac_scale *= 10;
            ++pos;
        }
        if (pos == start) return std::nullopt;
    }

    const auto suffix = text.substr(pos);
    for (const auto& [name, unit_ms] : units) {
        if (suffix != name) continue;
        constexpr auto max_ms =
            static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
        if (*whole > max_ms / unit_ms) return std::nullopt;
        // frac < 10^9 and unit_ms <= 3.6e6, so the product fits comfortably.
        const auto frac_units = frac * unit_ms;
        // Sub-millisecond precision cannot be represented; refuse rather than round silently.
        if (frac_units % frac_scale != 0) return std::nullopt;
        const auto total = *whole * unit_ms + frac_units / frac_scale;
        if (total > max_ms) return std::nullopt;
        return std::chrono::milliseconds(static_cast<std::int64_t>(total));
    }
    return std::nullopt;
}

std::optional<std::size_t> parse_size(std::string_view text) {
    static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 8> units = {
        {{"", 1},
         {"B", 1},
         {"KiB", 1024ULL},
         {"MiB", 1024ULL * 1024},
         {"GiB", 1024ULL * 1024 * 1024},
         {"KB", 1000ULL},
         {"MB", 1000ULL * 1000},
         {"GB", 1000ULL * 1000 * 1000}}};

    std::size_t pos = 0;
    const auto number = read_digits(text, pos);
    if (!number) return std::nullopt;
    auto suffix = text.substr(pos);
    // "512 KiB" reads naturally; a space before nothing ("512 ") does not.
    const auto unit_start = suffix.find_first_not_of(' ');
    if (unit_start == std::string_view::npos) {
        if (!suffix.empty()) return std::nullopt;
    } else {
        suffix.remove_prefix(unit_start);
    }
    for (const auto& [name, multiplier] : units) {
        if (suffix != name) continue;
        if (*number > std::numeric_limits<std::size_t>::max() / multiplier) return std::nullopt;
        return static_cast<std::size_t>(*number * multiplier);
    }
    return std::nullopt;
}

namespace detail {

std::string format_duration(std::chrono::milliseconds d) {
    const auto ms = d.count();
    if (ms != 0) {
        if (ms % (60 * 60 * 1000) == 0) return std::to_string(ms / (60 * 60 * 1000)) + "h";
        if (ms % (60 * 1000) == 0) return std::to_string(ms / (60 * 1000)) + "m";
        if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    }
    return std::to_string(ms) + "ms";
}

std::string format_size(std::size_t bytes) {
    constexpr std::size_t kib = 1024;
    if (bytes != 0) {
        if (bytes % (kib * kib * kib) == 0)
            return std::to_string(bytes / (kib * kib * kib)) + "GiB";
        if (bytes % (kib * kib) == 0) return std::to_string(bytes / (kib * kib)) + "MiB";
        if (bytes % kib == 0) return std::to_string(bytes / kib) + "KiB";
    }
    return std::to_string(bytes);
}

}  // namespace detail
}  // namespace ferry::config
