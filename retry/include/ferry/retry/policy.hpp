#pragma once
// Retry policy: a few immediate tries in the consumer's lane, then the retry table with
// exponential backoff and full jitter under a cap, then dead letter after max_attempts.
//
// Attempts count every handler call, immediate ones included. After the n-th failed attempt:
//   n >= max_attempts            -> dead letter;
//   n <  immediate_tries         -> try again at once (after immediate_delay), in the lane;
//   otherwise                    -> retry table, next attempt after a delay drawn uniformly
//                                   from [0, min(max_delay, base_delay * 2^(n - immediate_tries))]
//                                   ("full jitter": spreads a thundering herd evenly).
// Pure functions: thread-safe. The random draw is the caller's (`u` in [0, 1)) so tests can pin
// it; jitter_source gives a per-thread generator.

#include <chrono>
#include <string_view>

#include "ferry/common/error.hpp"

namespace ferry::retry {

struct retry_policy {
    /// Handler calls in the lane before a message goes to the retry table (>= 1).
    int immediate_tries = 3;
    /// Pause between immediate tries.
    std::chrono::milliseconds immediate_delay{20};
    /// First table delay ceiling; doubles per table attempt.
    std::chrono::milliseconds base_delay{1000};
    /// Cap of the delay ceiling.
    std::chrono::milliseconds max_delay{std::chrono::minutes(5)};
    /// Total attempts (immediate + table) before dead letter (>= immediate_tries).
    int max_attempts = 10;
};

/// Throws ferry::error(permanent, "retry.policy") naming the first bad field.
void validate(const retry_policy& p);

enum class next_step { retry_now, retry_later, dead_letter };

[[nodiscard]] std::string_view to_string(next_step s) noexcept;

struct decision {
    next_step step = next_step::retry_now;
    std::chrono::milliseconds delay{0};
};

/// The ceiling of the table delay after `failed_attempts` failures (no jitter).
[[nodiscard]] std::chrono::milliseconds delay_ceiling(const retry_policy& p, int failed_attempts);

/// What to do after `failed_attempts` (>= 1) failed handler calls; `u` in [0, 1) draws the
/// jitter.
[[nodiscard]] decision after_failure(const retry_policy& p, int failed_attempts, double u);

/// A uniform draw in [0, 1) from a thread-local generator.
[[nodiscard]] double jitter_source();

}  // namespace ferry::retry
