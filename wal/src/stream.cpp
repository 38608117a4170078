#include "ferry/wal/stream.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <utility>

#include "ferry/common/error.hpp"
#include "ferry/common/sql_ident.hpp"
#include "ferry/wal/slot.hpp"

namespace ferry::wal {
namespace {

std::string trimmed(const char* s) {
    std::string out = s ? s : "";
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
}

pg_timestamp pg_now() {
    using namespace std::chrono;
    const auto us = duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
    return us - pg_epoch_unix_seconds * 1000000;
}

// Maps a failed command's result to a ferry::error. Slot problems get their own codes: the
// caller's reaction differs (stop and page an operator vs. retry later).
[[noreturn]] void throw_result_error(PGconn* conn, PGresult* res, const std::string& what,
                                     const std::string& slot) {
    std::string state;
    std::string msg;
    if (res != nullptr) {
        if (const char* s = PQresultErrorField(res, PG_DIAG_SQLSTATE)) state = s;
        msg = trimmed(PQresultErrorMessage(res));
        PQclear(res);
    }
    if (msg.empty()) msg = trimmed(PQerrorMessage(conn));
    const std::string text = what + ": " + msg + (state.empty() ? "" : " [SQLSTATE " + state + "]");
    if (state == "42704") {
        throw ferry::error(error_kind::permanent, "wal.slot_lost",
                           text + ": replication slot \"" + slot +
                               "\" does not exist; messages after its last confirmed position "
                               "may be lost. Ferry does not recreate it on its own (see "
                               "docs/operations.md, WAL slot lost)",
                           "slot");
    }
    if (state == "55000" && msg.find("invalidated") != std::string::npos) {
        throw ferry::error(error_kind::permanent, "wal.slot_lost",
                           text +
                               ": PostgreSQL removed WAL the slot still needed "
                               "(max_slot_wal_keep_size); messages may be lost. Ferry does not "
                               "recreate it on its own (see docs/operations.md, WAL slot lost)",
                           "slot");
    }
    if (state == "55006") {
        throw ferry::error(error_kind::retryable, "wal.slot_in_use",
                           text + ": another connection streams from the slot", "slot");
    }
    if (state.empty() || PQstatus(conn) != CONNECTION_OK || state.rfind("08", 0) == 0 ||
        state == "57P01" || state == "57P02" || state == "57P03") {
        throw ferry::error(error_kind::retryable, "wal.connection", text);
    }
    throw ferry::error(error_kind::permanent, "wal.replication", text);
}

}  // namespace

void replication_stream::conn_deleter::operator()(void* c) const noexcept {
    PQfinish(static_cast<PGconn*>(c));
}

#define FERRY_PG static_cast<PGconn*>(_conn.get())

replication_stream::replication_stream(stream_options options) : _options(std::move(options)) {
    validate_slot_name(_options.slot);
    if (!is_valid_identifier(_options.publication)) {
        throw ferry::error(error_kind::permanent, "wal.invalid_name",
                           "publication: \"" + _options.publication +
                               "\" is not a valid name ([a-z_][a-z0-9_]*, at most 63 bytes)",
                           "publication");
    }
    const std::string timeout = std::to_string(_options.connect_timeout.count());
    // Later keywords override what the expanded dsn says.
    const char* keys[] = {"dbname", "replication", "connect_timeout", "fallback_application_name",
                          nullptr};
    const char* values[] = {_options.dsn.c_str(), "database", timeout.c_str(),
                            _options.application_name.c_str(), nullptr};
    _conn.reset(PQconnectdbParams(keys, values, 1));
    if (!_conn) {
        throw ferry::error(error_kind::retryable, "wal.connect",
                           "cannot connect to PostgreSQL for replication: out of memory",
                           "postgres.dsn");
    }
    if (PQstatus(FERRY_PG) != CONNECTION_OK) {
        const auto msg = trimmed(PQerrorMessage(FERRY_PG));
        _conn.reset();
        throw ferry::error(error_kind::retryable, "wal.connect",
                           "cannot connect to PostgreSQL for replication: " + msg, "postgres.dsn");
    }
}

replication_stream::~replication_stream() = default;

system_identity replication_stream::identify_system() {
    if (!_conn) throw_connection_error("IDENTIFY_SYSTEM");
    PGresult* res = PQexec(FERRY_PG, "IDENTIFY_SYSTEM");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 4) {
        throw_result_error(FERRY_PG, res, "IDENTIFY_SYSTEM", _options.slot);
    }
    system_identity id;
    id.system_id = PQgetvalue(res, 0, 0);
    id.timeline = std::atoi(PQgetvalue(res, 0, 1));
    id.wal_position = parse_lsn(PQgetvalue(res, 0, 2)).value_or(0);
    if (!PQgetisnull(res, 0, 3)) id.database = PQgetvalue(res, 0, 3);
    PQclear(res);
    return id;
}

void replication_stream::start(lsn from) {
    if (!_conn) throw_connection_error("START_REPLICATION");
    // publication_names is a list of identifiers inside a string literal: quote the name as an
    // identifier, then double the single quotes for the literal.
    std::string ident = "\"";
    for (char c : _options.publication) {
        if (c == '"') ident += '"';
        ident += c;
    }
    ident += '"';
    std::string literal;
    for (char c : ident) {
        if (c == '\'') literal += '\'';
        literal += c;
    }
    const std::string sql = "START_REPLICATION SLOT " + _options.slot + " LOGICAL " +
                            format_lsn(from) + " (proto_version '1', publication_names '" +
                            literal + "', messages 'true')";
    PGresult* res = PQexec(FERRY_PG, sql.c_str());
    if (PQresultStatus(res) != PGRES_COPY_BOTH) {
        throw_result_error(FERRY_PG, res, "START_REPLICATION", _options.slot);
    }
    PQclear(res);
    _streaming = true;
    _confirmed = std::max(_confirmed, from);
    _reported = _confirmed;
    _last_status = std::chrono::steady_clock::now();
}

std::optional<stream_item> replication_stream::next(std::chrono::milliseconds timeout) {
    if (!_conn || !_streaming) throw_connection_error("next");
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    bool consumed = false;
    for (;;) {
        maybe_send_status(false, false);
        char* buf = nullptr;
        const int n = PQgetCopyData(FERRY_PG, &buf, 1);
        if (n > 0) {
            std::string_view bytes(buf, static_cast<std::size_t>(n));
            copy_message msg;
            try {
                msg = parse_copy_data(bytes);
            } catch (...) {
                PQfreemem(buf);
                throw;
            }
            if (auto* k = std::get_if<primary_keepalive>(&msg)) {
                const auto wal_end = k->wal_end;
                _last_send_time = std::max(_last_send_time, k->send_time);
                const bool reply = k->reply_requested;
                PQfreemem(buf);
                _received = std::max(_received, wal_end);
                // Everything received is acknowledged and no transaction is half-read: nothing
                // before wal_end is waiting in our hands, so the slot may move past it.
                if (!_in_tx && _confirmed >= _delivered_end)
                    _confirmed = std::max(_confirmed, wal_end);
                if (reply) maybe_send_status(true, false);
                continue;
            }
            const auto& x = std::get<xlog_data>(msg);
            stream_item item;
            item.wal_start = x.wal_start;
            item.wal_end = x.wal_end;
            item.send_time = x.send_time;
            _last_send_time = std::max(_last_send_time, x.send_time);
            item.data.assign(x.data);
            PQfreemem(buf);
            _received = std::max(_received, item.wal_end);
            note_delivered(item);
            return item;
        }
        if (n == -1) {
            // The server ended the COPY (shutdown, terminated backend): read why.
            _streaming = false;
            PGresult* res = PQgetResult(FERRY_PG);
            throw_result_error(FERRY_PG, res, "replication stream ended", _options.slot);
        }
        if (n == -2) throw_connection_error("replication stream");
        // n == 0: nothing buffered. Read what the socket already holds once, without waiting,
        // so that next(0ms) returns messages that have arrived; then wait for the socket or the
        // next status update.
        if (!consumed) {
            consumed = true;
            if (PQconsumeInput(FERRY_PG) == 0) throw_connection_error("replication stream");
            continue;
        }
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) return std::nullopt;
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
        const auto status_due = std::chrono::duration_cast<std::chrono::milliseconds>(
            _last_status + _options.status_interval - now);
        if (status_due < wait) wait = std::max(status_due, std::chrono::milliseconds(1));
        pollfd p{PQsocket(FERRY_PG), POLLIN, 0};
        const int r = ::poll(&p, 1, static_cast<int>(wait.count()) + 1);
        if (r < 0 && errno != EINTR) throw_connection_error("poll");
        if (r > 0 && PQconsumeInput(FERRY_PG) == 0) throw_connection_error("replication stream");
    }
}

void replication_stream::note_delivered(const stream_item& item) {
    if (item.data.empty()) return;
    switch (item.data[0]) {
        case 'B':
            _in_tx = true;
            break;
        case 'C':
            _in_tx = false;
            _delivered_end =
                std::max(_delivered_end, std::get<commit_message>(item.message()).end_lsn);
            break;
        case 'M':
            if (!_in_tx) _delivered_end = std::max(_delivered_end, item.wal_end);
            break;
        default:
            break;
    }
}

void replication_stream::acknowledge(lsn flushed) noexcept {
    _confirmed = std::max(_confirmed, flushed);
}

void replication_stream::send_status(bool reply_requested) {
    maybe_send_status(true, reply_requested);
}

void replication_stream::maybe_send_status(bool force, bool reply_requested) {
    if (!_conn || !_streaming) return;
    const auto now = std::chrono::steady_clock::now();
    const bool moved = _confirmed != _reported;
    if (!force && !(moved && now - _last_status >= _options.feedback_interval) &&
        now - _last_status < _options.status_interval) {
        return;
    }
    const auto msg =
        encode_standby_status(_confirmed, _confirmed, _confirmed, pg_now(), reply_requested);
    if (PQputCopyData(FERRY_PG, msg.data(), static_cast<int>(msg.size())) != 1 ||
        PQflush(FERRY_PG) != 0) {
        throw_connection_error("standby status update");
    }
    _reported = _confirmed;
    _last_status = now;
}

void replication_stream::close() {
    if (!_conn) return;
    if (_streaming) {
        try {
            maybe_send_status(true, false);
        } catch (const ferry::error&) {
            // Closing anyway; the unconfirmed part is replayed by the next connection.
        }
        (void)PQputCopyEnd(FERRY_PG, nullptr);
        (void)PQflush(FERRY_PG);
    }
    _streaming = false;
    _conn.reset();
}

void replication_stream::throw_connection_error(const std::string& what) {
    std::string msg = _conn ? trimmed(PQerrorMessage(FERRY_PG)) : "not connected";
    _streaming = false;
    throw ferry::error(error_kind::retryable, "wal.connection",
                       what + ": the replication connection is closed or broke (" + msg +
                           "); reconnect and start again from the confirmed position " +
                           format_lsn(_confirmed));
}

#undef FERRY_PG

}  // namespace ferry::wal
