#pragma once
// Private: the marker. One transaction per batch, fenced by the lease row: it locks the row
// FOR KEY SHARE, checks owner, epoch and expiry on the database clock (marks of one group share
// the lock; a change of owner or epoch is a key update since migration 0107, so a steal waits
// for the marks in flight and a mark cannot interleave with it), then moves the batch's rows out of
// the outbox: published rows to the ledger (with their partition and offset; found by the address
// the claim read, and only while that address still holds the claimed id), parked rows to `parked`,
// expired rows to `expired`.

#include <cstdint>
#include <pqxx/pqxx>
#include <string>

#include "source.hpp"

namespace ferry::relay::detail {

/// The fence every marking transaction starts with: locks the lease row of `group` (FOR KEY
/// SHARE; see migration 0107) and returns true when it is `instance_id`'s at `epoch` and has not
/// expired, by the database clock. The caller aborts on false.
bool lease_fence(pqxx::transaction_base& tx, const std::string& quoted_schema,
                 const std::string& instance_id, std::int64_t epoch, int group);

/// `quoted_schema` is validated and quoted. Returns fenced (and rolls back) when the lease is
/// no longer `instance_id`'s at `request.epoch`. Throws on a database error. Without
/// `keep_payloads` (relay.ledger_payloads: false) the ledger row keeps no payloads.
mark_outcome mark_batch(pqxx::connection& conn, const std::string& quoted_schema,
                        const std::string& instance_id, const mark_request& request,
                        bool keep_payloads = true);

/// The outbox row's columns that `expired` and `parked` copy, in their order.
inline constexpr const char* k_copied_columns =
    "id, message_id, topic, key, payload, headers, created_at, available_at, expires_at";

/// `INSERT INTO expired`'s conflict clause: a row expired again keeps one copy, newly dated.
inline constexpr const char* k_expired_conflict =
    " ON CONFLICT (id) DO UPDATE SET expired_at = excluded.expired_at";

/// `INSERT INTO parked`'s conflict clause: a row parked again (after a retry) keeps one copy with
/// the newest reason and one more attempt.
inline std::string parked_conflict(const std::string& quoted_schema) {
    return " ON CONFLICT (id) DO UPDATE SET reason = excluded.reason, error_code = "
           "excluded.error_code, parked_at = excluded.parked_at, attempts = " +
           quoted_schema + ".parked.attempts + 1";
}

}  // namespace ferry::relay::detail
