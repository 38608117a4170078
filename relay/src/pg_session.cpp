#include "pg_session.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "ferry/internal/pq.hpp"

namespace ferry::relay::detail {

using namespace std::chrono_literals;

pqxx::connection& pg_session::get() {
    if (_conn) return *_conn;
    internal::session_settings settings;
    settings.connect_timeout = _o.connect_timeout;
    settings.generic_plans = _tuning.generic_plans;
    settings.asynchronous_commit = _tuning.asynchronous_commit;
    settings.statement_timeout = _o.statement_timeout.count() > 0
                                     ? _o.statement_timeout
                                     : std::max<std::chrono::milliseconds>(_o.lease_ttl, 5s);
    // pg_stat_activity shows "ferry-relay" unless the DSN names its own application_name.
    if (_o.dsn.find("application_name") == std::string::npos) {
        settings.application_name = "ferry-relay";
    }
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
