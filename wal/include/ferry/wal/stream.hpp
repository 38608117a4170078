#pragma once
// A logical replication connection (libpq, `replication=database`) streaming pgoutput
// proto_version 1 from one slot, with Ferry's logical messages switched on.
//
//   replication_stream s{options};            // connects; throws ferry::error
//   auto id = s.identify_system();
//   s.start();                                  // START_REPLICATION from the slot's confirmed LSN
//   while (auto item = s.next(100ms)) { ... s.acknowledge(end_lsn_of_a_finished_transaction); }
//
// Confirmation: the server is told a flush position only through acknowledge(): the caller
// promises that everything up to that LSN (a transaction_end's end_lsn) is durably handled,
// e.g. acknowledged by Kafka. After a crash the slot replays from the last confirmed position,
// so duplicates are bounded by what was received but not yet acknowledged. Keepalives are
// answered (with the same confirmed position); status updates go out when the confirmed
// position moved (at most every `feedback_interval`) and at least every `status_interval`.
// When everything received has been acknowledged and no transaction is open, a keepalive's
// wal_end is confirmed too, so an idle slot (or one that only sees other tables' changes) does
// not lag.
//
// Errors (ferry::error, code "wal.*", never the connection string):
//   wal.connect (retryable)      cannot connect;
//   wal.connection (retryable)   the connection broke or the server ended the stream (restart,
//                                pg_terminate_backend): reconnect and start again;
//   wal.slot_lost (permanent)    the slot does not exist or was invalidated (WAL removed past
//                                it): messages may be lost; never recreated silently;
//   wal.slot_in_use (retryable)  another connection streams from the slot;
//   wal.protocol (permanent)     the server sent something this client cannot parse;
//   wal.replication (permanent)  any other server error, with its SQLSTATE.
//
// Lifecycle: not copyable; one thread at a time. The destructor closes the connection without
// sending anything more (a crash-like stop; call close() for a clean one).

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "ferry/wal/lsn.hpp"
#include "ferry/wal/pgoutput.hpp"

namespace ferry::wal {

struct stream_options {
    /// libpq connection string or URI; `replication=database` is added.
    std::string dsn;
    /// Replication slot ([a-z0-9_], at most 63 characters), created beforehand (slot_admin).
    std::string slot;
    /// Publication name passed in publication_names (an empty publication suffices for messages).
    std::string publication;
    std::chrono::seconds connect_timeout{10};
    /// Status updates at least this often (keep it well below the server's wal_sender_timeout).
    std::chrono::milliseconds status_interval{10000};
    /// A moved confirmed position is reported at most this often.
    std::chrono::milliseconds feedback_interval{100};
    std::string application_name = "ferry-wal";
};

struct system_identity {
    std::string system_id;
    int timeline = 0;
    lsn wal_position = 0;
    std::string database;
};

/// One pgoutput message as received. The parsed message's string_views point into `data`:
/// keep the item alive (and unmoved) while using them.
struct stream_item {
    lsn wal_start = 0;
    lsn wal_end = 0;
    /// The server's clock when it sent the message: the database clock a source compares a
    /// message's expires_at with (as polling mode uses clock_timestamp()), immune to relay skew.
    pg_timestamp send_time = 0;
    std::string data;
    [[nodiscard]] pgoutput_message message() const { return parse_pgoutput(data); }
};

class replication_stream {
public:
    explicit replication_stream(stream_options options);
    ~replication_stream();
    replication_stream(const replication_stream&) = delete;
    replication_stream& operator=(const replication_stream&) = delete;

    [[nodiscard]] system_identity identify_system();

    /// START_REPLICATION SLOT <slot> LOGICAL <from> (proto_version '1', publication_names
    /// '<publication>', messages 'true'). from = 0 starts at the slot's confirmed position.
    void start(lsn from = 0);

    /// The next pgoutput message, or nullopt when none arrived within `timeout`. Answers
    /// keepalives and sends due status updates meanwhile.
    [[nodiscard]] std::optional<stream_item> next(std::chrono::milliseconds timeout);

    /// Everything up to `flushed` is handled; the server may forget it. Never moves backwards.
    void acknowledge(lsn flushed) noexcept;

    /// Sends a status update now (the confirmed position, or the current one).
    void send_status(bool reply_requested = false);

    /// Sends a last status update and closes the connection.
    void close();

    [[nodiscard]] lsn confirmed() const noexcept { return _confirmed; }
    /// The confirmed position last sent to the server.
    [[nodiscard]] lsn reported() const noexcept { return _reported; }
    /// The highest wal_end seen in XLogData or keepalives.
    [[nodiscard]] lsn received() const noexcept { return _received; }
    [[nodiscard]] bool streaming() const noexcept { return _streaming; }
    /// The server's clock in the last XLogData or keepalive (0 before the first).
    [[nodiscard]] pg_timestamp last_send_time() const noexcept { return _last_send_time; }

private:
    struct conn_deleter {
        void operator()(void* c) const noexcept;
    };
    void maybe_send_status(bool force, bool reply_requested);
    void note_delivered(const stream_item& item);
    [[noreturn]] void throw_connection_error(const std::string& what);

    stream_options _options;
    std::unique_ptr<void, conn_deleter> _conn;
    bool _streaming = false;
    lsn _confirmed = 0;
    lsn _reported = 0;
    lsn _received = 0;
    lsn _delivered_end = 0;  // end of the last delivered transaction (or lone message)
    bool _in_tx = false;
    pg_timestamp _last_send_time = 0;
    std::chrono::steady_clock::time_point _last_status{};
};

}  // namespace ferry::wal
