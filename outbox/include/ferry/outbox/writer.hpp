#pragma once
// Writes outbox messages inside the caller's own PostgreSQL transaction, so each message commits
// or rolls back with the business change that produced it (invariant 1, atomic enqueue).
//
// Lifecycle: construct once per process (or per schema) and share; it holds only validated
// options and the SQL text derived from them. Thread-safety: const methods only, safe from any
// thread; each call uses the transaction it is given, which must not be shared across threads.
//
// Validation happens before any SQL is sent, so a rejected message or batch writes nothing.
// Errors are ferry::error with code "outbox.<what>" and field naming the input:
//   outbox.invalid_topic, outbox.payload_too_large, outbox.key_too_large,
//   outbox.invalid_header, outbox.headers_too_large, outbox.invalid_delay,
//   outbox.schema_missing (schema not found or not migrated),
//   outbox.connection (the connection is closed or broke; retry the transaction),
//   outbox.database (any other database error, with its SQLSTATE).

#include <pqxx/pqxx>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ferry/common/error.hpp"  // every call here throws ferry::error
#include "ferry/outbox/message.hpp"
#include "ferry/outbox/message_id.hpp"
#include "ferry/outbox/options.hpp"

namespace ferry::outbox {

class writer {
public:
    /// Throws ferry::error(permanent) when the options are invalid (for example a schema name
    /// that is not a plain identifier).
    explicit writer(writer_options options);

    /// Inserts one message in `tx`. Returns its UUIDv7. One round trip.
    [[nodiscard]] message_id enqueue(pqxx::transaction_base& tx, const message& m) const;

    /// Inserts `m` and runs `next_sql`, the caller's next statement in `tx`, in one round trip:
    /// both travel in one simple-protocol query, the INSERT first. `next_sql` is complete SQL
    /// text (quote values with tx.quote()); it may hold several statements, and the returned
    /// result is that of the last one. The message's values travel as literals quoted by the
    /// connection, the payload as decode('<hex>', 'hex'). Validates `m` first: a rejected
    /// message sends nothing, not even `next_sql`. A database error of either statement is
    /// thrown as ferry::error, translated as in enqueue() (the server's message says which
    /// statement failed, e.g. "outbox.database ... [SQLSTATE 23505]" for the caller's duplicate
    /// key); either way the transaction is aborted and nothing of it will commit.
    [[nodiscard]] std::pair<message_id, pqxx::result> enqueue_with(
        pqxx::transaction_base& tx, const message& m, const std::string& next_sql) const;

    /// Inserts all messages in one statement (one round trip). Validates every message first:
    /// if any is rejected, nothing is written. Ids are returned in input order.
    [[nodiscard]] std::vector<message_id> enqueue_batch(pqxx::transaction_base& tx,
                                                        std::span<const message> batch) const;

    /// Checks a message against the options without touching the database.
    void validate(const message& m) const;

    [[nodiscard]] const writer_options& options() const noexcept { return _options; }

private:
    /// enqueue_batch in WAL mode: frames' variable parts built here, one statement.
    std::vector<message_id> enqueue_batch_wal(pqxx::transaction_base& tx,
                                              std::span<const message> batch) const;

    writer_options _options;
    std::string _insert_one_sql;
    std::string _schema_quoted;
    std::string _insert_batch_sql;
    std::string _insert_one_name;  // prepared-statement names, per schema
    std::string _insert_batch_name;
};

/// Checks a Kafka topic name; throws ferry::error(permanent, "outbox.invalid_topic").
void validate_topic(std::string_view topic, std::string_view field = "topic");

}  // namespace ferry::outbox
