// ferryctl half: list, inspect and resolve half messages by hand (operator decisions).
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "ferry/outbox/half.hpp"
#include "ferry/outbox/message_id.hpp"
#include "ferry/reconcile/held.hpp"
#include "held_json.hpp"

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

outbox::writer make_writer(const ferry::config::ferry_config& cfg) {
    auto o = cfg.outbox;
    o.schema = cfg.postgres.schema;
    return outbox::writer(o);
}

void list(const globals& g, const half_args& a) {
    const auto cfg = g.load_config();
    auto conn = open(cfg);
    outbox::half_filter filter;
    if (!a.state.empty()) filter.state = outbox::parse_half_state(a.state);  // IsMember-checked
    if (!a.group.empty()) filter.producer_group = a.group;
    filter.limit = a.limit;
    const auto rows = outbox::list_half(make_writer(cfg), *conn, filter);
    auto prepared = [](const outbox::half_message_info& h) { return h.prepared_at; };
    auto checks = [](const outbox::half_message_info& h) {
        return std::to_string(h.check_count) + "/" + std::to_string(h.max_checks);
    };
    if (a.json) {
        auto arr = nlohmann::json::array();
        for (const auto& h : rows) {
            arr.push_back({{"message_id", h.id.to_string()},
                           {"state", std::string(outbox::to_string(h.state))},
                           {"producer_group", h.producer_group},
                           {"producer_instance", h.producer_instance.value_or("")},
                           {"tx_ref", h.tx_ref},
                           {"topic", h.topic},
                           {"key", h.key},
                           {"check_count", h.check_count},
                           {"max_checks", h.max_checks},
                           {"last_check_result", h.last_check_result.value_or("")},
                           {"prepared_at", prepared(h)},
                           {"decided_by", h.decided_by.value_or("")}});
        }
        std::cout << arr.dump(2) << "\n";
        return;
    }
    std::cout << std::left << std::setw(38) << "MESSAGE ID" << std::setw(13) << "STATE"
              << std::setw(16) << "GROUP" << std::setw(8) << "CHECKS" << std::setw(22) << "PREPARED"
              << "LAST CHECK\n";
    for (const auto& h : rows) {
        std::cout << std::left << std::setw(38) << h.id.to_string() << std::setw(13)
                  << outbox::to_string(h.state) << std::setw(16) << h.producer_group << std::setw(8)
                  << checks(h) << std::setw(22) << prepared(h) << h.last_check_result.value_or("")
                  << "\n";
    }
    std::cout << rows.size() << " half message(s)\n";
}

void decide(const globals& g, const half_args& a, outbox::half_decision decision) {
    const auto cfg = g.load_config();
    const auto id = outbox::message_id::parse(require_id(a.id));
    auto conn = open(cfg);
    const auto state = outbox::decide_as_operator(make_writer(cfg), *conn, *id, decision);
    std::cout << "half message " << a.id << ": " << outbox::to_string(state) << "\n";
}

void show(globals& g, const half_args& a) {
    const auto cfg = g.load_config();
    reconcile::held_store store(cfg.postgres.dsn, cfg.postgres.schema,
                                cfg.postgres.connect_timeout);
    const auto h = store.half_message(require_id(a.id));
    if (!h) {
        std::cerr << "ferryctl: no half message " << a.id << " (see `ferryctl half list`)\n";
        g.exit_code = 4;
        return;
    }
    auto opt = [](const std::string& v) {
        return v.empty() ? nlohmann::json() : nlohmann::json(v);
    };
    nlohmann::json j{{"message_id", h->message_id},
                     {"state", h->state},
                     {"topic", h->topic},
                     {"key", h->key},
                     {"tx_ref", h->tx_ref},
                     {"producer_group", h->producer_group},
                     {"producer_instance", opt(h->producer_instance)},
                     {"prepared_at", h->prepared_at},
                     {"decided_at", opt(h->decided_at)},
                     {"decided_by", opt(h->decided_by)},
                     {"check_count", h->check_count},
                     {"max_checks", h->max_checks},
                     {"check_first_after_seconds", h->check_first_after_s},
                     {"check_interval_seconds", h->check_interval_s},
                     {"next_check_at", opt(h->next_check_at)},
                     {"last_check_at", opt(h->last_check_at)},
                     {"last_check_result", opt(h->last_check_result)},
                     {"waiting_in_outbox", h->in_outbox}};
    put_payload(j, h->payload, h->headers_json);
    std::cout << j.dump(2) << "\n";
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
    auto* sh = half->add_subcommand(
        "show", "Show one half message: state, check-back history, payload and headers");
    sh->add_option("ID", a.id, "Message id")->required();
    sh->callback([&g] { show(g, a); });
    auto* commit = half->add_subcommand(
        "commit", "Commit a pending or parked half message (operator decision)");
    commit->add_option("ID", a.id, "Message id")->required();
    commit->callback([&g] { decide(g, a, outbox::half_decision::commit); });
    auto* rollback = half->add_subcommand(
        "rollback", "Roll back a pending or parked half message (operator decision)");
    rollback->add_option("ID", a.id, "Message id")->required();
    rollback->callback([&g] { decide(g, a, outbox::half_decision::rollback); });
}

}  // namespace ferry::cli
