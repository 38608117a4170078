// ferryctl parked: messages Kafka refused permanently. list shows them with the reason; retry
// puts one back into the outbox under its original id (so it is published before the later
// messages of its key that waited behind it); discard deletes it, on an operator's decision.
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"

namespace ferry::cli {
namespace {

struct parked_args {
    std::string topic;
    std::string key;
    int limit = 100;
    bool json = false;
    long long id = 0;
};

void list(const globals& g, const parked_args& a) {
    const auto cfg = g.load_config();
    auto conn = connect(cfg, "parked");
    const auto q = quote_identifier(cfg.postgres.schema, "postgres.schema");
    pqxx::read_transaction tx{*conn};
    const auto rows =
        internal::exec(tx,
                       "SELECT id, message_id::text, topic, key, error_code, reason, attempts, "
                       "octet_length(payload), "
                       "to_char(parked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                       "(SELECT count(*) FROM " +
                           q +
                           ".outbox o WHERE o.topic = p.topic AND o.key = p.key) "
                           "FROM " +
                           q +
                           ".parked p WHERE ($1 = '' OR topic = $1) AND ($2 = '' OR key = $2) "
                           "ORDER BY id LIMIT $3",
                       a.topic, a.key, a.limit);
    if (a.json) {
        auto arr = nlohmann::json::array();
        for (const auto& r : rows) {
            arr.push_back({{"id", r[0].as<long long>()},
                           {"message_id", r[1].c_str()},
                           {"topic", r[2].c_str()},
                           {"key", r[3].c_str()},
                           {"error_code", r[4].c_str()},
                           {"reason", r[5].c_str()},
                           {"attempts", r[6].as<int>()},
                           {"payload_bytes", r[7].as<long long>()},
                           {"parked_at", r[8].c_str()},
                           {"held_back", r[9].as<long long>()}});
        }
        std::cout << arr.dump(2) << "\n";
        return;
    }
    std::cout << std::left << std::setw(10) << "ID" << std::setw(38) << "MESSAGE ID"
              << std::setw(20) << "TOPIC" << std::setw(20) << "KEY" << std::setw(10) << "HELD BACK"
              << "REASON\n";
    for (const auto& r : rows) {
        std::cout << std::left << std::setw(10) << r[0].c_str() << std::setw(38) << r[1].c_str()
                  << std::setw(20) << r[2].c_str() << std::setw(20) << r[3].c_str() << std::setw(10)
                  << r[9].c_str() << r[4].c_str() << ": " << r[5].c_str() << "\n";
    }
    std::cout << rows.size() << " parked message(s)\n";
}

void act(const globals& g, const parked_args& a, const char* function, const char* done) {
    const auto cfg = g.load_config();
    auto conn = connect(cfg, "parked");
    const auto q = quote_identifier(cfg.postgres.schema, "postgres.schema");
    pqxx::work tx{*conn};
    const bool ok =
        internal::exec(tx, "SELECT " + q + "." + function + "($1)", a.id)[0][0].as<bool>();
    tx.commit();
    if (!ok) {
        throw ferry::error(error_kind::permanent, "cli.not_parked",
                           "ID: no parked message has id " + std::to_string(a.id) +
                               " (see `ferryctl parked list`)",
                           "ID");
    }
    std::cout << "parked message " << a.id << ": " << done << "\n";
}

}  // namespace

void register_parked(CLI::App& app, globals& g) {
    auto* parked =
        app.add_subcommand("parked", "Messages Kafka refused permanently: list, retry, discard");
    parked->require_subcommand(1);
    static parked_args a;
    auto* ls = parked->add_subcommand(
        "list", "List parked messages with their reason and how many messages wait behind each");
    ls->add_option("--topic", a.topic, "Only this outbox topic");
    ls->add_option("--key", a.key, "Only this key");
    ls->add_option("--limit", a.limit, "At most this many rows")->check(CLI::Range(1, 100000));
    ls->add_flag("--json", a.json, "Print JSON");
    ls->callback([&g] { list(g, a); });
    auto* retry = parked->add_subcommand(
        "retry", "Put a parked message back into the outbox (original id and order)");
    retry->add_option("ID", a.id, "Parked message id (the ID column)")->required();
    retry->callback([&g] {
        act(g, a, "retry_parked",
            "back in the outbox; it will be published before the messages held behind it");
    });
    auto* discard = parked->add_subcommand(
        "discard", "Delete a parked message; the messages held behind it flow again");
    discard->add_option("ID", a.id, "Parked message id (the ID column)")->required();
    discard->callback([&g] { act(g, a, "discard_parked", "discarded"); });
}

}  // namespace ferry::cli
