#include "ferry/outbox/status.hpp"

#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/outbox/migrate.hpp"

namespace ferry::outbox {

outbox_status read_status(pqxx::connection& conn, const std::string& schema) {
    const auto q = quote_identifier(schema, "schema");
    outbox_status s;
    s.schema_version = current_version(conn, schema);
    try {
        pqxx::read_transaction tx{conn};
        const auto row = tx.exec(
            "SELECT count(*), "
            "coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8, "
            "count(*) FILTER (WHERE available_at > clock_timestamp()) FROM " +
            q + ".outbox")[0];
        s.pending = row[0].as<std::int64_t>();
        s.oldest_pending_age_s = row[1].as<double>();
        s.delayed = row[2].as<std::int64_t>();
        // Tables of later migrations, counted when the schema has them.
        const auto count_if_exists = [&](const std::string& table,
                                         const std::string& where) -> std::int64_t {
            const auto exists =
                internal::exec(tx, "SELECT to_regclass($1) IS NOT NULL", q + "." + table)[0][0]
                    .as<bool>();
            if (!exists) return 0;
            return tx.exec("SELECT count(*) FROM " + q + "." + table + where)[0][0]
                .as<std::int64_t>();
        };
        s.parked = count_if_exists("parked", "");
        s.expired = count_if_exists("expired", "");
        s.half_pending = count_if_exists("half_message", " WHERE state = 'pending'");
        s.half_parked = count_if_exists("half_message", " WHERE state = 'parked'");
    } catch (...) {
        internal::rethrow_translated("status", "outbox");
    }
    return s;
}

}  // namespace ferry::outbox
