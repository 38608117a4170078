// ferryctl half: list, inspect and resolve half messages by hand (operator decisions).
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/outbox/message_id.hpp"

namespace ferry::cli {
namespace {

struct half_args {
    std::string state;
    std::string group;
    int limit = 100;
    bool json = false;
    std::string id;
};

std::unique_ptr<pqxx::connection> open(const ferry::config::ferry_config& cfg) {
    return connect(cfg, "half");
}

std::string require_id(const std::string& text) {
    if (!ferry::outbox::message_id::parse(text)) {
        throw ferry::error(error_kind::permanent, "cli.invalid_id",
                           "ID: \"" + text + "\" is not a UUID", "ID");
    }
    return text;
}

void list(const globals& g, const half_args& a) {
    const auto cfg = g.load_config();
    auto conn = open(cfg);
    const auto q = quote_identifier(cfg.postgres.schema, "postgres.schema");
    pqxx::read_transaction tx{*conn};
    const auto rows = internal::exec(
        tx,
        "SELECT message_id::text, state, producer_group, coalesce(producer_instance, ''), tx_ref, "
        "topic, key, "
        "check_count, max_checks, coalesce(last_check_result, ''), "
        "to_char(prepared_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
        "coalesce(decided_by, '') "
        "FROM " +
            q +
            ".half_message WHERE ($1 = '' OR state = $1) AND ($2 = '' OR producer_group = $2) "
            "ORDER BY prepared_at LIMIT $3",
        a.state, a.group, a.limit);
    if (a.json) {
        auto arr = nlohmann::json::array();
        for (const auto& r : rows) {
            arr.push_back({{"message_id", r[0].c_str()},
                           {"state", r[1].c_str()},
                           {"producer_group", r[2].c_str()},
                           {"producer_instance", r[3].c_str()},
                           {"tx_ref", r[4].c_str()},
                           {"topic", r[5].c_str()},
                           {"key", r[6].c_str()},
                           {"check_count", r[7].as<int>()},
                           {"max_checks", r[8].as<int>()},
                           {"last_check_result", r[9].c_str()},
                           {"prepared_at", r[10].c_str()},
                           {"decided_by", r[11].c_str()}});
        }
        std::cout << arr.dump(2) << "\n";
        return;
    }
    std::cout << std::left << std::setw(38) << "MESSAGE ID" << std::setw(13) << "STATE"
              << std::setw(16) << "GROUP" << std::setw(8) << "CHECKS" << std::setw(22) << "PREPARED"
              << "LAST CHECK\n";
    for (const auto& r : rows) {
        std::cout << std::left << std::setw(38) << r[0].c_str() << std::setw(13) << r[1].c_str()
                  << std::setw(16) << r[2].c_str() << std::setw(8)
                  << (std::to_string(r[7].as<int>()) + "/" + std::to_string(r[8].as<int>()))
                  << std::setw(22) << r[10].c_str() << r[9].c_str() << "\n";
    }
    std::cout << rows.size() << " half message(s)\n";
}

void decide(const globals& g, const half_args& a, const char* decision) {
    const auto cfg = g.load_config();
    auto conn = open(cfg);
    const auto q = quote_identifier(cfg.postgres.schema, "postgres.schema");
    const auto id = require_id(a.id);
    try {
        pqxx::work tx{*conn};
        const auto state =
            internal::exec(tx, "SELECT " + q + ".decide_half($1::uuid, $2, 'operator')", id,
                           std::string(decision))[0][0]
                .as<std::string>();
        tx.commit();
        std::cout << "half message " << id << ": " << state << "\n";
    } catch (const pqxx::sql_error& e) {
        std::string msg = e.what();
        msg = msg.substr(0, msg.find('\n'));
        if (e.sqlstate() == "FH001")
            throw ferry::error(error_kind::permanent, "outbox.half_conflict", msg, "ID");
        if (e.sqlstate() == "FH002")
            throw ferry::error(error_kind::permanent, "outbox.half_unknown", msg, "ID");
        throw;
    }
}

}  // namespace

void register_half(CLI::App& app, globals& g) {
    auto* half =
        app.add_subcommand("half", "Half messages: list, show, commit or roll back by hand");
    half->require_subcommand(1);
    static half_args a;
    auto* ls = half->add_subcommand("list", "List half messages (oldest first)");
    ls->add_option("--state", a.state, "pending | parked | committed | rolled_back")
        ->check(CLI::IsMember({"pending", "parked", "committed", "rolled_back"}));
    ls->add_option("--group", a.group, "Producer group");
    ls->add_option("--limit", a.limit, "At most this many rows")->check(CLI::Range(1, 100000));
    ls->add_flag("--json", a.json, "Print JSON");
    ls->callback([&g] { list(g, a); });
    auto* commit = half->add_subcommand(
        "commit", "Commit a pending or parked half message (operator decision)");
    commit->add_option("ID", a.id, "Message id")->required();
    commit->callback([&g] { decide(g, a, "commit"); });
    auto* rollback = half->add_subcommand(
        "rollback", "Roll back a pending or parked half message (operator decision)");
    rollback->add_option("ID", a.id, "Message id")->required();
    rollback->callback([&g] { decide(g, a, "rollback"); });
}

}  // namespace ferry::cli
