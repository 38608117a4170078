#pragma once
// The dedup store contract that every backend (Redis, PostgreSQL inbox) implements and that
// dedup/tests/dedup_conformance_itest.cpp checks for each of them.
//
// A consumer asks claim(group, message_id) before it applies a message:
//   fresh       - nobody applied it and nobody holds it: the caller now holds it (claim::token)
//                 and must end with complete() (effect applied) or release() (effect not applied);
//   in_progress - another owner holds it right now: do not apply, ask again later;
//   done        - it was applied (within the store's memory window): absorb the duplicate.
// complete() and release() are compare-and-set on the owner token: they do nothing, and say so,
// when the claim is no longer the caller's (lease expired and someone else claimed it).
//
// Thread-safety: implementations are safe to call from several threads at once.

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/common/error.hpp"  // store calls throw ferry::error

namespace ferry::dedup {

enum class claim_status { fresh, in_progress, done };

[[nodiscard]] std::string_view to_string(claim_status s) noexcept;

/// The outcome of one claim. `token` identifies the owner when status is fresh.
struct claim {
    claim_status status = claim_status::fresh;
    std::string group;
    std::string message_id;
    std::string token;
};

enum class complete_status {
    completed,   // the caller's claim became "done"
    lease_lost,  // the claim was no longer the caller's; nothing changed
};

class store {
public:
    virtual ~store() = default;

    /// Claims one message for `lease`. Throws ferry::error (retryable) when the store is
    /// unreachable.
    [[nodiscard]] virtual claim try_claim(std::string_view group, std::string_view message_id,
                                          std::chrono::milliseconds lease) = 0;
    /// Claims several messages in one round trip where the backend can (Redis pipelines).
    [[nodiscard]] virtual std::vector<claim> try_claim_batch(
        std::string_view group, const std::vector<std::string>& message_ids,
        std::chrono::milliseconds lease);
    /// Marks a claimed message done (compare-and-set on the token).
    [[nodiscard]] virtual complete_status complete(const claim& c) = 0;
    /// Gives a claim back after a failed effect, so another attempt may claim it at once.
    /// Returns false when the claim was no longer the caller's.
    virtual bool release(const claim& c) = 0;
    /// True when a claim expires by itself after its lease (Redis); false when it lasts as long
    /// as its owner (the inbox transaction).
    [[nodiscard]] virtual bool lease_expires() const noexcept = 0;
};

}  // namespace ferry::dedup
