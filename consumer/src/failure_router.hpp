#pragma once
// The failure router (private): one pure decision, shared by the live path (a lane) and the
// retry path (the retry worker), of what to do with a message whose attempt did not apply.
// No I/O, no clocks, no string comparisons: classify() turns the attempt's outcome into a
// failure, route_failure() returns the route and the dead-letter reason, and the caller carries
// it out.
//
//   revoked      the work is no longer ours (partition revoked / stopping; retry-row claim
//                lost): abandon it, the next owner redelivers it. Nothing is written.
//   in_progress  another consumer holds the message (its inbox transaction is open): not a
//                failure and not an attempt; wait (live) or look again shortly (retry path).
//   permanent    ferry::error(permanent): dead letter now.
//   retryable    any other failure: retry::after_failure decides retry now (in the lane; from
//                the retry table as a short reschedule), retry later (table), or dead letter
//                once max_attempts is reached.
// Thread-safety: pure functions.

#include <chrono>
#include <string>

#include "ferry/common/error.hpp"
#include "ferry/retry/policy.hpp"

namespace ferry::consumer::detail {

enum class failure { retryable, permanent, in_progress, revoked };

/// What one attempt (a handler call with its transaction) came to.
///   in_progress: another consumer holds the message's inbox row (its transaction is open);
///   lost_claim:  the retry row was claimed by another worker (ours expired).
enum class attempt_result { applied, duplicate, failed, in_progress, lost_claim };

struct attempt_outcome {
    attempt_result result = attempt_result::applied;
    error_kind kind = error_kind::retryable;  // failed: the kind of the error
    std::string code;                         // failed: the error code (stored, never compared)
    std::string error;                        // failed / in_progress: the message
};

/// The failure of an attempt that did not apply (result is neither applied nor duplicate), for
/// both paths. `ours`: the work still belongs to this instance (live: partition not revoked and
/// not stopping; retry: the row's claim is held). Decided on the result and the error kind,
/// never on the code text.
[[nodiscard]] inline failure classify(const attempt_outcome& r, bool ours) {
    if (!ours || r.result == attempt_result::lost_claim) return failure::revoked;
    if (r.result == attempt_result::in_progress) return failure::in_progress;
    return r.kind == error_kind::permanent ? failure::permanent : failure::retryable;
}

enum class path { live, retry_table };

enum class route {
    abandon,      // leave it: not ours any more (no record, offset not completed)
    wait,         // in progress elsewhere: try the same attempt again after `delay`
    retry_now,    // immediate retry (live: in the lane; retry table: reschedule after `delay`)
    retry_later,  // into / back into the retry table, next attempt after `delay`
    dead_letter,  // record a dead letter with `reason`
};

struct routed {
    route action = route::abandon;
    std::chrono::milliseconds delay{0};
    bool counts_attempt = true;  // false for wait/abandon: the attempt number does not move
    std::string reason;          // dead_letter only
};

/// Where a failed attempt goes. `attempt` is the number of the attempt that failed (>= 1),
/// `error` its message (for the dead-letter reason), `u` the jitter draw in [0, 1).
[[nodiscard]] inline routed route_failure(const retry::retry_policy& policy, path where, failure f,
                                          int attempt, const std::string& error, double u) {
    using namespace std::chrono_literals;
    routed r;
    switch (f) {
        case failure::revoked:
            r.action = route::abandon;
            r.counts_attempt = false;
            return r;
        case failure::in_progress:
            r.action = route::wait;
            r.counts_attempt = false;
            r.delay = where == path::live ? 100ms : 200ms;
            return r;
        case failure::permanent:
            r.action = route::dead_letter;
            r.reason = "handler: permanent: " + error;
            return r;
        case failure::retryable:
            break;
    }
    const auto d = retry::after_failure(policy, attempt, u);
    switch (d.step) {
        case retry::next_step::retry_now:
            r.action = route::retry_now;
            r.delay = policy.immediate_delay;
            return r;
        case retry::next_step::retry_later:
            r.action = route::retry_later;
            r.delay = d.delay;
            return r;
        case retry::next_step::dead_letter:
            r.action = route::dead_letter;
            r.reason = "retries exhausted after " + std::to_string(attempt) + " attempts: " + error;
            return r;
    }
    return r;
}

}  // namespace ferry::consumer::detail
