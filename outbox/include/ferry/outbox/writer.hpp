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

/// An outbox INSERT queued on the caller's pqxx::pipeline by writer::enqueue(pipeline&, ...),
/// waiting for writer::confirm().
struct pipelined_enqueue {
    message_id id;
    pqxx::pipeline::query_id query = 0;
};

class writer {
public:
    /// Throws ferry::error(permanent) when the options are invalid (for example a schema name
    /// that is not a plain identifier).
    explicit writer(writer_options options);

    /// Inserts one message in `tx`. Returns its UUIDv7. One round trip.
    [[nodiscard]] message_id enqueue(pqxx::transaction_base& tx, const message& m) const;

    /// Queues the INSERT of `m` on `p`, a pqxx::pipeline the caller opened on `tx`, the business
    /// transaction (`tx` quotes the values for its connection's encoding), so that it reaches
    /// PostgreSQL in the same round trip as the caller's own statements on that pipeline (call
    /// p.retain(n) first, or the pipeline sends each statement as soon as it is queued). The id is
    /// generated here, so nothing has to come back. Validates `m` first; a rejected message queues
    /// nothing. Values travel as quoted literals (pqxx::pipeline has no parameters), escaped by the
    /// connection.
    ///
    /// The caller must pass the result to confirm() before committing: a database error of the
    /// INSERT surfaces there. A transaction that committed without confirming could have been
    /// rolled back by PostgreSQL without libpqxx noticing.
    [[nodiscard]] pipelined_enqueue enqueue(pqxx::transaction_base& tx, pqxx::pipeline& p,
                                            const message& m) const;

    /// Waits for a pipelined INSERT. Throws ferry::error, translated like enqueue()'s, when it
    /// failed, or when an earlier statement on the pipeline failed so that it never ran.
    void confirm(pqxx::pipeline& p, const pipelined_enqueue& e) const;

    /// The common case of the two above in one call: runs `next_sql`, the caller's next
    /// statement in `tx` (complete SQL text, values quoted with tx.quote()), followed by the
    /// INSERT of `m`, in one round trip. Returns the message id and the result of `next_sql`.
    /// An error of `next_sql` is rethrown as libpqxx threw it; an error of the INSERT becomes
    /// ferry::error as in enqueue(). `tx` is free for other statements when this returns.
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
