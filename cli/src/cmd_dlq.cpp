// ferryctl dlq list|show|replay|purge: the consumer's dead letters (retry module's tables).
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/retry/tables.hpp"

namespace ferry::cli {
namespace {

struct dlq_args {
    std::string group, topic, key, since, until;
    bool has_key = false;
    long long id = -1;
    long long limit = 100;
    bool include_replayed = false;
    bool json = false;
    bool all = false;
    bool yes = false;
};

retry::dead_letter_filter filter_of(const dlq_args& a) {
    retry::dead_letter_filter f;
    if (a.id >= 0) f.id = a.id;
    f.group = a.group;
    f.topic = a.topic;
    if (a.has_key) f.key = a.key;
    f.since = a.since;
    f.until = a.until;
    f.include_replayed = a.include_replayed;
    f.limit = a.limit;
    return f;
}

void add_filters(CLI::App* cmd, dlq_args& a, bool with_id) {
    if (with_id) cmd->add_option("id", a.id, "Dead letter id");
    cmd->add_option("--group", a.group, "Consumer group");
    cmd->add_option("--topic", a.topic, "Topic");
    cmd->add_option("--key", a.key, "Message key ('' matches a null key)")
        ->each([&a](const std::string&) { a.has_key = true; });
    cmd->add_option("--since", a.since, "Dead since (timestamptz, e.g. 2026-01-01T00:00:00Z)");
    cmd->add_option("--until", a.until, "Dead before (timestamptz)");
    cmd->add_option("--limit", a.limit, "At most this many rows (default 100)");
}

nlohmann::json to_json(const retry::dead_letter_row& d, bool with_payload) {
    nlohmann::json j{
        {"id", d.id},
        {"group", d.group},
        {"topic", d.message.topic},
        {"partition", d.message.partition},
        {"offset", d.message.offset},
        {"key", d.message.key ? nlohmann::json(*d.message.key) : nlohmann::json(nullptr)},
        {"message_id", d.message.message_id},
        {"reason", d.reason},
        {"error_code", d.error_code},
        {"attempts", d.attempts},
        {"first_failed_at", d.first_failed_at},
        {"last_failed_at", d.last_failed_at},
        {"replayable", d.replayable},
        {"blocks_key", d.blocks_key},
        {"replayed_at", d.replayed_at ? nlohmann::json(*d.replayed_at) : nlohmann::json(nullptr)}};
    if (with_payload) {
        auto h = nlohmann::json::object();
        for (const auto& x : d.message.headers) {
            h[x.name] = x.value ? nlohmann::json(*x.value) : nlohmann::json(nullptr);
        }
        j["headers"] = h;
        j["payload"] = d.message.payload;
    }
    return j;
}

std::unique_ptr<pqxx::connection> open(const globals& g, std::string& schema) {
    const auto cfg = g.load_config();
    schema = cfg.postgres.schema;
    return connect(cfg, "dlq");
}

}  // namespace

void register_dlq(CLI::App& app, globals& g) {
    auto* dlq = app.add_subcommand("dlq", "Consumer dead letters: list, show, replay, purge");
    dlq->require_subcommand(1);
    static dlq_args a;

    auto* list = dlq->add_subcommand(
        "list", "List dead letters (newest filters: --group --topic --key --since --until)");
    add_filters(list, a, false);
    list->add_flag("--include-replayed", a.include_replayed, "Also list rows already replayed");
    list->add_flag("--json", a.json, "One JSON object per line");
    list->callback([&g]() {
        std::string schema;
        auto conn = open(g, schema);
        pqxx::read_transaction tx{*conn};
        const auto rows = retry::dead_letters(schema).list(tx, filter_of(a));
        if (a.json) {
            for (const auto& d : rows) std::cout << to_json(d, false).dump() << "\n";
            return;
        }
        std::cout
            << "id\tgroup\ttopic\tkey\tmessage_id\tattempts\tlast_failed_at\treplayable\treason\n";
        for (const auto& d : rows) {
            std::cout << d.id << '\t' << d.group << '\t' << d.message.topic << '\t'
                      << d.message.key.value_or("<null>") << '\t'
                      << (d.message.message_id.empty() ? "-" : d.message.message_id) << '\t'
                      << d.attempts << '\t' << d.last_failed_at << '\t'
                      << (d.replayable ? "yes" : "no") << '\t' << d.reason << "\n";
        }
        std::cout << rows.size() << " dead letter(s)\n";
    });

    auto* show =
        dlq->add_subcommand("show", "Show one dead letter with headers and payload (JSON)");
    show->add_option("id", a.id, "Dead letter id")->required();
    show->callback([&g]() {
        std::string schema;
        auto conn = open(g, schema);
        pqxx::read_transaction tx{*conn};
        retry::dead_letter_filter f;
        f.id = a.id;
        f.include_replayed = true;
        const auto rows = retry::dead_letters(schema).list(tx, f);
        if (rows.empty()) {
            std::cerr << "ferryctl: no dead letter with id " << a.id << "\n";
            g.exit_code = 1;
            return;
        }
        std::cout << to_json(rows.front(), true).dump(2) << "\n";
    });

    auto* replay = dlq->add_subcommand(
        "replay",
        "Move dead letters back into the retry table (due now); the consumer applies them");
    add_filters(replay, a, true);
    replay->add_flag("--all", a.all, "Required when no id is given: replay every matching row");
    replay->callback([&g]() {
        if (a.id < 0 && !a.all) {
            throw ferry::error(error_kind::permanent, "dlq.usage",
                               "give an id, or --all with filters");
        }
        std::string schema;
        auto conn = open(g, schema);
        pqxx::work tx{*conn};
        const auto n = retry::dead_letters(schema).replay(tx, filter_of(a));
        tx.commit();
        std::cout << "replayed " << n << " dead letter(s)\n";
        if (n == 0 && a.id >= 0) g.exit_code = 1;
    });

    auto* purge = dlq->add_subcommand("purge", "Delete dead letters (releases keys they hold)");
    add_filters(purge, a, true);
    purge->add_flag("--all", a.all, "Required when no id is given: purge every matching row");
    purge->add_flag("--yes", a.yes, "Do not ask; required for --all");
    purge->callback([&g]() {
        if (a.id < 0 && !(a.all && a.yes)) {
            throw ferry::error(error_kind::permanent, "dlq.usage",
                               "give an id, or --all --yes with filters");
        }
        std::string schema;
        auto conn = open(g, schema);
        pqxx::work tx{*conn};
        const auto n = retry::dead_letters(schema).purge(tx, filter_of(a));
        tx.commit();
        std::cout << "purged " << n << " dead letter(s)\n";
        if (n == 0 && a.id >= 0) g.exit_code = 1;
    });
}

}  // namespace ferry::cli
