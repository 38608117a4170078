#pragma once
// A text dump of everything a schema holds in the catalog: relations (kind, partitioning),
// columns (type, nullability, identity, generated, default, position), constraints, indexes,
// functions, views, triggers, comments, sequences, and the seed rows of `settings`. The schema
// name is replaced by @SCHEMA@ (and the database's OID by @DATOID@), so dumps of two schemas
// compare equal when their definitions are. Tests use it to prove two ways of migrating give
// exactly the same schema.

#include <algorithm>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace ferry::test {

inline std::vector<std::string> catalog_dump(pqxx::connection& conn, const std::string& schema) {
    static const char* const queries[] = {
        // Relations: kind, persistence, partition parent, bound and key.
        "SELECT 'rel ' || c.relname || ' kind=' || c.relkind::text || ' persist=' || "
        "c.relpersistence::text"
        " || coalesce(' partof=' || (SELECT p.relname FROM pg_inherits i JOIN pg_class p"
        "   ON p.oid = i.inhparent WHERE i.inhrelid = c.oid), '')"
        " || coalesce(' bound=' || pg_get_expr(c.relpartbound, c.oid), '')"
        " || coalesce(' partkey=' || pg_get_partkeydef(c.oid), '')"
        " FROM pg_class c WHERE c.relnamespace = $1::regnamespace",
        "SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid,"
        " a.atttypmod) || ' pos=' || a.attnum || ' notnull=' || a.attnotnull || ' identity='"
        " || a.attidentity::text || ' generated=' || a.attgenerated::text || coalesce(' default='"
        " || pg_get_expr(d.adbin, d.adrelid), '') FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid LEFT JOIN pg_attrdef d"
        " ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE c.relnamespace = $1::regnamespace AND a.attnum > 0 AND NOT a.attisdropped",
        "SELECT 'con ' || coalesce(c.relname, '-') || ' ' || k.conname || ' '"
        " || pg_get_constraintdef(k.oid) FROM pg_constraint k LEFT JOIN pg_class c"
        " ON c.oid = k.conrelid WHERE k.connamespace = $1::regnamespace",
        "SELECT 'idx ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c"
        " ON c.oid = i.indexrelid WHERE c.relnamespace = $1::regnamespace",
        "SELECT 'fn ' || pg_get_functiondef(p.oid) FROM pg_proc p"
        " WHERE p.pronamespace = $1::regnamespace",
        "SELECT 'view ' || c.relname || ' ' || pg_get_viewdef(c.oid) FROM pg_class c"
        " WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('v', 'm')",
        "SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c"
        " ON c.oid = t.tgrelid WHERE c.relnamespace = $1::regnamespace AND NOT t.tgisinternal",
        "SELECT 'comment ' || c.relname || '/' || d.objsubid || ' ' || d.description"
        " FROM pg_description d JOIN pg_class c ON c.oid = d.objoid"
        " AND d.classoid = 'pg_class'::regclass WHERE c.relnamespace = $1::regnamespace",
        "SELECT 'comment fn ' || p.proname || ' ' || d.description FROM pg_description d"
        " JOIN pg_proc p ON p.oid = d.objoid AND d.classoid = 'pg_proc'::regclass"
        " WHERE p.pronamespace = $1::regnamespace",
        "SELECT 'seq ' || c.relname || ' ' || format_type(s.seqtypid, NULL) || ' start='"
        " || s.seqstart || ' inc=' || s.seqincrement || ' min=' || s.seqmin || ' max=' || s.seqmax"
        " || ' cache=' || s.seqcache || ' cycle=' || s.seqcycle FROM pg_sequence s"
        " JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = $1::regnamespace",
        "SELECT 'type ' || t.typname || ' ' || t.typtype::text FROM pg_type t"
        " WHERE t.typnamespace = $1::regnamespace AND t.typtype NOT IN ('c', 'b')",
    };
    std::vector<std::string> out;
    pqxx::read_transaction tx{conn};
    for (const char* q : queries) {
        for (const auto& row : tx.exec_params(q, schema)) out.push_back(row[0].c_str());
    }
    const auto settings = tx.exec_params("SELECT to_regclass($1) IS NOT NULL",
                                         tx.quote_name(schema) + ".settings")[0][0]
                              .as<bool>();
    if (settings) {
        for (const auto& row :
             tx.exec("SELECT name || '=' || value FROM " + tx.quote_name(schema) + ".settings")) {
            out.push_back(std::string("setting ") + row[0].c_str());
        }
    }
    // wal_database_oid() (migration 0110) returns this database's OID, which differs between
    // servers: it becomes @DATOID@.
    const std::string datoid =
        "SELECT " +
        tx.exec("SELECT oid::text FROM pg_database WHERE datname = current_database()")[0][0]
            .as<std::string>() +
        "::oid";
    for (auto& line : out) {
        for (auto pos = line.find(schema); pos != std::string::npos;
             pos = line.find(schema, pos + 8)) {
            line.replace(pos, schema.size(), "@SCHEMA@");
        }
        if (const auto pos = line.find(datoid); pos != std::string::npos) {
            line.replace(pos, datoid.size(), "SELECT @DATOID@::oid");
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace ferry::test
