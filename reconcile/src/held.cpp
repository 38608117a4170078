#include "ferry/reconcile/held.hpp"

#include <cctype>

#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/internal/snapshot_sql.hpp"
#include "utc_text.hpp"

namespace ferry::reconcile {
namespace {

using internal::exec;

std::string unhex(const std::string& hex) {
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return c - 'A' + 10;
    };
    std::string out;
    out.reserve(hex.size() / 2);
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        out += static_cast<char>((nibble(hex[i]) << 4) | nibble(hex[i + 1]));
    }
    return out;
}

std::string require_uuid(const std::string& id) {
    if (!is_uuid(id)) {
        throw ferry::error(error_kind::permanent, "reconcile.invalid_id",
                           "\"" + id + "\" is not a message id (a UUID)", "ID");
    }
    return id;
}

// Columns shared by expired and parked (alias m); the table-specific ones follow.
std::string held_columns(const std::string& held_at) {
    return "m.id, m.message_id::text, m.topic, m.key, encode(m.payload, 'hex'), m.headers::text, " +
           utc_text_or_empty("m.created_at") + ", " + utc_text_or_empty("m.available_at") + ", " +
           utc_text_or_empty("m.expires_at") + ", " + utc_text_or_empty("m." + held_at);
}

held_message to_held(const pqxx::row& r) {
    held_message m;
    m.id = r[0].as<std::int64_t>();
    m.message_id = r[1].as<std::string>();
    m.topic = r[2].as<std::string>();
    m.key = r[3].as<std::string>();
    m.payload = unhex(r[4].as<std::string>());
    m.headers_json = r[5].as<std::string>();
    m.created_at = r[6].as<std::string>();
    m.available_at = r[7].as<std::string>();
    m.expires_at = r[8].as<std::string>();
    m.held_at = r[9].as<std::string>();
    return m;
}

}  // namespace

bool is_uuid(const std::string& t) noexcept {
    if (t.size() != 36) return false;
    for (std::size_t i = 0; i < t.size(); ++i) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (t[i] != '-') return false;
        } else if (!std::isxdigit(static_cast<unsigned char>(t[i]))) {
            return false;
        }
    }
    return true;
}

struct held_store::impl {
    std::unique_ptr<pqxx::connection> conn;
    std::string q;
};

held_store::held_store(const std::string& dsn, std::string schema,
                       std::chrono::milliseconds connect_timeout)
    : _impl(std::make_unique<impl>()) {
    _impl->q = quote_identifier(schema, "postgres.schema");
    internal::session_settings s;
    s.connect_timeout = connect_timeout;
    s.statement_timeout = std::chrono::minutes(1);
    s.application_name = "ferryctl-held";
    _impl->conn = internal::connect_unique(dsn, s, "reconcile");
}

held_store::~held_store() = default;

std::vector<held_message> held_store::expired(const held_filter& f) {
    try {
        pqxx::read_transaction tx{*_impl->conn};
        std::vector<held_message> out;
        for (const auto& r :
             exec(tx,
                  "SELECT " + held_columns("expired_at") + " FROM " + _impl->q +
                      ".expired m WHERE ($1 = '' OR m.topic = $1) AND ($2 = '' OR m.key = $2) "
                      "AND ($3 = '' OR m.expired_at >= nullif($3, '')::timestamptz) "
                      "ORDER BY m.expired_at, m.id LIMIT $4",
                  f.topic.value_or(""), f.key.value_or(""), f.since.value_or(""), f.limit)) {
            out.push_back(to_held(r));
        }
        return out;
    } catch (...) {
        internal::rethrow_translated("expired list", "reconcile");
    }
}

std::optional<held_message> held_store::expired_message(const std::string& message_id) {
    require_uuid(message_id);
    try {
        pqxx::read_transaction tx{*_impl->conn};
        const auto r = exec(tx,
                            "SELECT " + held_columns("expired_at") + " FROM " + _impl->q +
                                ".expired m WHERE m.message_id = $1::uuid",
                            message_id);
        if (r.empty()) return std::nullopt;
        return to_held(r[0]);
    } catch (...) {
        internal::rethrow_translated("expired show", "reconcile");
    }
}

redrive_status held_store::redrive_expired(const std::string& message_id) {
    require_uuid(message_id);
    try {
        pqxx::work tx{*_impl->conn};
        const auto& q = _impl->q;
        // Lock the expired row first, so two re-drives of one message serialize here.
        const auto found =
            exec(tx, "SELECT 1 FROM " + q + ".expired WHERE message_id = $1::uuid FOR UPDATE",
                 message_id);
        if (found.empty()) return redrive_status::not_found;
        if (exec(tx, "SELECT " + q + ".outbox_pending($1::uuid)", message_id)[0][0].as<bool>()) {
            return redrive_status::already_in_outbox;
        }
        // requeue() (migration 0074): an outbox row in polling mode, a logical decoding
        // message in WAL mode, so the re-drive reaches whichever relay the schema runs.
        const auto moved =
            exec(tx,
                 "WITH gone AS (DELETE FROM " + q +
                     ".expired WHERE message_id = $1::uuid RETURNING *) SELECT " + q +
                     ".requeue(message_id, topic, key, payload, headers, created_at) FROM gone",
                 message_id);
        if (moved.empty() || !moved[0][0].as<bool>()) return redrive_status::not_found;
        tx.commit();
        return redrive_status::redriven;
    } catch (...) {
        internal::rethrow_translated("expired redrive", "reconcile");
    }
}

namespace {
std::string parked_select(const std::string& q) {
    return "SELECT " + held_columns("parked_at") +
           ", m.reason, m.error_code, m.attempts, (SELECT count(*) FROM " + q +
           ".outbox o WHERE o.topic = m.topic AND o.key = m.key AND " +
           internal::snapshot_unfinished(q, "o") + ") FROM " + q + ".parked m ";
}
held_message to_parked(const pqxx::row& r) {
    auto m = to_held(r);
    m.reason = r[10].as<std::string>();
    m.error_code = r[11].as<std::string>();
    m.attempts = r[12].as<int>();
    m.held_back = r[13].as<std::int64_t>();
    return m;
}
}  // namespace

std::vector<held_message> held_store::parked(const held_filter& f) {
    try {
        pqxx::read_transaction tx{*_impl->conn};
        std::vector<held_message> out;
        for (const auto& r :
             exec(tx,
                  parked_select(_impl->q) +
                      "WHERE ($1 = '' OR m.topic = $1) AND ($2 = '' OR m.key = $2) "
                      "AND ($3 = '' OR m.parked_at >= nullif($3, '')::timestamptz) "
                      "ORDER BY m.id LIMIT $4",
                  f.topic.value_or(""), f.key.value_or(""), f.since.value_or(""), f.limit)) {
            out.push_back(to_parked(r));
        }
        return out;
    } catch (...) {
        internal::rethrow_translated("parked list", "reconcile");
    }
}

std::optional<held_message> held_store::parked_message(const std::string& id) {
    const bool by_uuid = is_uuid(id);
    if (!by_uuid &&
        (id.empty() || id.size() > 18 || id.find_first_not_of("0123456789") != std::string::npos)) {
        throw ferry::error(error_kind::permanent, "reconcile.invalid_id",
                           "\"" + id + "\" is neither a parked id (a number) nor a message id",
                           "ID");
    }
    try {
        pqxx::read_transaction tx{*_impl->conn};
        const auto r = by_uuid
                           ? exec(tx, parked_select(_impl->q) + "WHERE m.message_id = $1::uuid", id)
                           : exec(tx, parked_select(_impl->q) + "WHERE m.id = $1::bigint", id);
        if (r.empty()) return std::nullopt;
        return to_parked(r[0]);
    } catch (...) {
        internal::rethrow_translated("parked show", "reconcile");
    }
}

namespace {
// retry_parked() / discard_parked() (migrations 0002, 0072): true when the row was parked.
bool parked_action(pqxx::connection& conn, const std::string& q, const char* function,
                   std::int64_t id, const char* what) {
    try {
        pqxx::work tx{conn};
        const bool ok = exec(tx, "SELECT " + q + "." + function + "($1)", id)[0][0].as<bool>();
        tx.commit();
        return ok;
    } catch (...) {
        internal::rethrow_translated(what, "reconcile");
    }
}
}  // namespace

bool held_store::retry_parked(std::int64_t id) {
    return parked_action(*_impl->conn, _impl->q, "retry_parked", id, "parked retry");
}

bool held_store::discard_parked(std::int64_t id) {
    return parked_action(*_impl->conn, _impl->q, "discard_parked", id, "parked discard");
}

std::optional<half_details> held_store::half_message(const std::string& message_id) {
    require_uuid(message_id);
    try {
        pqxx::read_transaction tx{*_impl->conn};
        const auto r =
            exec(tx,
                 "SELECT h.message_id::text, h.topic, h.key, h.tx_ref, h.producer_group, "
                 "coalesce(h.producer_instance, ''), h.state, encode(h.payload, 'hex'), "
                 "h.headers::text, " +
                     utc_text_or_empty("h.prepared_at") + ", " + utc_text_or_empty("h.decided_at") +
                     ", coalesce(h.decided_by, ''), " + utc_text_or_empty("h.next_check_at") +
                     ", " + utc_text_or_empty("h.last_check_at") +
                     ", coalesce(h.last_check_result, ''), h.check_count, h.max_checks, "
                     "extract(epoch FROM h.check_interval)::float8, "
                     "extract(epoch FROM h.check_first_after)::float8, EXISTS (SELECT 1 FROM " +
                     _impl->q + ".outbox o WHERE o.message_id = h.message_id) FROM " + _impl->q +
                     ".half_message h WHERE h.message_id = $1::uuid",
                 message_id);
        if (r.empty()) return std::nullopt;
        const auto& x = r[0];
        half_details h;
        h.message_id = x[0].as<std::string>();
        h.topic = x[1].as<std::string>();
        h.key = x[2].as<std::string>();
        h.tx_ref = x[3].as<std::string>();
        h.producer_group = x[4].as<std::string>();
        h.producer_instance = x[5].as<std::string>();
        h.state = x[6].as<std::string>();
        h.payload = unhex(x[7].as<std::string>());
        h.headers_json = x[8].as<std::string>();
        h.prepared_at = x[9].as<std::string>();
        h.decided_at = x[10].as<std::string>();
        h.decided_by = x[11].as<std::string>();
        h.next_check_at = x[12].as<std::string>();
        h.last_check_at = x[13].as<std::string>();
        h.last_check_result = x[14].as<std::string>();
        h.check_count = x[15].as<int>();
        h.max_checks = x[16].as<int>();
        h.check_interval_s = x[17].as<double>();
        h.check_first_after_s = x[18].as<double>();
        h.in_outbox = x[19].as<bool>();
        return h;
    } catch (...) {
        internal::rethrow_translated("half show", "reconcile");
    }
}

}  // namespace ferry::reconcile
