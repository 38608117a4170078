#pragma once
// Private: a PostgreSQL session on plain libpq whose prepared statements return their results in
// binary format. libpqxx 6.4 reads every result as text, so a bytea arrives hex-encoded: the
// server spends about as long encoding the payloads of a claimed batch as reading them, and the
// relay decodes them again. The polling claim runs here (poll_source.cpp); every other
// statement of the relay stays on libpqxx (pg_session).
//
// Like pg_session: opened on first use and after reset(), with the relay's connect timeout,
// statement_timeout and application_name (relay_session_settings), reconnections
// counted in ferry_relay_pg_reconnects_total, errors thrown as ferry::error without the DSN.
// Not thread-safe: one thread per session.

#include <libpq-fe.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "ferry/common/metrics.hpp"
#include "ferry/relay/options.hpp"

namespace ferry::relay::detail {

/// A result in binary format; fields are read with the typed accessors below.
class binary_result {
public:
    explicit binary_result(PGresult* r) : _r(r, &PQclear) {}

    [[nodiscard]] int rows() const { return PQntuples(_r.get()); }
    [[nodiscard]] bool is_null(int row, int col) const {
        return PQgetisnull(_r.get(), row, col) != 0;
    }
    /// text, varchar, bytea and any type whose binary form is its bytes.
    [[nodiscard]] std::string_view bytes(int row, int col) const {
        return {PQgetvalue(_r.get(), row, col),
                static_cast<std::size_t>(PQgetlength(_r.get(), row, col))};
    }
    [[nodiscard]] bool boolean(int row, int col) const;
    [[nodiscard]] std::int64_t int8(int row, int col) const;
    [[nodiscard]] double float8(int row, int col) const;
    /// A one-dimensional bigint[] without NULL elements (PostgreSQL's binary array format);
    /// an empty array gives an empty vector. Anything else throws ferry::error.
    [[nodiscard]] std::vector<std::int64_t> int8_array(int row, int col) const;

private:
    /// The field's 8 bytes (network order) as an integer; throws when the field is not 8 bytes.
    [[nodiscard]] std::uint64_t be64(int row, int col) const;
    std::unique_ptr<PGresult, decltype(&PQclear)> _r;
};

class binary_session {
public:
    /// `generic_plans`: the session plans each prepared statement once, without its parameter
    /// values (plan_cache_mode = force_generic_plan), and never by a sequential scan
    /// (enable_seqscan = off: a plan made while a table was nearly empty must not scan it once
    /// it is large). For statements that are index lookups by design, whose custom plans cost
    /// more to make than to run (the snapshot source's, snapshot_source.cpp).
    binary_session(const relay_options& options, ferry::metrics::counter reconnects,
                   std::string thread_name, bool generic_plans = false)
        : _o(options),
          _reconnects(reconnects),
          _thread(std::move(thread_name)),
          _generic_plans(generic_plans) {}

    /// Runs the prepared statement `name` (prepared from `sql` on first use in this session)
    /// with text parameters and a binary result. Connects first when there is no session.
    /// Throws ferry::error(retryable, "relay.<thread>") on any failure (the caller resets).
    binary_result exec(const std::string& name, const std::string& sql,
                       const std::vector<std::string>& params);

    /// One parameter of exec_params: its value in text or in binary format (binary_array.hpp
    /// for arrays; a bytea's binary form is its bytes), or SQL NULL.
    struct param {
        std::string value;
        bool binary = false;
        bool null = false;
    };

    /// As exec(), with each parameter in its own format, for a statement that may also return
    /// no rows (an INSERT: the result is then empty). The statement's SQL fixes each binary
    /// parameter's type with a cast ($1::uuid[]): the server reads the value with that type's
    /// receive function.
    binary_result exec_params(const std::string& name, const std::string& sql,
                              const std::vector<param>& params);

    /// A statement without parameters or rows (BEGIN, COMMIT, ROLLBACK); returns its command
    /// tag (a COMMIT of a failed transaction answers "ROLLBACK"). Throws as exec().
    std::string command(const char* sql);

    /// Drops the session (the next exec() reconnects).
    void reset() noexcept {
        _conn.reset();
        _prepared.clear();
    }

private:
    PGconn* get();
    [[noreturn]] void fail(std::string_view what, PGresult* r);
    /// Prepares `sql` as `name` on `conn` unless this session already did.
    void prepare(PGconn* conn, const std::string& name, const std::string& sql);

    const relay_options& _o;
    ferry::metrics::counter _reconnects;
    std::string _thread;
    std::unique_ptr<PGconn, decltype(&PQfinish)> _conn{nullptr, &PQfinish};
    std::unordered_set<std::string> _prepared;
    bool _had_connection = false;
    bool _generic_plans = false;
};

}  // namespace ferry::relay::detail
