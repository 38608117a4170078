#pragma once
// Private helpers shared by Ferry's PostgreSQL code (not installed, not public API):
//  - exec(): one parameterized statement, the same call on libpqxx 6.4 and 7.x;
//  - translate(): maps a libpqxx exception to ferry::error with the right kind.
// Error messages carry the server's message and SQLSTATE, never the connection string.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <utility>

#include "ferry/common/error.hpp"

namespace ferry::internal {

template <typename... Args>
pqxx::result exec(pqxx::transaction_base& tx, const std::string& sql, Args&&... args) {
#if PQXX_VERSION_MAJOR > 7 || (PQXX_VERSION_MAJOR == 7 && PQXX_VERSION_MINOR >= 9)
    return tx.exec(sql, pqxx::params{std::forward<Args>(args)...});
#else
    return tx.exec_params(sql, std::forward<Args>(args)...);
#endif
}

/// Like exec(), but reuses a server-side prepared statement named `name` on this connection
/// where libpqxx can do that without per-connection bookkeeping: 6.x prepares lazily and treats
/// an identical re-definition as a no-op. On 7.x it runs the statement unnamed (one parse per
/// call), which is correct, only slower.
template <typename... Args>
pqxx::result exec_cached(pqxx::transaction_base& tx, const std::string& name,
                         const std::string& sql, Args&&... args) {
#if PQXX_VERSION_MAJOR < 7
    tx.conn().prepare(name, sql);
    return tx.exec_prepared(name, std::forward<Args>(args)...);
#else
    (void)name;
    return exec(tx, sql, std::forward<Args>(args)...);
#endif
}

/// A bytea parameter sent in binary format: no hex escaping in the client, no decoding in the
/// server.
#if PQXX_VERSION_MAJOR < 7
inline pqxx::binarystring bytea_param(const std::string& bytes) {
    return pqxx::binarystring(bytes);
}
#else
inline std::basic_string<std::byte> bytea_param(const std::string& bytes) {
    return {reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()};
}
#endif

inline std::string sqlstate_of(const pqxx::sql_error& e) { return e.sqlstate(); }

/// Rethrows the current exception (call inside a catch block) as ferry::error.
/// `what` says which operation failed ("enqueue"), `code_prefix` is the module ("outbox").
[[noreturn]] inline void rethrow_translated(std::string_view what, std::string_view code_prefix) {
    const std::string prefix(code_prefix);
    const std::string op(what);
    try {
        throw;
    } catch (const ferry::error&) {
        throw;
    } catch (const pqxx::in_doubt_error& e) {
        throw ferry::error(error_kind::in_doubt, prefix + ".in_doubt",
                           op +
                               ": the connection broke while committing; the transaction may or "
                               "may not have committed (" +
                               std::string(e.what()) + ")");
    } catch (const pqxx::broken_connection& e) {
        throw ferry::error(error_kind::retry_transaction, prefix + ".connection",
                           op +
                               ": the database connection is closed or broke; the transaction "
                               "is lost, run it again (" +
                               std::string(e.what()) + ")");
    } catch (const pqxx::sql_error& e) {
        const std::string state = sqlstate_of(e);
        std::string msg = e.what();
        while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
        // Class 40 (serialization failure, deadlock) and 57P01..03 (admin shutdown, crash):
        // the work can be repeated as a whole.
        if (state.rfind("40", 0) == 0 || state == "57P01" || state == "57P02" || state == "57P03" ||
            state.rfind("08", 0) == 0) {
            throw ferry::error(error_kind::retry_transaction, prefix + ".database",
                               op + ": " + msg + " [SQLSTATE " + state + "]");
        }
        if (state == "3F000" || state == "42P01" || state == "42883") {
            throw ferry::error(error_kind::permanent, prefix + ".schema_missing",
                               op + ": " + msg + " [SQLSTATE " + state +
                                   "]: the schema does not exist or is not migrated "
                                   "(run `ferryctl migrate`)",
                               "schema");
        }
        throw ferry::error(error_kind::permanent, prefix + ".database",
                           op + ": " + msg + " [SQLSTATE " + state + "]");
    } catch (const pqxx::usage_error& e) {
        throw ferry::error(error_kind::permanent, prefix + ".usage", op + ": " + e.what());
    }
}

}  // namespace ferry::internal

namespace ferry::internal {

/// Adds connect_timeout to a libpq connection string unless it already names one.
inline std::string with_connect_timeout(const std::string& dsn, long seconds) {
    if (seconds <= 0 || dsn.find("connect_timeout") != std::string::npos) return dsn;
    const auto t = std::to_string(seconds);
    if (dsn.find("://") != std::string::npos) {
        return dsn + (dsn.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=" + t;
    }
    return dsn + (dsn.empty() ? "" : " ") + "connect_timeout=" + t;
}

/// Per-session settings applied right after connecting, in one round trip. Zero durations
/// leave the server's default. Every Ferry component connects through connect() below, so
/// statement limits and the application_name that operators see in pg_stat_activity are set
/// the same way everywhere.
struct session_settings {
    /// libpq connect_timeout, whole seconds (rounded up; at least 1 s when positive).
    std::chrono::milliseconds connect_timeout{5000};
    /// statement_timeout: no statement may hang a thread (and so a graceful stop) forever.
    std::chrono::milliseconds statement_timeout{0};
    /// idle_in_transaction_session_timeout.
    std::chrono::milliseconds idle_in_transaction_timeout{0};
    /// lock_timeout.
    std::chrono::milliseconds lock_timeout{0};
    /// Shown in pg_stat_activity ("ferry-relay", "ferry-checkback"); empty: libpq's default.
    std::string application_name;
    /// true: the session only reads (default_transaction_read_only).
    bool read_only = false;
    /// true: commits do not wait for their WAL flush (synchronous_commit = off), for a
    /// session whose every transaction may be lost in a database crash without harm.
    bool asynchronous_commit = false;
};

namespace detail {
inline long connect_timeout_seconds(std::chrono::milliseconds t) {
    if (t.count() <= 0) return 0;
    return std::max<long>(1, static_cast<long>((t.count() + 999) / 1000));
}

// set_config with parameters: nothing from configuration is spliced into SQL. A setting left
// at zero (empty) is not touched, so role and database defaults still apply.
inline constexpr const char* k_apply_session_sql =
    "SELECT CASE WHEN $1 <> '' THEN set_config('statement_timeout', $1, false) END, "
    "CASE WHEN $2 <> '' THEN set_config('idle_in_transaction_session_timeout', $2, false) END, "
    "CASE WHEN $3 <> '' THEN set_config('lock_timeout', $3, false) END, "
    "CASE WHEN $4 <> '' THEN set_config('application_name', $4, false) END, "
    "CASE WHEN $5 <> '' THEN set_config('default_transaction_read_only', $5, false) END, "
    "CASE WHEN $6 <> '' THEN set_config('synchronous_commit', $6, false) END";

/// The parameters of k_apply_session_sql; all empty when nothing is to be set.
inline std::array<std::string, 6> session_values(const session_settings& s) {
    const auto ms = [](std::chrono::milliseconds d) {
        return d.count() > 0 ? std::to_string(d.count()) : std::string();
    };
    return {ms(s.statement_timeout), ms(s.idle_in_transaction_timeout),
            ms(s.lock_timeout),      s.application_name,
            s.read_only ? "on" : "", s.asynchronous_commit ? "off" : ""};
}

inline void apply_session(pqxx::connection& conn, const session_settings& s) {
    const auto v = session_values(s);
    if (std::all_of(v.begin(), v.end(), [](const std::string& x) { return x.empty(); })) return;
    pqxx::nontransaction tx{conn};
    (void)exec(tx, k_apply_session_sql, v[0], v[1], v[2], v[3], v[4], v[5]);
}

[[noreturn]] inline void connect_failed(const std::exception& e, std::string_view prefix) {
    std::string msg = e.what();
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    throw ferry::error(error_kind::retryable, std::string(prefix) + ".connect",
                       "cannot connect to PostgreSQL: " + msg, "postgres.dsn");
}
}  // namespace detail

/// Opens a connection and applies `settings`. Failures become
/// ferry::error(retryable, "<prefix>.connect", field "postgres.dsn") without the connection
/// string (it may hold a password). A std::unique_ptr because libpqxx 6 connections cannot be
/// moved, and holders reconnect by replacing it.
inline std::unique_ptr<pqxx::connection> connect_unique(const std::string& dsn,
                                                        const session_settings& settings,
                                                        std::string_view prefix) {
    try {
        auto conn = std::make_unique<pqxx::connection>(
            with_connect_timeout(dsn, detail::connect_timeout_seconds(settings.connect_timeout)));
        {
            // The first parameterized statement on a new libpqxx 6.4 connection touches state
            // the library shares between connections: two threads opening sessions at once
            // (the relay's lease keeper and maintenance threads at start) raced there under
            // TSan. One session set-up at a time; the network connect above stays parallel.
            static std::mutex first_statement;
            const std::lock_guard lock(first_statement);
            detail::apply_session(*conn, settings);
        }
        return conn;
    } catch (const std::exception& e) {
        detail::connect_failed(e, prefix);
    }
}

/// The older form: connect_timeout in seconds, no other settings.
inline pqxx::connection connect(const std::string& dsn, long timeout_s, std::string_view prefix) {
    try {
        return pqxx::connection{with_connect_timeout(dsn, timeout_s)};
    } catch (const std::exception& e) {
        detail::connect_failed(e, prefix);
    }
}

}  // namespace ferry::internal
