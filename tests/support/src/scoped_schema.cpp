#include "ferry/test/scoped_schema.hpp"

#include <iostream>
#include <pqxx/pqxx>

#include "ferry/test/env.hpp"
#include "ferry/test/unique_name.hpp"

namespace ferry::test {

scoped_schema::scoped_schema(std::string_view prefix) : scoped_schema(prefix, pg_dsn()) {}

scoped_schema::scoped_schema(std::string_view prefix, std::string dsn)
    : _dsn(std::move(dsn)), _name(unique_name(prefix)) {}

scoped_schema::~scoped_schema() {
    try {
        drop();
    } catch (const std::exception& e) {
        // A destructor must not throw; a leftover schema is harmless in a throw-away server.
        std::cerr << "scoped_schema: cannot drop schema " << _name << ": " << e.what() << '\n';
    }
}

void scoped_schema::drop() {
    if (_dropped) {
        return;
    }
    pqxx::connection conn(_dsn);
    pqxx::nontransaction tx(conn);
    // A killed relay's session may still hold locks for a moment; do not hang the test on it.
    tx.exec("SET lock_timeout = '30s'");
    tx.exec("DROP SCHEMA IF EXISTS " + tx.quote_name(_name) + " CASCADE");
    _dropped = true;
}

}  // namespace ferry::test
