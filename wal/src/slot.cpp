#include "ferry/wal/slot.hpp"

#include "ferry/common/error.hpp"
#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"

namespace ferry::wal {
namespace {

std::optional<lsn> lsn_or_null(const pqxx::field& f) {
    if (f.is_null()) return std::nullopt;
    return parse_lsn(f.c_str());
}

[[noreturn]] void lost(const std::string& slot, const std::string& why) {
    throw ferry::error(error_kind::permanent, "wal.slot_lost",
                       "replication slot \"" + slot + "\" " + why +
                           ": messages committed after its last confirmed position may never be "
                           "published. Ferry does not recreate it on its own: reconcile, then "
                           "recreate it deliberately (docs/operations.md, WAL slot lost)",
                       "slot");
}

}  // namespace

void validate_slot_name(const std::string& name) {
    bool ok = !name.empty() && name.size() <= 63;
    for (char c : name) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) ok = false;
    }
    if (!ok) {
        throw ferry::error(error_kind::permanent, "wal.invalid_name",
                           "slot: \"" + name +
                               "\" is not a valid replication slot name (1-63 characters of "
                               "a-z, 0-9 and _)",
                           "slot");
    }
}

lsn create_slot(pqxx::connection& conn, const std::string& slot) {
    validate_slot_name(slot);
    try {
        pqxx::nontransaction tx{conn};
        const auto r = internal::exec(
            tx, "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", slot);
        return parse_lsn(r[0][0].c_str()).value_or(0);
    } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() == "42710") {
            throw ferry::error(error_kind::permanent, "wal.slot_exists",
                               "create_slot: replication slot \"" + slot + "\" already exists",
                               "slot");
        }
        internal::rethrow_translated("create_slot", "wal");
    } catch (...) {
        internal::rethrow_translated("create_slot", "wal");
    }
}

std::optional<slot_info> inspect_slot(pqxx::connection& conn, const std::string& slot) {
    validate_slot_name(slot);
    try {
        pqxx::nontransaction tx{conn};
        const auto r = internal::exec(
            tx,
            "SELECT s.slot_name::text, coalesce(s.plugin::text, ''), coalesce(s.database::text, "
            "''), "
            "s.active, s.active_pid, s.restart_lsn::text, s.confirmed_flush_lsn::text, "
            "coalesce(s.wal_status, ''), "
            "CASE WHEN s.confirmed_flush_lsn IS NULL THEN NULL ELSE "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint END, "
            "s.safe_wal_size, s.database = current_database() "
            "FROM pg_replication_slots s WHERE s.slot_name = $1",
            slot);
        if (r.empty()) return std::nullopt;
        const auto row = r[0];
        slot_info s;
        s.name = row[0].as<std::string>();
        s.plugin = row[1].as<std::string>();
        s.database = row[2].as<std::string>();
        s.active = row[3].as<bool>();
        if (!row[4].is_null()) s.active_pid = row[4].as<int>();
        s.restart_lsn = lsn_or_null(row[5]);
        s.confirmed_flush_lsn = lsn_or_null(row[6]);
        s.wal_status = row[7].as<std::string>();
        if (!row[8].is_null()) s.lag_bytes = row[8].as<std::int64_t>();
        if (!row[9].is_null()) s.safe_wal_size = row[9].as<std::int64_t>();
        return s;
    } catch (...) {
        internal::rethrow_translated("inspect_slot", "wal");
    }
}

slot_info check_slot(pqxx::connection& conn, const std::string& slot) {
    auto s = inspect_slot(conn, slot);
    if (!s) lost(slot, "does not exist");
    if (s->plugin != "pgoutput") {
        throw ferry::error(
            error_kind::permanent, "wal.slot_invalid",
            "replication slot \"" + slot + "\" uses plugin \"" + s->plugin + "\", not pgoutput",
            "slot");
    }
    std::string db;
    try {
        pqxx::nontransaction tx{conn};
        db = tx.exec("SELECT current_database()::text")[0][0].as<std::string>();
    } catch (...) {
        internal::rethrow_translated("check_slot", "wal");
    }
    if (s->database != db) {
        throw ferry::error(error_kind::permanent, "wal.slot_invalid",
                           "replication slot \"" + slot + "\" belongs to database \"" +
                               s->database + "\", not \"" + db + "\"",
                           "slot");
    }
    if (s->lost()) lost(slot, "was invalidated (wal_status = " + s->wal_status + ")");
    return *s;
}

bool drop_slot(pqxx::connection& conn, const std::string& slot) {
    validate_slot_name(slot);
    try {
        pqxx::nontransaction tx{conn};
        const auto r =
            internal::exec(tx,
                           "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                           "WHERE slot_name = $1",
                           slot);
        return !r.empty();
    } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() == "55006") {
            throw ferry::error(error_kind::retryable, "wal.slot_in_use",
                               "drop_slot: replication slot \"" + slot +
                                   "\" is in use by a streaming connection; stop the relay first",
                               "slot");
        }
        internal::rethrow_translated("drop_slot", "wal");
    } catch (...) {
        internal::rethrow_translated("drop_slot", "wal");
    }
}

void register_slot(pqxx::connection& conn, const std::string& schema, const std::string& slot) {
    validate_slot_name(slot);
    const auto q = quote_identifier(schema, "schema");
    try {
        pqxx::work tx{conn};
        (void)internal::exec(
            tx, "INSERT INTO " + q + ".wal_slot (slot_name) VALUES ($1) ON CONFLICT DO NOTHING",
            slot);
        tx.commit();
    } catch (...) {
        internal::rethrow_translated("register_slot", "wal");
    }
}

bool slot_registered(pqxx::connection& conn, const std::string& schema, const std::string& slot) {
    validate_slot_name(slot);
    const auto q = quote_identifier(schema, "schema");
    try {
        pqxx::nontransaction tx{conn};
        return !internal::exec(tx, "SELECT 1 FROM " + q + ".wal_slot WHERE slot_name = $1", slot)
                    .empty();
    } catch (...) {
        internal::rethrow_translated("slot_registered", "wal");
    }
}

bool unregister_slot(pqxx::connection& conn, const std::string& schema, const std::string& slot) {
    validate_slot_name(slot);
    const auto q = quote_identifier(schema, "schema");
    try {
        pqxx::work tx{conn};
        const auto r = internal::exec(
            tx, "DELETE FROM " + q + ".wal_slot WHERE slot_name = $1 RETURNING 1", slot);
        tx.commit();
        return !r.empty();
    } catch (...) {
        internal::rethrow_translated("unregister_slot", "wal");
    }
}

bool publication_exists(pqxx::connection& conn, const std::string& publication) {
    try {
        pqxx::nontransaction tx{conn};
        return !internal::exec(tx, "SELECT 1 FROM pg_publication WHERE pubname = $1", publication)
                    .empty();
    } catch (...) {
        internal::rethrow_translated("publication_exists", "wal");
    }
}

bool ensure_publication(pqxx::connection& conn, const std::string& publication) {
    const auto q = quote_identifier(publication, "publication");
    try {
        pqxx::work tx{conn};
        // Serialize concurrent creators (CREATE PUBLICATION has no IF NOT EXISTS).
        (void)internal::exec(tx, "SELECT pg_advisory_xact_lock(hashtext('ferry.wal.publication'))");
        if (!internal::exec(tx, "SELECT 1 FROM pg_publication WHERE pubname = $1", publication)
                 .empty()) {
            return false;
        }
        tx.exec("CREATE PUBLICATION " + q);
        tx.commit();
        return true;
    } catch (...) {
        internal::rethrow_translated("ensure_publication", "wal");
    }
}

bool drop_publication(pqxx::connection& conn, const std::string& publication) {
    const auto q = quote_identifier(publication, "publication");
    try {
        pqxx::work tx{conn};
        if (internal::exec(tx, "SELECT 1 FROM pg_publication WHERE pubname = $1", publication)
                .empty()) {
            return false;
        }
        tx.exec("DROP PUBLICATION " + q);
        tx.commit();
        return true;
    } catch (...) {
        internal::rethrow_translated("drop_publication", "wal");
    }
}

}  // namespace ferry::wal
