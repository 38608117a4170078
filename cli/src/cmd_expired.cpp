// ferryctl expired: messages whose TTL passed before the relay published them (never sent to
// Kafka). list and show read them; redrive puts one back into the outbox under its original
// message id, without a TTL, through ferry::reconcile::held_store (no SQL here).
#include <iomanip>
#include <iostream>

#include "commands.hpp"
#include "ferry/reconcile/held.hpp"
#include "held_json.hpp"

namespace ferry::cli {
namespace {

struct expired_args {
    std::string topic, key, since;
    std::int64_t limit = 100;
    bool json = false;
    std::vector<std::string> ids;
};

reconcile::held_store open_store(const ferry::config::ferry_config& cfg) {
    return reconcile::held_store(cfg.postgres.dsn, cfg.postgres.schema,
                                 cfg.postgres.connect_timeout);
}

void list(const globals& g, const expired_args& a) {
    const auto cfg = g.load_config();
    auto store = open_store(cfg);
    reconcile::held_filter f;
    if (!a.topic.empty()) f.topic = a.topic;
    if (!a.key.empty()) f.key = a.key;
    if (!a.since.empty()) f.since = a.since;
    f.limit = a.limit;
    const auto rows = store.expired(f);
    if (a.json) {
        auto arr = nlohmann::json::array();
        for (const auto& m : rows) arr.push_back(to_json(m, false, "expired_at"));
        std::cout << arr.dump(2) << "\n";
        return;
    }
    std::cout << std::left << std::setw(38) << "MESSAGE ID" << std::setw(20) << "TOPIC"
              << std::setw(20) << "KEY" << std::setw(29) << "EXPIRES AT"
              << "EXPIRED AT\n";
    for (const auto& m : rows) {
        std::cout << std::left << std::setw(38) << m.message_id << std::setw(20) << m.topic
                  << std::setw(20) << m.key << std::setw(29) << m.expires_at << m.held_at << "\n";
    }
    std::cout << rows.size() << " expired message(s)\n";
}

void show(globals& g, const expired_args& a) {
    const auto cfg = g.load_config();
    auto store = open_store(cfg);
    const auto m = store.expired_message(a.ids.front());
    if (!m) {
        std::cerr << "ferryctl: no expired message " << a.ids.front()
                  << " (see `ferryctl expired list`)\n";
        g.exit_code = 4;
        return;
    }
    std::cout << to_json(*m, true, "expired_at").dump(2) << "\n";
}

void redrive(globals& g, const expired_args& a) {
    const auto cfg = g.load_config();
    auto store = open_store(cfg);
    for (const auto& id : a.ids) {
        switch (store.redrive_expired(id)) {
            case reconcile::redrive_status::redriven:
                std::cout << "expired message " << id
                          << ": back in the outbox under its message id (no TTL)\n";
                break;
            case reconcile::redrive_status::not_found:
                std::cerr << "ferryctl: no expired message " << id
                          << " (see `ferryctl expired list`)\n";
                g.exit_code = 4;
                break;
            case reconcile::redrive_status::already_in_outbox:
                std::cerr << "ferryctl: message " << id
                          << " is already waiting in the outbox; nothing changed\n";
                g.exit_code = 4;
                break;
        }
    }
}

}  // namespace

void register_expired(CLI::App& app, globals& g) {
    auto* expired = app.add_subcommand(
        "expired", "Messages whose TTL passed before they were published: list, show, redrive");
    expired->require_subcommand(1);
    static expired_args a;
    auto* ls = expired->add_subcommand("list", "List expired messages (oldest expiry first)");
    ls->add_option("--topic", a.topic, "Only this outbox topic");
    ls->add_option("--key", a.key, "Only this key");
    ls->add_option("--since", a.since, "Expired at or after this time (e.g. 2026-01-01T00:00:00Z)");
    ls->add_option("--limit", a.limit, "At most this many rows")->check(CLI::Range(1, 100000));
    ls->add_flag("--json", a.json, "Print a JSON array");
    ls->callback([&g] { list(g, a); });
    auto* sh = expired->add_subcommand("show", "Show one expired message with payload and headers");
    sh->add_option("ID", a.ids, "Message id")->required()->expected(1);
    sh->callback([&g] { show(g, a); });
    auto* rd = expired->add_subcommand(
        "redrive", "Put expired messages back into the outbox under their message ids, no TTL");
    rd->add_option("ID", a.ids, "Message ids")->required();
    rd->callback([&g] { redrive(g, a); });
}

}  // namespace ferry::cli
