#include "ferry/retry/policy.hpp"

#include <algorithm>
#include <random>

namespace ferry::retry {

void validate(const retry_policy& p) {
    auto bad = [](const char* field, const char* why) {
        throw ferry::error(error_kind::permanent, "retry.policy",
                           std::string("retry policy: ") + field + ": " + why, field);
    };
    if (p.immediate_tries < 1) bad("immediate_tries", "must be at least 1");
    if (p.max_attempts < p.immediate_tries) bad("max_attempts", "must be >= immediate_tries");
    if (p.immediate_delay.count() < 0) bad("immediate_delay", "must not be negative");
    if (p.base_delay.count() <= 0) bad("base_delay", "must be positive");
    if (p.max_delay < p.base_delay) bad("max_delay", "must be >= base_delay");
}

std::string_view to_string(next_step s) noexcept {
    switch (s) {
        case next_step::retry_now:
            return "retry_now";
        case next_step::retry_later:
            return "retry_later";
        case next_step::dead_letter:
            return "dead_letter";
    }
    return "unknown";
}

std::chrono::milliseconds delay_ceiling(const retry_policy& p, int failed_attempts) {
    const int exp = std::max(0, failed_attempts - p.immediate_tries);
    long double ceiling = static_cast<long double>(p.base_delay.count());
    for (int i = 0; i < exp && ceiling < static_cast<long double>(p.max_delay.count()); ++i) {
        ceiling *= 2;
    }
    ceiling = std::min(ceiling, static_cast<long double>(p.max_delay.count()));
    return std::chrono::milliseconds(static_cast<long long>(ceiling));
}

decision after_failure(const retry_policy& p, int failed_attempts, double u) {
    if (failed_attempts >= p.max_attempts) return {next_step::dead_letter, {}};
    if (failed_attempts < p.immediate_tries) return {next_step::retry_now, p.immediate_delay};
    u = std::clamp(u, 0.0, 1.0);
    const auto ceiling = delay_ceiling(p, failed_attempts);
    const auto d = static_cast<long long>(static_cast<double>(ceiling.count()) * u);
    return {next_step::retry_later,
            std::chrono::milliseconds(std::min<long long>(d, ceiling.count()))};
}

double jitter_source() {
    thread_local std::mt19937_64 gen{std::random_device{}()};
    return std::uniform_real_distribution<double>(0.0, 1.0)(gen);
}

}  // namespace ferry::retry
