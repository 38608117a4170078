#pragma once
// The consumer's durable failure records: the retry table and the dead-letter table
// (consumer/sql/0003_consumer.sql). Every function runs in the caller's transaction, so a record
// commits together with whatever else the caller does (the effect, the inbox row, the delete of
// the retry row it replaces).
//
// Ordered retry: on an ordered topic, a key with a row in retry, or an unreplayed dead letter
// that blocks it, holds its later messages: park_if_blocked() stores them as waiting rows
// (attempts 0), and claim_due() only hands out the head row of each key, in (partition, offset)
// order.
// Multi-instance safety: claim_due() takes rows with FOR UPDATE SKIP LOCKED and stamps
// claimed_by / claim_expires_at; remove / reschedule / move_to_dead_letter only act while the
// caller still holds the claim (they return false otherwise).
//
// Thread-safety: stateless apart from the schema and group names; use one transaction per thread.

#include <chrono>
#include <cstdint>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <utility>
#include <vector>

#include "ferry/common/error.hpp"  // every call throws ferry::error for database errors

namespace ferry::retry {

struct header {
    std::string name;
    std::optional<std::string> value;
};

/// A consumed record as stored in retry and dead_letter.
struct stored_message {
    std::string topic;
    std::int32_t partition = 0;
    std::int64_t offset = 0;
    std::optional<std::string> key;
    std::string message_id;  // empty for a malformed envelope
    std::string payload;
    std::vector<header> headers;
    bool ordered = true;
};

struct retry_row {
    long long id = 0;
    std::string group;
    stored_message message;
    int attempts = 0;
    std::string last_error;
};

class retry_table {
public:
    retry_table(const std::string& schema, std::string group);

    /// Stores a failed message for a later attempt. `attempts` so far, next try after `delay`.
    /// Returns false when the message (group, message_id) was already there.
    bool schedule(pqxx::transaction_base& tx, const stored_message& m, int attempts,
                  std::chrono::milliseconds delay, const std::string& error) const;
    /// When (topic, key) is blocked (ordered), stores `m` as waiting behind it and returns true;
    /// returns false (nothing written) when the key is free.
    [[nodiscard]] bool park_if_blocked(pqxx::transaction_base& tx, const stored_message& m) const;
    /// (topic, key) pairs of this group blocked by a retry row or a blocking dead letter.
    [[nodiscard]] std::vector<std::pair<std::string, std::optional<std::string>>> blocked_keys(
        pqxx::transaction_base& tx) const;
    /// Claims up to `limit` due head-of-key rows for `owner` for `claim_ttl`.
    [[nodiscard]] std::vector<retry_row> claim_due(pqxx::transaction_base& tx,
                                                   const std::string& owner, int limit,
                                                   std::chrono::milliseconds claim_ttl) const;
    /// Claims the head row of one key if it is due and unclaimed: the retry worker drains a
    /// key's waiting rows one after another once its head succeeded, instead of one row per
    /// key per claim round.
    [[nodiscard]] std::optional<retry_row> claim_key_head(
        pqxx::transaction_base& tx, const std::string& owner, const std::string& topic,
        const std::string& key, std::chrono::milliseconds claim_ttl) const;
    /// Deletes a claimed row (its message was applied or absorbed). False if the claim was lost.
    [[nodiscard]] bool remove(pqxx::transaction_base& tx, long long id,
                              const std::string& owner) const;
    /// Records another failed attempt and releases the claim.
    [[nodiscard]] bool reschedule(pqxx::transaction_base& tx, long long id,
                                  const std::string& owner, int attempts,
                                  std::chrono::milliseconds delay, const std::string& error) const;
    /// Moves a claimed row to dead_letter with `reason`.
    [[nodiscard]] bool move_to_dead_letter(pqxx::transaction_base& tx, long long id,
                                           const std::string& owner, int attempts,
                                           const std::string& reason, const std::string& code,
                                           bool blocks_key) const;
    /// Rows of this group (waiting ones included).
    [[nodiscard]] long long count(pqxx::transaction_base& tx) const;

private:
    std::string _schema;  // quoted
    std::string _group;
};

struct dead_letter_row {
    long long id = 0;
    std::string group;
    stored_message message;
    std::string reason;
    std::string error_code;
    int attempts = 0;
    std::string first_failed_at;  // ISO 8601 UTC
    std::string last_failed_at;
    bool replayable = true;
    bool blocks_key = false;
    std::optional<std::string> replayed_at;
};

/// Filters for listing, replaying and purging dead letters; empty fields match everything.
struct dead_letter_filter {
    std::optional<long long> id;
    std::string group;
    std::string topic;
    std::optional<std::string> key;
    std::string since;  // timestamptz text: dead_at >= since
    std::string until;  // dead_at < until
    bool include_replayed = false;
    long long limit = 100;
};

class dead_letters {
public:
    explicit dead_letters(const std::string& schema);

    /// Records a dead letter directly (poison input, permanent handler error).
    void add(pqxx::transaction_base& tx, const std::string& group, const stored_message& m,
             const std::string& reason, const std::string& code, int attempts, bool replayable,
             bool blocks_key) const;
    [[nodiscard]] std::vector<dead_letter_row> list(pqxx::transaction_base& tx,
                                                    const dead_letter_filter& f) const;
    [[nodiscard]] long long count(pqxx::transaction_base& tx, const dead_letter_filter& f) const;
    /// Moves matching, replayable, not yet replayed rows back into retry (attempts 0, due now,
    /// keeping partition and offset so they run before the later messages of their key) and
    /// sets replayed_at. Returns the number replayed.
    [[nodiscard]] long long replay(pqxx::transaction_base& tx, const dead_letter_filter& f) const;
    /// Deletes matching rows; a purged blocking row releases its key. Returns the count.
    [[nodiscard]] long long purge(pqxx::transaction_base& tx, const dead_letter_filter& f) const;

private:
    std::string _schema;  // quoted
};

}  // namespace ferry::retry
