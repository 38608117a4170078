// ferryctl parked: messages Kafka refused permanently. list shows them with the reason; retry
// puts one back into the outbox under its original id (so it is published before the later
// messages of its key that waited behind it); discard deletes it, on an operator's decision.
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "ferry/reconcile/held.hpp"
#include "held_json.hpp"

namespace ferry::cli {
namespace {

struct parked_args {
    std::string topic;
    std::string key;
    int limit = 100;
    bool json = false;
    long long id = 0;
    std::string show_id;
};

void show(globals& g, const parked_args& a) {
    const auto cfg = g.load_config();
    reconcile::held_store store(cfg.postgres.dsn, cfg.postgres.schema,
                                cfg.postgres.connect_timeout);
    const auto m = store.parked_message(a.show_id);
    if (!m) {
        std::cerr << "ferryctl: no parked message " << a.show_id
                  << " (see `ferryctl parked list`)\n";
        g.exit_code = 4;
        return;
    }
    std::cout << to_json(*m, true, "parked_at").dump(2) << "\n";
}

void list(const globals& g, const parked_args& a) {
    const auto cfg = g.load_config();
    reconcile::held_store store(cfg.postgres.dsn, cfg.postgres.schema,
                                cfg.postgres.connect_timeout);
    reconcile::held_filter f;
    if (!a.topic.empty()) f.topic = a.topic;
    if (!a.key.empty()) f.key = a.key;
    f.limit = a.limit;
    const auto rows = store.parked(f);
    if (a.json) {
        auto arr = nlohmann::json::array();
        for (const auto& m : rows) arr.push_back(to_json(m, false, "parked_at"));
        std::cout << arr.dump(2) << "\n";
        return;
    }
    std::cout << std::left << std::setw(10) << "ID" << std::setw(38) << "MESSAGE ID"
              << std::setw(20) << "TOPIC" << std::setw(20) << "KEY" << std::setw(10) << "HELD BACK"
              << "REASON\n";
    for (const auto& m : rows) {
        std::cout << std::left << std::setw(10) << m.id << std::setw(38) << m.message_id
                  << std::setw(20) << m.topic << std::setw(20) << m.key << std::setw(10)
                  << m.held_back << m.error_code << ": " << m.reason << "\n";
    }
    std::cout << rows.size() << " parked message(s)\n";
}

void act(const globals& g, const parked_args& a, bool retry, const char* done) {
    const auto cfg = g.load_config();
    reconcile::held_store store(cfg.postgres.dsn, cfg.postgres.schema,
                                cfg.postgres.connect_timeout);
    const bool ok = retry ? store.retry_parked(a.id) : store.discard_parked(a.id);
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
    auto* parked = app.add_subcommand(
        "parked", "Messages Kafka refused permanently: list, show, retry, discard");
    parked->require_subcommand(1);
    static parked_args a;
    auto* ls = parked->add_subcommand(
        "list", "List parked messages with their reason and how many messages wait behind each");
    ls->add_option("--topic", a.topic, "Only this outbox topic");
    ls->add_option("--key", a.key, "Only this key");
    ls->add_option("--limit", a.limit, "At most this many rows")->check(CLI::Range(1, 100000));
    ls->add_flag("--json", a.json, "Print JSON");
    ls->callback([&g] { list(g, a); });
    auto* sh =
        parked->add_subcommand("show", "Show one parked message with reason, payload and headers");
    sh->add_option("ID", a.show_id, "Parked id (the ID column) or message id")->required();
    sh->callback([&g] { show(g, a); });
    auto* retry = parked->add_subcommand(
        "retry", "Put a parked message back into the outbox (original id and order)");
    retry->add_option("ID", a.id, "Parked message id (the ID column)")->required();
    retry->callback([&g] {
        act(g, a, true,
            "back in the outbox; it will be published before the messages held behind it");
    });
    auto* discard = parked->add_subcommand(
        "discard", "Delete a parked message; the messages held behind it flow again");
    discard->add_option("ID", a.id, "Parked message id (the ID column)")->required();
    discard->callback([&g] { act(g, a, false, "discarded"); });
}

}  // namespace ferry::cli
