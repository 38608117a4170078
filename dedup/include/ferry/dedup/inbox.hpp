#pragma once
// PostgreSQL inbox: the authoritative dedup when the effect lives in PostgreSQL.
//
// The consumer runtime calls inbox::insert() inside the effect's transaction, BEFORE the handler
// runs the effect: the INSERT ... ON CONFLICT DO NOTHING either adds (group, message_id) or finds
// it already there (`duplicate`: the caller rolls back without running the effect). Inserting
// first means a concurrent second delivery blocks on the primary key until the first commits
// (then sees the conflict) or rolls back (then applies it): never two effects. lock_timeout
// bounds that wait; a timeout comes back as `in_progress`.
//
// inbox_store adapts the same table to the generic dedup::store contract (one open transaction
// per claim, on its own connection), so it passes the conformance suite and can serve callers
// that do not hand over a transaction.
//
// Thread-safety: insert() uses only the caller's transaction. inbox_store may be called from any
// thread; each claim holds one pooled connection until complete() or release().

#include <chrono>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/dedup/store.hpp"

namespace ferry::dedup {

enum class inbox_result { inserted, duplicate, in_progress };

class inbox {
public:
    /// `schema` holds the migrated tables (ferryctl migrate).
    explicit inbox(std::string schema);

    /// INSERT (group, message_id) in `tx`. `inserted`: apply the effect in `tx` and commit.
    /// `duplicate`: already applied; roll back. `in_progress`: another transaction holds the row
    /// longer than `lock_wait` (the transaction is then aborted: roll back, try later).
    /// Throws ferry::error for database errors (translated, with retry kinds).
    [[nodiscard]] inbox_result insert(
        pqxx::work& tx, std::string_view group, std::string_view message_id,
        std::chrono::milliseconds lock_wait = std::chrono::milliseconds(0)) const;
    /// Set-based insert for a batch of messages applied in one transaction (one statement).
    /// Returns, per position of `message_ids` (canonical UUID text), true when this call inserted
    /// the row: apply that message's effect in `tx`. False: already applied (or an earlier
    /// position of the same id in this batch). A row held by another open transaction longer
    /// than `lock_wait` throws ferry::error(retryable, "dedup.inbox_in_progress"); the
    /// transaction is then aborted (the caller falls back to per-message transactions).
    [[nodiscard]] std::vector<bool> insert_batch(
        pqxx::work& tx, std::string_view group, const std::vector<std::string>& message_ids,
        std::chrono::milliseconds lock_wait = std::chrono::milliseconds(0)) const;
    /// Deletes the rows of `message_ids` inserted by this transaction for messages whose effect
    /// will not be part of it (a batch cut short by its time bound).
    void remove_batch(pqxx::work& tx, std::string_view group,
                      const std::vector<std::string>& message_ids) const;
    /// True when (group, message_id) is recorded as applied (committed).
    [[nodiscard]] bool contains(pqxx::transaction_base& tx, std::string_view group,
                                std::string_view message_id) const;
    /// Deletes rows processed before now() - older_than, at most `limit`; returns the count.
    [[nodiscard]] long long prune(pqxx::transaction_base& tx, std::chrono::milliseconds older_than,
                                  long long limit = 10000) const;

    [[nodiscard]] const std::string& schema() const { return _schema; }

private:
    std::string _schema;
    std::string _table;  // quoted "schema".inbox
};

struct inbox_store_options {
    std::string dsn;
    std::string schema = "ferry";
    /// How long a claim waits for another owner's uncommitted row before `in_progress`.
    std::chrono::milliseconds lock_wait{200};
    std::chrono::milliseconds connect_timeout{5000};
};

class inbox_store final : public store {
public:
    explicit inbox_store(inbox_store_options options);
    ~inbox_store() override;
    inbox_store(const inbox_store&) = delete;
    inbox_store& operator=(const inbox_store&) = delete;

    /// The lease argument is ignored: the claim lasts as long as its transaction.
    [[nodiscard]] claim try_claim(std::string_view group, std::string_view message_id,
                                  std::chrono::milliseconds lease) override;
    /// Commits the claim's transaction (the effect, if the caller added one, commits with it).
    [[nodiscard]] complete_status complete(const claim& c) override;
    /// Rolls the claim's transaction back.
    bool release(const claim& c) override;
    [[nodiscard]] bool lease_expires() const noexcept override { return false; }

private:
    struct impl;
    std::unique_ptr<impl> _impl;
};

}  // namespace ferry::dedup
