#include "ferry/retry/tables.hpp"

#include <nlohmann/json.hpp>

#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"

namespace ferry::retry {
namespace {

std::string to_hex(const std::string& s) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    out.reserve(s.size() * 2);
    for (unsigned char c : s) {
        out.push_back(digits[c >> 4]);
        out.push_back(digits[c & 15]);
    }
    return out;
}

std::string from_hex(const std::string& h) {
    auto val = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return 0;
    };
    std::string out;
    out.reserve(h.size() / 2);
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
        out.push_back(static_cast<char>(val(h[i]) * 16 + val(h[i + 1])));
    }
    return out;
}

std::string headers_json(const std::vector<header>& hs) {
    auto arr = nlohmann::json::array();
    for (const auto& h : hs) {
        arr.push_back(nlohmann::json::array(
            {h.name, h.value ? nlohmann::json(*h.value) : nlohmann::json(nullptr)}));
    }
    // Header values are usually text; replace invalid UTF-8 rather than fail the insert.
    return arr.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<header> parse_headers(const std::string& text) {
    std::vector<header> out;
    const auto j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_array()) return out;
    for (const auto& e : j) {
        if (!e.is_array() || e.size() != 2 || !e[0].is_string()) continue;
        header h;
        h.name = e[0].get<std::string>();
        if (e[1].is_string()) h.value = e[1].get<std::string>();
        out.push_back(std::move(h));
    }
    return out;
}

constexpr const char* ts_fmt = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";

std::string ts(const std::string& col) {
    return "to_char(" + col + " AT TIME ZONE 'UTC', " + ts_fmt + ")";
}

// Columns read back for a stored message, in this order.
const char* message_cols =
    "topic, partition, \"offset\", key, coalesce(message_id::text, ''), encode(payload, 'hex'), "
    "headers::text, ordered";

stored_message read_message(const pqxx::row& r, int base) {
    stored_message m;
    m.topic = r[base].as<std::string>();
    m.partition = r[base + 1].as<int>();
    m.offset = r[base + 2].as<long long>();
    if (!r[base + 3].is_null()) m.key = r[base + 3].as<std::string>();
    m.message_id = r[base + 4].as<std::string>();
    m.payload = from_hex(r[base + 5].as<std::string>());
    m.headers = parse_headers(r[base + 6].as<std::string>());
    m.ordered = r[base + 7].as<bool>();
    return m;
}

// $1 id (-1 = any), $2 group, $3 topic, $4 has key, $5 key, $6 since, $7 until, $8 replayed too.
const char* filter_sql =
    "($1::bigint < 0 OR id = $1::bigint) AND ($2::text = '' OR group_id = $2::text) "
    "AND ($3::text = '' OR topic = $3::text) "
    "AND (NOT $4::boolean OR key = $5::text OR ($5::text = '' AND key IS NULL)) "
    "AND ($6::text = '' OR dead_at >= $6::text::timestamptz) "
    "AND ($7::text = '' OR dead_at < $7::text::timestamptz) "
    "AND ($8::boolean OR replayed_at IS NULL)";

template <typename... Extra>
pqxx::result exec_filtered(pqxx::transaction_base& tx, const std::string& sql,
                           const dead_letter_filter& f, Extra&&... extra) {
    return internal::exec(tx, sql, f.id.value_or(-1), f.group, f.topic, f.key.has_value(),
                          f.key.value_or(""), f.since, f.until, f.include_replayed,
                          std::forward<Extra>(extra)...);
}

}  // namespace

retry_table::retry_table(const std::string& schema, std::string group)
    : _schema(quote_identifier(schema, "schema")), _group(std::move(group)) {}

bool retry_table::schedule(pqxx::transaction_base& tx, const stored_message& m, int attempts,
                           std::chrono::milliseconds delay, const std::string& error) const {
    try {
        const auto r = internal::exec(
            tx,
            "INSERT INTO " + _schema +
                ".retry (group_id, topic, partition, \"offset\", key, message_id, payload, "
                "headers, "
                "ordered, attempts, next_attempt_at, last_error, first_failed_at, last_failed_at) "
                "VALUES ($1, $2, $3, $4, CASE WHEN $5::boolean THEN $6::text END, $7::uuid, "
                "decode($8, 'hex'), $9::jsonb, $10, $11, "
                "now() + $12::bigint * interval '1 millisecond', $13, now(), now()) "
                "ON CONFLICT (group_id, message_id) DO NOTHING",
            _group, m.topic, m.partition, static_cast<long long>(m.offset), m.key.has_value(),
            m.key.value_or(""), m.message_id, to_hex(m.payload), headers_json(m.headers), m.ordered,
            attempts, static_cast<long long>(delay.count()), error);
        return r.affected_rows() == 1;
    } catch (...) {
        internal::rethrow_translated("retry schedule", "retry");
    }
}

bool retry_table::park_if_blocked(pqxx::transaction_base& tx, const stored_message& m) const {
    if (!m.key || !m.ordered) return false;
    try {
        const auto r = internal::exec(
            tx,
            "WITH b AS (SELECT EXISTS (SELECT 1 FROM " + _schema +
                ".retry e WHERE e.group_id = $1 AND e.topic = $2 AND e.key = $5) "
                "OR EXISTS (SELECT 1 FROM " +
                _schema +
                ".dead_letter d WHERE d.group_id = $1 AND d.topic = $2 AND d.key = $5 "
                "AND d.blocks_key AND d.replayed_at IS NULL) AS blocked), "
                "ins AS (INSERT INTO " +
                _schema +
                ".retry (group_id, topic, partition, \"offset\", key, message_id, payload, "
                "headers, ordered, attempts, next_attempt_at, last_error) "
                "SELECT $1, $2, $3, $4, $5, $6::uuid, decode($7, 'hex'), $8::jsonb, true, 0, "
                "now(), "
                "'waiting behind an earlier message of its key' FROM b WHERE b.blocked "
                "ON CONFLICT (group_id, message_id) DO NOTHING RETURNING 1) "
                "SELECT blocked FROM b",
            _group, m.topic, m.partition, static_cast<long long>(m.offset), *m.key, m.message_id,
            to_hex(m.payload), headers_json(m.headers));
        return r[0][0].as<bool>();
    } catch (...) {
        internal::rethrow_translated("retry park", "retry");
    }
}

std::vector<std::pair<std::string, std::optional<std::string>>> retry_table::blocked_keys(
    pqxx::transaction_base& tx) const {
    std::vector<std::pair<std::string, std::optional<std::string>>> out;
    try {
        const auto r = internal::exec(
            tx,
            "SELECT DISTINCT topic, key FROM " + _schema +
                ".retry WHERE group_id = $1 AND ordered AND key IS NOT NULL "
                "UNION SELECT DISTINCT topic, key FROM " +
                _schema +
                ".dead_letter WHERE group_id = $1 AND blocks_key AND replayed_at IS NULL "
                "AND key IS NOT NULL",
            _group);
        for (const auto& row : r)
            out.emplace_back(row[0].as<std::string>(), row[1].as<std::string>());
    } catch (...) {
        internal::rethrow_translated("retry blocked_keys", "retry");
    }
    return out;
}

namespace {

// The claim of due head-of-key rows: every claim_* below. `one_key` adds topic = $5 AND key = $6.
std::string claim_sql(const std::string& schema, bool one_key, std::string_view cols) {
    return "WITH due AS (SELECT r.id FROM " + schema +
           ".retry r WHERE r.group_id = $1 AND r.next_attempt_at <= now() "
           "AND (r.claim_expires_at IS NULL OR r.claim_expires_at < now()) " +
           (one_key ? std::string("AND r.topic = $5 AND r.key = $6 ") : std::string()) +
           "AND (NOT r.ordered OR r.key IS NULL OR ("
           "  NOT EXISTS (SELECT 1 FROM " +
           schema +
           ".retry e WHERE e.group_id = r.group_id AND e.topic = r.topic AND e.key = r.key "
           "    AND (e.partition, e.\"offset\") < (r.partition, r.\"offset\")) "
           "  AND NOT EXISTS (SELECT 1 FROM " +
           schema +
           ".dead_letter d WHERE d.group_id = r.group_id AND d.topic = r.topic "
           "    AND d.key = r.key AND d.blocks_key AND d.replayed_at IS NULL))) "
           "ORDER BY r.next_attempt_at, r.id LIMIT $3 FOR UPDATE SKIP LOCKED) "
           "UPDATE " +
           schema +
           ".retry r SET claimed_by = $2, "
           "claim_expires_at = now() + $4::bigint * interval '1 millisecond' "
           "FROM due WHERE r.id = due.id RETURNING r.id, r.group_id, r.attempts, "
           "coalesce(r.last_error, ''), " +
           std::string(cols);
}

std::vector<retry_row> read_claimed(const pqxx::result& r) {
    std::vector<retry_row> out;
    for (const auto& row : r) {
        retry_row rr;
        rr.id = row[0].as<long long>();
        rr.group = row[1].as<std::string>();
        rr.attempts = row[2].as<int>();
        rr.last_error = row[3].as<std::string>();
        rr.message = read_message(row, 4);
        out.push_back(std::move(rr));
    }
    return out;
}

}  // namespace

std::vector<retry_row> retry_table::claim_due(pqxx::transaction_base& tx, const std::string& owner,
                                              int limit,
                                              std::chrono::milliseconds claim_ttl) const {
    try {
        return read_claimed(internal::exec(tx, claim_sql(_schema, false, message_cols), _group,
                                           owner, limit,
                                           static_cast<long long>(claim_ttl.count())));
    } catch (...) {
        internal::rethrow_translated("retry claim_due", "retry");
    }
}

std::optional<retry_row> retry_table::claim_key_head(pqxx::transaction_base& tx,
                                                     const std::string& owner,
                                                     const std::string& topic,
                                                     const std::string& key,
                                                     std::chrono::milliseconds claim_ttl) const {
    try {
        auto rows =
            read_claimed(internal::exec(tx, claim_sql(_schema, true, message_cols), _group, owner,
                                        1, static_cast<long long>(claim_ttl.count()), topic, key));
        if (rows.empty()) return std::nullopt;
        return std::move(rows.front());
    } catch (...) {
        internal::rethrow_translated("retry claim_key_head", "retry");
    }
}

bool retry_table::remove(pqxx::transaction_base& tx, long long id, const std::string& owner) const {
    try {
        return internal::exec(tx,
                              "DELETE FROM " + _schema + ".retry WHERE id = $1 AND claimed_by = $2",
                              id, owner)
                   .affected_rows() == 1;
    } catch (...) {
        internal::rethrow_translated("retry remove", "retry");
    }
}

bool retry_table::reschedule(pqxx::transaction_base& tx, long long id, const std::string& owner,
                             int attempts, std::chrono::milliseconds delay,
                             const std::string& error) const {
    try {
        return internal::exec(
                   tx,
                   "UPDATE " + _schema +
                       ".retry SET attempts = $3, next_attempt_at = now() + $4::bigint * interval "
                       "'1 millisecond', last_error = $5, first_failed_at = coalesce("
                       "first_failed_at, now()), last_failed_at = now(), claimed_by = NULL, "
                       "claim_expires_at = NULL WHERE id = $1 AND claimed_by = $2",
                   id, owner, attempts, static_cast<long long>(delay.count()), error)
                   .affected_rows() == 1;
    } catch (...) {
        internal::rethrow_translated("retry reschedule", "retry");
    }
}

bool retry_table::move_to_dead_letter(pqxx::transaction_base& tx, long long id,
                                      const std::string& owner, int attempts,
                                      const std::string& reason, const std::string& code,
                                      bool blocks_key) const {
    try {
        return internal::exec(
                   tx,
                   "WITH moved AS (DELETE FROM " + _schema +
                       ".retry WHERE id = $1 AND claimed_by = $2 RETURNING *) "
                       "INSERT INTO " +
                       _schema +
                       ".dead_letter (group_id, topic, partition, \"offset\", key, message_id, "
                       "payload, headers, ordered, reason, error_code, attempts, first_failed_at, "
                       "last_failed_at, replayable, blocks_key) "
                       "SELECT group_id, topic, partition, \"offset\", key, message_id, payload, "
                       "headers, ordered, $4, $5, $3, coalesce(first_failed_at, now()), now(), "
                       "true, "
                       "$6::boolean AND ordered AND key IS NOT NULL FROM moved",
                   id, owner, attempts, reason, code, blocks_key)
                   .affected_rows() == 1;
    } catch (...) {
        internal::rethrow_translated("retry move_to_dead_letter", "retry");
    }
}

long long retry_table::count(pqxx::transaction_base& tx) const {
    try {
        return internal::exec(tx, "SELECT count(*) FROM " + _schema + ".retry WHERE group_id = $1",
                              _group)[0][0]
            .as<long long>();
    } catch (...) {
        internal::rethrow_translated("retry count", "retry");
    }
}

// ---------------------------------------------------------------------------------------------

dead_letters::dead_letters(const std::string& schema)
    : _schema(quote_identifier(schema, "schema")) {}

void dead_letters::add(pqxx::transaction_base& tx, const std::string& group,
                       const stored_message& m, const std::string& reason, const std::string& code,
                       int attempts, bool replayable, bool blocks_key) const {
    try {
        (void)internal::exec(
            tx,
            "INSERT INTO " + _schema +
                ".dead_letter (group_id, topic, partition, \"offset\", key, message_id, payload, "
                "headers, ordered, reason, error_code, attempts, replayable, blocks_key) "
                "VALUES ($1, $2, $3, $4, CASE WHEN $5::boolean THEN $6::text END, "
                "CASE WHEN $7::text = '' THEN NULL ELSE $7::text::uuid END, decode($8, 'hex'), "
                "$9::jsonb, $10, $11, $12, $13, $14, $15)",
            group, m.topic, m.partition, static_cast<long long>(m.offset), m.key.has_value(),
            m.key.value_or(""), m.message_id, to_hex(m.payload), headers_json(m.headers), m.ordered,
            reason, code, attempts, replayable && !m.message_id.empty(),
            blocks_key && m.ordered && m.key.has_value());
    } catch (...) {
        internal::rethrow_translated("dead letter add", "retry");
    }
}

std::vector<dead_letter_row> dead_letters::list(pqxx::transaction_base& tx,
                                                const dead_letter_filter& f) const {
    std::vector<dead_letter_row> out;
    try {
        const auto r = exec_filtered(tx,
                                     "SELECT id, group_id, reason, error_code, attempts, " +
                                         ts("first_failed_at") + ", " + ts("last_failed_at") +
                                         ", replayable, blocks_key, " + ts("replayed_at") + ", " +
                                         message_cols + " FROM " + _schema + ".dead_letter WHERE " +
                                         filter_sql + " ORDER BY id LIMIT $9",
                                     f, f.limit);
        for (const auto& row : r) {
            dead_letter_row d;
            d.id = row[0].as<long long>();
            d.group = row[1].as<std::string>();
            d.reason = row[2].as<std::string>();
            d.error_code = row[3].as<std::string>();
            d.attempts = row[4].as<int>();
            d.first_failed_at = row[5].as<std::string>();
            d.last_failed_at = row[6].as<std::string>();
            d.replayable = row[7].as<bool>();
            d.blocks_key = row[8].as<bool>();
            if (!row[9].is_null()) d.replayed_at = row[9].as<std::string>();
            d.message = read_message(row, 10);
            out.push_back(std::move(d));
        }
    } catch (...) {
        internal::rethrow_translated("dead letter list", "retry");
    }
    return out;
}

long long dead_letters::count(pqxx::transaction_base& tx, const dead_letter_filter& f) const {
    try {
        return exec_filtered(tx,
                             "SELECT count(*) FROM " + _schema + ".dead_letter WHERE " + filter_sql,
                             f)[0][0]
            .as<long long>();
    } catch (...) {
        internal::rethrow_translated("dead letter count", "retry");
    }
}

long long dead_letters::replay(pqxx::transaction_base& tx, const dead_letter_filter& f) const {
    try {
        const auto r = exec_filtered(
            tx,
            "WITH picked AS (SELECT id FROM " + _schema + ".dead_letter WHERE " + filter_sql +
                " AND replayable AND replayed_at IS NULL AND message_id IS NOT NULL "
                "ORDER BY id LIMIT $9 FOR UPDATE), "
                "upd AS (UPDATE " +
                _schema +
                ".dead_letter d SET replayed_at = now() FROM picked WHERE d.id = picked.id "
                "RETURNING d.*) "
                "INSERT INTO " +
                _schema +
                ".retry (group_id, topic, partition, \"offset\", key, message_id, payload, "
                "headers, "
                "ordered, attempts, next_attempt_at, last_error, first_failed_at, last_failed_at) "
                "SELECT group_id, topic, partition, \"offset\", key, message_id, payload, headers, "
                "ordered, 0, now(), 'replayed from dead letter ' || id, first_failed_at, "
                "last_failed_at FROM upd ON CONFLICT (group_id, message_id) DO NOTHING",
            f, f.limit);
        return static_cast<long long>(r.affected_rows());
    } catch (...) {
        internal::rethrow_translated("dead letter replay", "retry");
    }
}

long long dead_letters::purge(pqxx::transaction_base& tx, const dead_letter_filter& f) const {
    try {
        auto g = f;
        g.include_replayed = true;
        if (f.id) g.include_replayed = true;
        const auto r = exec_filtered(
            tx,
            "DELETE FROM " + _schema + ".dead_letter WHERE id IN (SELECT id FROM " + _schema +
                ".dead_letter WHERE " + filter_sql + " ORDER BY id LIMIT $9)",
            g, f.limit);
        return static_cast<long long>(r.affected_rows());
    } catch (...) {
        internal::rethrow_translated("dead letter purge", "retry");
    }
}

}  // namespace ferry::retry
