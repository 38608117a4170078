#pragma once
// Messages held out of the normal flow, for operators (ferryctl) and reconciliation:
//   expired  the TTL passed before the relay published them (never sent): list, show, re-drive;
//   parked   Kafka refused them permanently: list, show, retry, discard;
//   half     half messages: show one with its check-back history.
// ferryctl reaches these tables through this API, never with SQL of its own.
//
// held_store owns one PostgreSQL session, opened in the constructor (application_name
// "ferryctl-held"). Not thread-safe: one per thread. Every call throws ferry::error; a missing
// row is std::nullopt / redrive_status::not_found, not an exception.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ferry/common/error.hpp"

namespace ferry::reconcile {

struct held_filter {
    std::optional<std::string> topic;
    std::optional<std::string> key;
    /// Held at or after this time (any PostgreSQL timestamptz text).
    std::optional<std::string> since;
    std::int64_t limit = 100;
};

/// An expired or parked message. Times are RFC 3339 UTC, "" when NULL.
struct held_message {
    std::int64_t id = 0;  // the outbox id it had
    std::string message_id, topic, key;
    std::string payload;       // raw bytes
    std::string headers_json;  // the jsonb object as text
    std::string created_at, available_at, expires_at;
    std::string held_at;  // expired_at or parked_at
    // parked only
    std::string reason, error_code;
    int attempts = 0;
    std::int64_t held_back = 0;  // messages of the same key waiting in the outbox behind it
};

struct half_details {
    std::string message_id, topic, key, tx_ref, producer_group, producer_instance, state;
    std::string payload, headers_json;
    std::string prepared_at, decided_at, decided_by, next_check_at, last_check_at;
    std::string last_check_result;
    int check_count = 0, max_checks = 0;
    double check_interval_s = 0, check_first_after_s = 0;
    bool in_outbox = false;  // committed and not yet published
};

enum class redrive_status {
    redriven,          // moved back into the outbox under its message id, TTL cleared
    not_found,         // no expired message with this id
    already_in_outbox  // a row with this message id is already waiting (nothing changed)
};

class held_store {
public:
    held_store(const std::string& dsn, std::string schema,
               std::chrono::milliseconds connect_timeout = std::chrono::seconds(5));
    ~held_store();
    held_store(const held_store&) = delete;
    held_store& operator=(const held_store&) = delete;

    /// Expired messages, oldest expiry first.
    [[nodiscard]] std::vector<held_message> expired(const held_filter& filter = {});
    [[nodiscard]] std::optional<held_message> expired_message(const std::string& message_id);
    /// Moves one expired message back into the outbox in one transaction: the same message_id,
    /// topic, key, payload and headers, a new outbox id (it queues behind what is waiting now),
    /// available now, no TTL. Consumers' dedup absorbs it if a copy was ever delivered.
    /// `message_id` must be a UUID (ferry::error permanent "reconcile.invalid_id" otherwise).
    [[nodiscard]] redrive_status redrive_expired(const std::string& message_id);

    /// Parked messages, by outbox id (the order they held their keys).
    [[nodiscard]] std::vector<held_message> parked(const held_filter& filter = {});
    /// By parked id (a number) or message id (a UUID).
    [[nodiscard]] std::optional<held_message> parked_message(const std::string& id);

    /// Puts parked message `id` (the parked id) back on its way with its original outbox id and
    /// message id, ahead of the messages of its key held behind it (retry_parked(), migrations
    /// 0002 and 0072: an outbox row in polling mode, logical messages in WAL mode). False when
    /// no message with that id is parked.
    [[nodiscard]] bool retry_parked(std::int64_t id);
    /// Deletes parked message `id`; the messages held behind it flow again. False when absent.
    [[nodiscard]] bool discard_parked(std::int64_t id);

    [[nodiscard]] std::optional<half_details> half_message(const std::string& message_id);

private:
    struct impl;
    std::unique_ptr<impl> _impl;
};

/// True for a canonical UUID text (8-4-4-4-12 hex digits).
[[nodiscard]] bool is_uuid(const std::string& text) noexcept;

}  // namespace ferry::reconcile
