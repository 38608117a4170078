#include "binary_session.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <bit>

#include "ferry/common/error.hpp"
#include "ferry/internal/pq.hpp"
#include "pg_session.hpp"

namespace ferry::relay::detail {

namespace {

std::string trimmed(const char* text) {
    std::string s = text != nullptr ? text : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

}  // namespace

bool binary_result::boolean(int row, int col) const {
    const auto b = bytes(row, col);
    if (b.size() != 1) {
        throw ferry::error(error_kind::permanent, "relay.result",
                           "a boolean result field is not 1 byte long");
    }
    return b[0] != 0;
}

std::uint64_t binary_result::be64(int row, int col) const {
    const auto b = bytes(row, col);
    if (b.size() != 8) {
        throw ferry::error(error_kind::permanent, "relay.result",
                           "an 8-byte result field is " + std::to_string(b.size()) + " bytes long");
    }
    std::uint64_t v = 0;
    for (const char c : b) v = (v << 8) | static_cast<unsigned char>(c);
    return v;
}

std::int64_t binary_result::int8(int row, int col) const {
    return static_cast<std::int64_t>(be64(row, col));
}

double binary_result::float8(int row, int col) const {
    return std::bit_cast<double>(be64(row, col));
}

std::vector<std::int64_t> binary_result::int8_array(int row, int col) const {
    // array_send: ndim, has-null flag, element type oid, then per dimension its length and
    // lower bound, then per element a 4-byte length and the element.
    const auto b = bytes(row, col);
    std::size_t at = 0;
    const auto take = [&](std::size_t n) {
        if (b.size() - at < n) {
            throw ferry::error(
                error_kind::permanent, "relay.result",
                "a bigint[] result field ends early (" + std::to_string(b.size()) + " bytes)");
        }
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
        at += n;
        return v;
    };
    const auto ndim = take(4);
    const auto has_null = take(4);
    const auto oid = take(4);
    std::vector<std::int64_t> out;
    if (ndim == 0) return out;
    if (ndim != 1 || has_null != 0 || oid != 20) {
        throw ferry::error(error_kind::permanent, "relay.result",
                           "expected a one-dimensional bigint[] without NULLs (ndim " +
                               std::to_string(ndim) + ", element type " + std::to_string(oid) +
                               ")");
    }
    const auto n = take(4);
    (void)take(4);  // lower bound
    out.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) {
        if (take(4) != 8) {
            throw ferry::error(error_kind::permanent, "relay.result",
                               "a bigint[] element is not 8 bytes long");
        }
        out.push_back(static_cast<std::int64_t>(take(8)));
    }
    return out;
}

PGconn* binary_session::get() {
    if (_conn) return _conn.get();
    const auto settings = relay_session_settings(_o, {});
    const auto dsn = internal::with_connect_timeout(
        _o.dsn, internal::detail::connect_timeout_seconds(settings.connect_timeout));
    _conn.reset(PQconnectdb(dsn.c_str()));
    if (!_conn || PQstatus(_conn.get()) != CONNECTION_OK) {
        const auto msg = _conn ? trimmed(PQerrorMessage(_conn.get())) : "out of memory";
        _conn.reset();
        throw ferry::error(error_kind::retryable, "relay.connect",
                           "cannot connect to PostgreSQL: " + msg, "postgres.dsn");
    }
    const auto values = internal::detail::session_values(settings);
    const char* params[values.size()];
    for (std::size_t i = 0; i < values.size(); ++i) params[i] = values[i].c_str();
    PGresult* r =
        PQexecParams(_conn.get(), internal::detail::k_apply_session_sql,
                     static_cast<int>(values.size()), nullptr, params, nullptr, nullptr, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) fail("session settings", r);
    PQclear(r);
    if (_generic_plans) {
        r = PQexec(_conn.get(),
                   "SELECT set_config('plan_cache_mode', 'force_generic_plan', false), "
                   "set_config('enable_seqscan', 'off', false)");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) fail("plan_cache_mode", r);
        PQclear(r);
    }
    if (_had_connection) {
        _reconnects.inc();
        spdlog::info("event=pg_reconnected thread={}", _thread);
    }
    _had_connection = true;
    return _conn.get();
}

void binary_session::fail(std::string_view what, PGresult* r) {
    auto msg = trimmed(r != nullptr ? PQresultErrorMessage(r) : PQerrorMessage(_conn.get()));
    if (msg.empty()) msg = trimmed(PQerrorMessage(_conn.get()));
    const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    if (state != nullptr) msg += std::string(" [SQLSTATE ") + state + "]";
    if (r != nullptr) PQclear(r);
    throw ferry::error(error_kind::retryable, "relay." + _thread,
                       std::string(what) + " failed: " + (msg.empty() ? "no result" : msg));
}

void binary_session::prepare(PGconn* conn, const std::string& name, const std::string& sql) {
    if (_prepared.contains(name)) return;
    PGresult* r = PQprepare(conn, name.c_str(), sql.c_str(), 0, nullptr);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) fail("prepare " + name, r);
    PQclear(r);
    _prepared.insert(name);
}

binary_result binary_session::exec_params(const std::string& name, const std::string& sql,
                                          const std::vector<param>& params) {
    PGconn* conn = get();
    prepare(conn, name, sql);
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    values.reserve(params.size());
    lengths.reserve(params.size());
    formats.reserve(params.size());
    for (const auto& p : params) {
        values.push_back(p.null ? nullptr : p.value.data());
        lengths.push_back(static_cast<int>(p.value.size()));
        formats.push_back(p.binary ? 1 : 0);
    }
    PGresult* r = PQexecPrepared(conn, name.c_str(), static_cast<int>(values.size()), values.data(),
                                 lengths.data(), formats.data(), /*resultFormat=*/1);
    const auto status = PQresultStatus(r);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) fail(name, r);
    return binary_result(r);
}

std::string binary_session::command(const char* sql) {
    PGconn* conn = get();
    PGresult* r = PQexec(conn, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) fail(sql, r);
    std::string tag = PQcmdStatus(r);
    PQclear(r);
    return tag;
}

binary_result binary_session::exec(const std::string& name, const std::string& sql,
                                   const std::vector<std::string>& params) {
    PGconn* conn = get();
    prepare(conn, name, sql);
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p.c_str());
    PGresult* r = PQexecPrepared(conn, name.c_str(), static_cast<int>(values.size()), values.data(),
                                 nullptr, nullptr, /*resultFormat=*/1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) fail(name, r);
    return binary_result(r);
}

}  // namespace ferry::relay::detail
