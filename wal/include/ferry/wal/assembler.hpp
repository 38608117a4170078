#pragma once
// Turns the pgoutput message sequence of one replication connection into Ferry events:
// committed messages of one schema, in commit order, each with its transaction's commit LSN.
//
// Why this can stream: with proto_version 1 (no streaming of in-progress transactions),
// PostgreSQL decodes a transaction only once it has committed, and sends it whole between Begin
// and Commit, transactions in commit order. Begin already carries the commit LSN, so every message
// is yielded as soon as it arrives; nothing is buffered and memory does not grow with the size of
// a transaction (the bound is one message). A rolled-back transaction is never decoded at all.
//
// The caller may confirm a position to the server only at a transaction_end it has fully
// processed (its end_lsn): a crash then replays whole transactions from there.
//
// Messages whose prefix is not Ferry's are other applications' (counted, not yielded); a prefix
// that starts with "ferry" but is not exactly it, a frame that does not decode, a frame of
// another version, and a Ferry message emitted non-transactionally are yielded as `rejected`
// with the reason, so the relay parks them instead of skipping them. Ferry messages of another
// schema sharing the database are counted and skipped: they belong to that schema's relay.
// Row changes (Insert/Update/Delete/Truncate of tables in the publication) are counted and
// skipped: in message mode the publication carries no tables (ADR 0070).
//
// Protocol violations (Commit without Begin, nested Begin, a transactional message outside a
// transaction, a Commit whose LSN differs from its Begin) throw ferry::error(permanent,
// "wal.protocol"): the connection must be dropped and restarted from the confirmed LSN.
//
// Lifecycle: one per replication connection; reset() after reconnecting. Single-threaded.

#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include "ferry/wal/frame.hpp"
#include "ferry/wal/lsn.hpp"
#include "ferry/wal/pgoutput.hpp"

namespace ferry::wal {

/// A committed Ferry message of our schema.
struct committed_message {
    lsn commit_lsn = 0;   // the transaction's commit record (orders transactions)
    lsn message_lsn = 0;  // the message's own record (orders messages within a transaction)
    std::uint32_t xid = 0;
    pg_timestamp commit_time = 0;
    wal_message message;
};

/// A message Ferry cannot publish, with the reason; the relay parks it.
struct rejected_message {
    lsn commit_lsn = 0;  // message_lsn for a non-transactional message
    lsn message_lsn = 0;
    std::uint32_t xid = 0;
    std::string prefix;
    std::string content;
    std::string field;   // "prefix", "transactional", or the frame field that is wrong
    std::string reason;  // a sentence naming the cause
};

/// The transaction ended; everything it held has been yielded.
struct transaction_end {
    lsn commit_lsn = 0;
    lsn end_lsn = 0;  // confirm this once everything yielded up to here is acknowledged
    std::uint32_t xid = 0;
    pg_timestamp commit_time = 0;
    std::uint64_t messages = 0;  // committed_message events of this transaction
    std::uint64_t rejected = 0;
};

using wal_event = std::variant<committed_message, rejected_message, transaction_end>;

struct assembler_stats {
    std::uint64_t transactions = 0;
    std::uint64_t messages = 0;
    std::uint64_t rejected = 0;
    std::uint64_t foreign_prefix = 0;  // other applications' logical messages
    std::uint64_t other_schema = 0;    // Ferry messages of another schema
    std::uint64_t row_changes = 0;     // Insert/Update/Delete/Truncate (not used in message mode)
};

class transaction_assembler {
public:
    /// `schema`: the Ferry schema whose messages this relay publishes.
    explicit transaction_assembler(std::string schema);

    /// Feeds the next pgoutput message. Returns the event it produced, if any.
    [[nodiscard]] std::optional<wal_event> feed(const pgoutput_message& m);

    /// True between Begin and Commit.
    [[nodiscard]] bool in_transaction() const noexcept { return _in_tx; }
    [[nodiscard]] const assembler_stats& stats() const noexcept { return _stats; }
    /// Forget a half-received transaction (after a reconnect it is sent again whole).
    void reset() noexcept { _in_tx = false; }

private:
    std::optional<wal_event> on_message(const logical_message& m);

    std::string _schema;
    bool _in_tx = false;
    begin_message _begin;
    std::uint64_t _tx_messages = 0;
    std::uint64_t _tx_rejected = 0;
    assembler_stats _stats;
};

}  // namespace ferry::wal
