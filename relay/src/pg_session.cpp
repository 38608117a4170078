#include "pg_session.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "ferry/internal/pq.hpp"

namespace ferry::relay::detail {

using namespace std::chrono_literals;

internal::session_settings relay_session_settings(const relay_options& o, pg_session_tuning t) {
    internal::session_settings settings;
    settings.connect_timeout = o.connect_timeout;
    settings.asynchronous_commit = t.asynchronous_commit;
    settings.statement_timeout = o.statement_timeout.count() > 0
                                     ? o.statement_timeout
                                     : std::max<std::chrono::milliseconds>(o.lease_ttl, 5s);
    // No relay transaction sits idle: a relay stopped inside one (paused, hung, partitioned from
    // its own process) would hold what it locked, the lease row above all (the mark's fence), and
    // no peer could take the group over until its connection died. The server ends such a
    // transaction after this long; a running relay's transactions are idle for microseconds
    // (HolderStoppedInsideItsMarkDoesNotBlockTheTakeover).
    settings.idle_in_transaction_timeout = std::max<std::chrono::milliseconds>(o.lease_ttl, 5s);
    // pg_stat_activity shows "ferry-relay" unless the DSN names its own application_name.
    if (o.dsn.find("application_name") == std::string::npos) {
        settings.application_name = "ferry-relay";
    }
    return settings;
}

pqxx::connection& pg_session::get() {
    if (_conn) return *_conn;
    const auto settings = relay_session_settings(_o, _tuning);
    _conn = internal::connect_unique(_o.dsn, settings, "relay");
    if (_had_connection) {
        _reconnects.inc();
        spdlog::info("event=pg_reconnected thread={}", _thread);
    }
    _had_connection = true;
    return *_conn;
}

bool pg_session::broken() const noexcept {
    if (!_conn) return true;
    try {
        return !_conn->is_open();
    } catch (...) {
        return true;
    }
}

}  // namespace ferry::relay::detail
