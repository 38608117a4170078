#include "ferry/outbox/writer.hpp"

#include <array>
#include <string>
#include <utility>

#include "encode.hpp"
#include "ferry/common/error.hpp"
#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"
#include "validate.hpp"

namespace ferry::outbox {
namespace {

using detail::append_hex;
using detail::bytea_literal;
using detail::headers_json;

// One element of a PostgreSQL array literal, double-quoted: backslash and quote are escaped.
void append_array_element(std::string& out, std::string_view s) {
    out += '"';
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    out += '"';
}

// A bytea element of an array literal: "\\x<hex>" ("\\x" inside a quoted element is \x).
void append_bytea_element(std::string& out, std::string_view bytes) {
    out += "\"\\\\x";
    append_hex(out, bytes);
    out += '"';
}

// The array literals of one batch statement, built element by element: next() separates the
// elements, close() ends every literal.
template <std::size_t N>
struct array_literals {
    std::array<std::string, N> text;
    array_literals() { text.fill("{"); }
    void next(std::size_t i) {
        if (i == 0) return;
        for (auto& t : text) t += ',';
    }
    void close() {
        for (auto& t : text) t += '}';
    }
};

std::int64_t millis_or(const std::optional<std::chrono::milliseconds>& d, std::int64_t none) {
    return d ? static_cast<std::int64_t>(d->count()) : none;
}

void require_open(pqxx::transaction_base& tx, const char* what) {
    if (!tx.conn().is_open()) {
        throw ferry::error(error_kind::retry_transaction, "outbox.connection",
                           std::string(what) +
                               ": the database connection is closed; the transaction is lost, "
                               "run it again on a new connection",
                           "connection");
    }
}

}  // namespace

writer::writer(writer_options options) : _options(std::move(options)) {
    const auto schema = quote_identifier(_options.schema, "schema");
    _schema_quoted = schema;
    _insert_one_name = "ferry_enqueue_" + _options.schema;
    _insert_batch_name = "ferry_enqueue_batch_" + _options.schema;
    if (_options.max_payload_bytes == 0 || _options.max_key_bytes == 0 ||
        _options.max_headers_bytes == 0) {
        throw ferry::error(error_kind::permanent, "outbox.invalid_options",
                           "writer_options: size limits must be positive");
    }
    // The delay and expiry are measured from one clock_timestamp() of the database, so producer
    // hosts with skewed clocks cannot release a message early.
    if (_options.mode == emit_mode::wal) {
        // WAL mode (migrations 0070, 0071, 0075, 0106, 0110): the writer sends each frame's
        // variable part (detail::wal_frame_tail) and the statement prepends the fixed part, with
        // created_at and expires_at from one reading of the database clock taken after the
        // checks (wal_level, a usable registered slot). The checks are part of the statement,
        // planned once with it, and call wal_emit_refuse() only to raise wal_emit_guard()'s
        // errors: a plpgsql guard cost a function call and an SPI query in every transaction,
        // most of what one message cost beyond a plain INSERT (ADR 0070, twelfth session). The
        // registry is read through two functions with constant bodies that the planner inlines
        // (migration 0110), so the check reads pg_get_replication_slots() and no table: each
        // relation a transaction opens cost about as much as the emit (ADR 0070, twenty-second
        // session). The MATERIALIZED CTE checks once per statement. The function scan yields the
        // array in order and each row is emitted as it is produced, so a batch's messages are in
        // the WAL in input order.
        const std::string frame =
            "'\\x01'::bytea || CASE WHEN {ttl} < 0 THEN '\\x00'::bytea ELSE '\\x01'::bytea "
            "END || uuid_send({mid}) || int8send(c.us) || int8send(CASE WHEN {ttl} < 0 THEN 0 "
            "ELSE c.us + {ttl} * 1000 END) || {tail}";
        const auto fill = [&](std::string mid, std::string ttl, std::string tail) {
            std::string out = frame;
            for (const auto& [k, v] : {std::pair<std::string, std::string>{"{mid}", mid},
                                       {"{ttl}", ttl},
                                       {"{tail}", tail}}) {
                for (auto at = out.find(k); at != std::string::npos; at = out.find(k, at)) {
                    out.replace(at, k.size(), v);
                    at += v.size();
                }
            }
            return out;
        };
        const std::string guard =
            "WITH c AS MATERIALIZED (SELECT CASE WHEN current_setting('wal_level') <> 'logical' "
            "THEN " +
            schema +
            ".wal_emit_refuse('wal_level') WHEN NOT EXISTS (SELECT 1 FROM "
            "pg_get_replication_slots() AS s WHERE s.slot_name::text = ANY (" +
            schema + ".wal_registered_slots()) AND s.datoid = " + schema +
            ".wal_database_oid() AND s.plugin = 'pgoutput' AND s.wal_status IS DISTINCT FROM "
            "'lost') THEN " +
            schema +
            ".wal_emit_refuse('slot') ELSE (extract(epoch FROM clock_timestamp()) * "
            "1000000)::bigint END AS us) ";
        _insert_one_sql = guard + "SELECT pg_logical_emit_message(true, 'ferry', " +
                          fill("$1::uuid", "$2::bigint", "$3::bytea") + ") FROM c";
        _insert_batch_sql = guard + "SELECT count(pg_logical_emit_message(true, 'ferry', " +
                            fill("u.mid", "u.ttl_ms", "u.tail") +
                            ")) FROM c, unnest($1::uuid[], $2::bigint[], $3::bytea[]) AS "
                            "u(mid, ttl_ms, tail)";
        _insert_one_name = "ferry_emit_" + _options.schema;
        _insert_batch_name = "ferry_emit_batch_" + _options.schema;
        return;
    }
    _insert_one_sql =
        "INSERT INTO " + schema +
        ".outbox (message_id, topic, key, payload, headers, created_at, available_at, expires_at) "
        "SELECT $1::uuid, $2::text, $3::text, $4::bytea, $5::jsonb, c.t, "
        "c.t + $6::bigint * interval '1 millisecond', "
        "CASE WHEN $7::bigint < 0 THEN NULL ELSE c.t + $7::bigint * interval '1 millisecond' END "
        "FROM (SELECT clock_timestamp() AS t) AS c";
    _insert_batch_sql =
        "INSERT INTO " + schema +
        ".outbox (message_id, topic, key, payload, headers, created_at, available_at, expires_at) "
        "SELECT u.mid, u.topic, u.key, u.payload, u.headers, c.t, "
        "c.t + u.delay_ms * interval '1 millisecond', "
        "CASE WHEN u.ttl_ms < 0 THEN NULL ELSE c.t + u.ttl_ms * interval '1 millisecond' END "
        "FROM (SELECT clock_timestamp() AS t) AS c, "
        "unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::jsonb[], $6::bigint[], "
        "$7::bigint[]) WITH ORDINALITY AS u(mid, topic, key, payload, headers, delay_ms, ttl_ms, "
        "n) "
        "ORDER BY u.n";
}

void writer::validate(const message& m) const {
    detail::validate_message(m, _options);
    if (_options.mode == emit_mode::wal && m.deliver_after && m.deliver_after->count() > 0) {
        throw ferry::error(error_kind::permanent, "outbox.invalid_message",
                           "deliver_after: delayed delivery is not available in WAL mode "
                           "(outbox.mode: wal publishes a message when its transaction "
                           "commits); use the table mode for delayed messages",
                           "deliver_after");
    }
}

message_id writer::enqueue(pqxx::transaction_base& tx, const message& m) const {
    validate(m);
    require_open(tx, "enqueue");
    const auto id = message_id::generate();
    try {
        if (_options.mode == emit_mode::wal) {
            (void)internal::exec_cached(
                tx, _insert_one_name, _insert_one_sql, id.to_string(),
                millis_or(m.expires_after, -1),
                internal::bytea_param(detail::wal_frame_tail(_options.schema, m.topic, m.key,
                                                             headers_json(m.headers), m.payload)));
            return id;
        }
        (void)internal::exec_cached(tx, _insert_one_name, _insert_one_sql, id.to_string(), m.topic,
                                    m.key, bytea_literal(m.payload), headers_json(m.headers),
                                    millis_or(m.deliver_after, 0), millis_or(m.expires_after, -1));
    } catch (...) {
        internal::rethrow_translated("enqueue", "outbox");
    }
    return id;
}

namespace {

// The INSERT (or, in WAL mode, the emit_wal call) of one message as SQL text with literal
// values, to share a query string with the caller's statement. Same statement shape and clock
// rules as the prepared _insert_one_sql.
std::string literal_insert(pqxx::transaction_base& tx, const std::string& schema, emit_mode mode,
                           const message_id& id, const message& m) {
    const auto quote = [&](const std::string& s) { return tx.quote(s); };
    std::string sql;
    sql.reserve(260 + m.payload.size() * 2 + m.key.size() + m.topic.size());
    if (mode == emit_mode::wal) {
        sql += "SELECT ";
        sql += schema;
        sql += ".emit_wal('";
    } else {
        sql += "INSERT INTO ";
        sql += schema;
        sql +=
            ".outbox (message_id, topic, key, payload, headers, created_at, available_at, "
            "expires_at) SELECT '";
    }
    sql += id.to_string();
    sql += "'::uuid, ";
    sql += quote(m.topic);
    sql += "::text, ";
    sql += quote(m.key);
    sql += "::text, decode('";  // hex digits need no escaping, whatever standard_conforming_strings
    append_hex(sql, m.payload);
    sql += "', 'hex'), ";
    sql += quote(headers_json(m.headers));
    sql += "::jsonb, c.t, ";
    if (mode == emit_mode::table) {
        sql += "c.t + ";
        sql += std::to_string(millis_or(m.deliver_after, 0));
        sql += " * interval '1 millisecond', ";
    }
    if (m.expires_after) {
        sql += "c.t + " + std::to_string(m.expires_after->count()) + " * interval '1 millisecond'";
    } else {
        sql += "NULL";
    }
    sql += mode == emit_mode::wal ? ")" : "";
    sql += " FROM (SELECT clock_timestamp() AS t) AS c";
    return sql;
}

}  // namespace

std::pair<message_id, pqxx::result> writer::enqueue_with(pqxx::transaction_base& tx,
                                                         const message& m,
                                                         const std::string& next_sql) const {
    validate(m);
    require_open(tx, "enqueue");
    std::pair<message_id, pqxx::result> out;
    out.first = message_id::generate();
    // One simple-protocol query carrying both statements: one round trip, and libpqxx returns
    // the result of the last statement, the caller's. (pqxx::pipeline would also send both at
    // once, but measured slower than this on libpqxx 6.4: bench/results/enqueue.json.)
    std::string sql = literal_insert(tx, _schema_quoted, _options.mode, out.first, m);
    sql += ";\n";
    sql += next_sql;
    try {
        out.second = tx.exec(sql);
    } catch (...) {
        internal::rethrow_translated("enqueue", "outbox");
    }
    return out;
}

std::vector<message_id> writer::enqueue_batch(pqxx::transaction_base& tx,
                                              std::span<const message> batch) const {
    for (std::size_t i = 0; i < batch.size(); ++i) {
        try {
            validate(batch[i]);
        } catch (const ferry::error& e) {
            throw ferry::error(e.kind(), e.code(),
                               "enqueue_batch: message " + std::to_string(i) + ": " + e.what(),
                               e.field());
        }
    }
    std::vector<message_id> ids;
    if (batch.empty()) return ids;
    require_open(tx, "enqueue_batch");
    ids.reserve(batch.size());

    if (_options.mode == emit_mode::wal) return enqueue_batch_wal(tx, batch);
    array_literals<7> a;
    auto& [mids, topics, keys, payloads, headers, delays, ttls] = a.text;
    std::size_t payload_bytes = 0;
    for (const auto& m : batch) payload_bytes += m.payload.size();
    payloads.reserve(payload_bytes * 2 + batch.size() * 6 + 2);
    for (std::size_t i = 0; i < batch.size(); ++i) {
        const auto& m = batch[i];
        a.next(i);
        ids.push_back(message_id::generate());
        mids += ids.back().to_string();
        append_array_element(topics, m.topic);
        append_array_element(keys, m.key);
        append_bytea_element(payloads, m.payload);
        append_array_element(headers, headers_json(m.headers));
        delays += std::to_string(millis_or(m.deliver_after, 0));
        ttls += std::to_string(millis_or(m.expires_after, -1));
    }
    a.close();
    try {
        (void)internal::exec_cached(tx, _insert_batch_name, _insert_batch_sql, mids, topics, keys,
                                    payloads, headers, delays, ttls);
    } catch (...) {
        internal::rethrow_translated("enqueue_batch", "outbox");
    }
    return ids;
}

std::vector<message_id> writer::enqueue_batch_wal(pqxx::transaction_base& tx,
                                                  std::span<const message> batch) const {
    std::vector<message_id> ids;
    ids.reserve(batch.size());
    array_literals<3> a;
    auto& [mids, ttls, tails] = a.text;
    std::size_t bytes = 0;
    for (const auto& m : batch) bytes += m.payload.size() + m.topic.size() + m.key.size() + 64;
    tails.reserve(bytes * 2 + batch.size() * 8 + 2);
    for (std::size_t i = 0; i < batch.size(); ++i) {
        const auto& m = batch[i];
        a.next(i);
        ids.push_back(message_id::generate());
        mids += ids.back().to_string();
        ttls += std::to_string(millis_or(m.expires_after, -1));
        append_bytea_element(tails, detail::wal_frame_tail(_options.schema, m.topic, m.key,
                                                           headers_json(m.headers), m.payload));
    }
    a.close();
    try {
        (void)internal::exec_cached(tx, _insert_batch_name, _insert_batch_sql, mids, ttls, tails);
    } catch (...) {
        internal::rethrow_translated("enqueue_batch", "outbox");
    }
    return ids;
}

void validate_topic(std::string_view topic, std::string_view field) {
    detail::validate_topic(topic, field);
}

}  // namespace ferry::outbox
