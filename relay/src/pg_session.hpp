#pragma once
// Private: one relay thread's PostgreSQL session, opened on first use and after reset() (the
// simplest safe state after any database error is a fresh session). Every session gets the
// relay's connect timeout, statement_timeout (no statement may hang a thread, and so a graceful
// stop, indefinitely), idle_in_transaction_session_timeout (no stopped relay keeps the lease row
// locked) and application_name "ferry-relay", through the one connect helper in
// common/internal. Reconnections after the first are counted in
// ferry_relay_pg_reconnects_total. Not thread-safe: one thread per session.

#include <memory>
#include <pqxx/pqxx>
#include <string>

#include "ferry/common/metrics.hpp"
#include "ferry/relay/options.hpp"

namespace ferry::internal {
struct session_settings;
}

namespace ferry::relay::detail {

/// What a session needs beyond the relay's defaults.
struct pg_session_tuning {
    /// Commits do not wait for their WAL flush: for the polling mark, whose lost commit leaves
    /// its rows to be published again (poll_source.cpp).
    bool asynchronous_commit = false;
};

/// The settings of every relay session: the relay's connect and statement timeouts, an idle-in-
/// transaction timeout of max(lease_ttl, 5 s), the application_name "ferry-relay" unless the
/// DSN names one, and `t`.
ferry::internal::session_settings relay_session_settings(const relay_options& o,
                                                         pg_session_tuning t);

class pg_session {
public:
    pg_session(const relay_options& options, ferry::metrics::counter reconnects,
               std::string thread_name, pg_session_tuning t = {})
        : _o(options), _reconnects(reconnects), _thread(std::move(thread_name)), _tuning(t) {}

    /// The open session; connects first when there is none. Throws ferry::error(retryable,
    /// "relay.connect") without the DSN when the server cannot be reached.
    pqxx::connection& get();
    /// Drops the session (the next get() reconnects).
    void reset() noexcept { _conn.reset(); }
    [[nodiscard]] bool connected() const noexcept { return _conn != nullptr; }
    /// True when the session is gone or its socket is closed.
    [[nodiscard]] bool broken() const noexcept;

private:
    const relay_options& _o;
    ferry::metrics::counter _reconnects;
    std::string _thread;
    pg_session_tuning _tuning;
    std::unique_ptr<pqxx::connection> _conn;
    bool _had_connection = false;
};

}  // namespace ferry::relay::detail
