#include "ferry/outbox/half.hpp"

#include "encode.hpp"
#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"
#include "validate.hpp"

namespace ferry::outbox {
namespace {

std::string interval_or_null(const std::optional<std::chrono::milliseconds>& d) {
    // Rendered as text for an ::interval cast; empty string means NULL (handled in SQL).
    return d ? std::to_string(d->count()) + " milliseconds" : std::string{};
}

half_state parse_state(const std::string& s) {
    if (s == "pending") return half_state::pending;
    if (s == "committed") return half_state::committed;
    if (s == "rolled_back") return half_state::rolled_back;
    if (s == "parked") return half_state::parked;
    throw ferry::error(error_kind::permanent, "outbox.database",
                       "unexpected half message state '" + s + "'");
}

// Calls decide_half and maps its custom SQLSTATEs onto ferry::error.
half_state decide(const writer& w, pqxx::transaction_base& tx, const message_id& id,
                  const char* decision, const char* decided_by = "producer") {
    const auto schema = quote_identifier(w.options().schema, "schema");
    const std::string op = std::string(decision) + " half message " + id.to_string();
    try {
        const auto r =
            internal::exec(tx, "SELECT " + schema + ".decide_half($1::uuid, $2, $3)",
                           id.to_string(), std::string(decision), std::string(decided_by));
        return parse_state(r[0][0].as<std::string>());
    } catch (const pqxx::sql_error& e) {
        const auto state = e.sqlstate();
        std::string msg = e.what();
        while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
        if (const auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
        if (msg.rfind("ERROR:  ", 0) == 0) msg.erase(0, 8);
        if (state == "FH001") {
            throw ferry::error(error_kind::permanent, "outbox.half_conflict", op + ": " + msg,
                               "id");
        }
        if (state == "FH002") {
            throw ferry::error(error_kind::permanent, "outbox.half_unknown", op + ": " + msg, "id");
        }
        internal::rethrow_translated(op, "outbox");
    } catch (...) {
        internal::rethrow_translated(op, "outbox");
    }
}

template <typename Fn>
auto in_own_transaction(pqxx::connection& conn, Fn&& fn) {
    try {
        pqxx::work tx{conn};
        auto result = fn(tx);
        tx.commit();
        return result;
    } catch (const ferry::error&) {
        throw;
    } catch (...) {
        internal::rethrow_translated("half message", "outbox");
    }
}

}  // namespace

std::string_view to_string(half_state s) noexcept {
    switch (s) {
        case half_state::pending:
            return "pending";
        case half_state::committed:
            return "committed";
        case half_state::rolled_back:
            return "rolled_back";
        case half_state::parked:
            return "parked";
    }
    return "unknown";
}

message_id prepare(const writer& w, pqxx::transaction_base& tx, const message& m,
                   const std::string& tx_ref, const half_options& o) {
    w.validate(m);
    if (tx_ref.empty() || tx_ref.size() > 1024) {
        throw ferry::error(error_kind::permanent, "outbox.invalid_tx_ref",
                           "tx_ref: must be 1-1024 characters", "tx_ref");
    }
    if (!detail::is_valid_utf8(tx_ref) || tx_ref.find('\0') != std::string::npos) {
        throw ferry::error(error_kind::permanent, "outbox.invalid_tx_ref",
                           "tx_ref: must be valid UTF-8 text without NUL bytes", "tx_ref");
    }
    if (o.producer_group.empty() || o.producer_group.size() > 255) {
        throw ferry::error(error_kind::permanent, "outbox.invalid_producer_group",
                           "producer_group: must be 1-255 characters", "producer_group");
    }
    if ((o.check_first_after && o.check_first_after->count() < 0) ||
        (o.check_interval && o.check_interval->count() <= 0) ||
        (o.max_checks && *o.max_checks < 0)) {
        throw ferry::error(error_kind::permanent, "outbox.invalid_checkback",
                           "check_first_after must not be negative, check_interval must be "
                           "positive and max_checks must not be negative",
                           "half_options");
    }
    const auto id = message_id::generate();
    const auto schema = quote_identifier(w.options().schema, "schema");
    const auto headers = detail::headers_json(m.headers);
    const auto payload = detail::bytea_literal(m.payload);
    try {
        (void)internal::exec(
            tx,
            "SELECT " + schema +
                ".prepare($1, $2, $3::bytea, $4::jsonb, $5, $6, NULLIF($7, ''), "
                "NULLIF($8, '')::interval, NULLIF($9, '')::interval, NULLIF($10, -1), $11::uuid, "
                "NULLIF($12, '')::interval, NULLIF($13, '')::interval)",
            m.topic, m.key, payload, headers, tx_ref, o.producer_group,
            o.producer_instance.value_or(""),
            interval_or_null(o.check_first_after.value_or(w.options().check_first_after)),
            interval_or_null(o.check_interval.value_or(w.options().check_interval)),
            o.max_checks.value_or(w.options().max_checks), id.to_string(),
            interval_or_null(m.deliver_after), interval_or_null(m.expires_after));
    } catch (...) {
        internal::rethrow_translated("prepare", "outbox");
    }
    return id;
}

message_id prepare(const writer& w, pqxx::connection& conn, const message& m,
                   const std::string& tx_ref, const half_options& o) {
    return in_own_transaction(
        conn, [&](pqxx::transaction_base& tx) { return prepare(w, tx, m, tx_ref, o); });
}

half_state commit(const writer& w, pqxx::transaction_base& tx, const message_id& id) {
    return decide(w, tx, id, "commit");
}
half_state commit(const writer& w, pqxx::connection& conn, const message_id& id) {
    return in_own_transaction(
        conn, [&](pqxx::transaction_base& tx) { return decide(w, tx, id, "commit"); });
}
half_state rollback(const writer& w, pqxx::transaction_base& tx, const message_id& id) {
    return decide(w, tx, id, "rollback");
}
half_state rollback(const writer& w, pqxx::connection& conn, const message_id& id) {
    return in_own_transaction(
        conn, [&](pqxx::transaction_base& tx) { return decide(w, tx, id, "rollback"); });
}

std::optional<half_state> parse_half_state(std::string_view text) noexcept {
    if (text == "pending") return half_state::pending;
    if (text == "committed") return half_state::committed;
    if (text == "rolled_back") return half_state::rolled_back;
    if (text == "parked") return half_state::parked;
    return std::nullopt;
}

half_state decide_as_operator(const writer& w, pqxx::connection& conn, const message_id& id,
                              half_decision decision) {
    const char* d = decision == half_decision::commit ? "commit" : "rollback";
    return in_own_transaction(
        conn, [&](pqxx::transaction_base& tx) { return decide(w, tx, id, d, "operator"); });
}

namespace {

constexpr const char* half_columns =
    "SELECT message_id::text, topic, key, tx_ref, producer_group, state, decided_by, "
    "check_count, max_checks, last_check_result, producer_instance, "
    "to_char(prepared_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM ";

half_message_info half_from_row(const pqxx::row& r) {
    half_message_info info;
    auto id = message_id::parse(r[0].as<std::string>());
    if (!id) {
        throw ferry::error(error_kind::permanent, "outbox.database",
                           "half_message holds a message_id that is not a UUID");
    }
    info.id = *id;
    info.topic = r[1].as<std::string>();
    info.key = r[2].as<std::string>();
    info.tx_ref = r[3].as<std::string>();
    info.producer_group = r[4].as<std::string>();
    info.state = parse_state(r[5].as<std::string>());
    if (!r[6].is_null()) info.decided_by = r[6].as<std::string>();
    info.check_count = r[7].as<int>();
    info.max_checks = r[8].as<int>();
    if (!r[9].is_null()) info.last_check_result = r[9].as<std::string>();
    if (!r[10].is_null()) info.producer_instance = r[10].as<std::string>();
    info.prepared_at = r[11].as<std::string>();
    return info;
}

}  // namespace

std::optional<half_message_info> find_half(const writer& w, pqxx::connection& conn,
                                           const message_id& id) {
    const auto schema = quote_identifier(w.options().schema, "schema");
    try {
        pqxx::read_transaction tx{conn};
        const auto r = internal::exec(
            tx, std::string(half_columns) + schema + ".half_message WHERE message_id = $1::uuid",
            id.to_string());
        if (r.empty()) return std::nullopt;
        return half_from_row(r[0]);
    } catch (...) {
        internal::rethrow_translated("find half message", "outbox");
    }
}

std::vector<half_message_info> list_half(const writer& w, pqxx::connection& conn,
                                         const half_filter& filter) {
    if (filter.limit < 1 || filter.limit > 100000) {
        throw ferry::error(error_kind::permanent, "outbox.invalid_limit",
                           "limit: must be 1-100000, got " + std::to_string(filter.limit), "limit");
    }
    const auto schema = quote_identifier(w.options().schema, "schema");
    const std::string state = filter.state ? std::string(to_string(*filter.state)) : "";
    try {
        pqxx::read_transaction tx{conn};
        const auto rows = internal::exec(
            tx,
            std::string(half_columns) + schema +
                ".half_message WHERE ($1 = '' OR state = $1) AND ($2 = '' OR producer_group = $2) "
                "ORDER BY prepared_at, message_id LIMIT $3",
            state, filter.producer_group.value_or(""), filter.limit);
        std::vector<half_message_info> out;
        out.reserve(rows.size());
        for (const auto& r : rows) out.push_back(half_from_row(r));
        return out;
    } catch (...) {
        internal::rethrow_translated("list half messages", "outbox");
    }
}

}  // namespace ferry::outbox
