#pragma once
// Private helpers shared by Ferry's PostgreSQL code (not installed, not public API):
//  - exec(): one parameterized statement, the same call on libpqxx 6.4 and 7.x;
//  - translate(): maps a libpqxx exception to ferry::error with the right kind.
// Error messages carry the server's message and SQLSTATE, never the connection string.

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

/// Opens a connection; failures become ferry::error(retryable, "<prefix>.connect") without the
/// connection string (it may hold a password).
inline pqxx::connection connect(const std::string& dsn, long timeout_s, std::string_view prefix) {
    try {
        return pqxx::connection{with_connect_timeout(dsn, timeout_s)};
    } catch (const std::exception& e) {
        std::string msg = e.what();
        while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
        throw ferry::error(error_kind::retryable, std::string(prefix) + ".connect",
                           "cannot connect to PostgreSQL: " + msg, "postgres.dsn");
    }
}

}  // namespace ferry::internal
