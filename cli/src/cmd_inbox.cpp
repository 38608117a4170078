// ferryctl inbox prune: the consumer's inbox retention run by hand. The deletes are the dedup
// module's own (ferry::dedup::inbox::prune, the statement the consumer's retention job runs):
// batches of `--batch` rows older than `--older-than`, each in its own transaction, repeated
// while a batch comes back full.
//
// Defaults come from the configuration: the `consumers:` entry named by --group (or the only
// entry), else the longest retention of all entries sharing the database (the inbox table holds
// every group of the schema, and prune is not per group, so the longest window is the one no
// group regrets), else the built-in default (7 days, 10000 rows).
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "ferry/common/error.hpp"
#include "ferry/dedup/inbox.hpp"

namespace ferry::cli {
namespace {

struct inbox_args {
    std::string group;
    std::string older_than;
    long long batch = 0;  // 0: from the configuration
    bool json = false;
};

struct prune_plan {
    ferry::config::ferry_config cfg;  // postgres.dsn / schema: the inbox's database
    std::chrono::milliseconds older_than{};
    long long batch = 0;
    std::string source;  // where the defaults came from, for the output
};

[[noreturn]] void inbox_usage(const std::string& message, const std::string& field) {
    throw ferry::error(error_kind::permanent, "inbox.usage", message, field);
}

prune_plan plan_of(const inbox_args& a, ferry::config::ferry_config cfg) {
    prune_plan p;
    const ferry::config::consumer_config defaults;
    const ferry::config::consumer_config* entry = nullptr;
    if (!a.group.empty()) {
        entry = ferry::config::find_consumer(cfg, a.group);
        if (entry == nullptr) {
            inbox_usage("no consumers: entry for group \"" + a.group + "\" in the configuration",
                        "--group");
        }
    } else if (cfg.consumers.size() == 1) {
        entry = &cfg.consumers.front();
    }
    if (entry != nullptr) {
        p.older_than = entry->inbox.retention;
        p.batch = static_cast<long long>(entry->inbox.prune_batch);
        p.source = "consumers[" + entry->group + "]";
        if (!entry->dsn.empty()) cfg.postgres.dsn = entry->dsn;
        if (!entry->schema.empty()) cfg.postgres.schema = entry->schema;
    } else if (!cfg.consumers.empty()) {
        p.older_than = std::chrono::milliseconds::zero();
        p.batch = static_cast<long long>(defaults.inbox.prune_batch);
        for (const auto& c : cfg.consumers) {
            if (!c.dsn.empty() || !c.schema.empty()) continue;  // another database: not this one
            p.older_than = std::max(p.older_than, c.inbox.retention);
        }
        if (p.older_than.count() == 0) {
            inbox_usage("the consumers: entries use their own databases; name one with --group",
                        "--group");
        }
        p.source = "longest retention of the consumers: entries";
    } else {
        p.older_than = defaults.inbox.retention;
        p.batch = static_cast<long long>(defaults.inbox.prune_batch);
        p.source = "default";
    }
    if (!a.older_than.empty()) {
        const auto d = ferry::config::parse_duration(a.older_than);
        // The config's own floor: pruning younger rows would let redeliveries apply twice.
        if (!d || *d < std::chrono::minutes(1)) {
            inbox_usage(
                "--older-than must be a duration of at least 1m (like 90m or 168h), got \"" +
                    a.older_than.substr(0, 40) + "\"",
                "--older-than");
        }
        p.older_than = *d;
    }
    if (a.batch != 0) {
        if (a.batch < 1 || a.batch > 1000000) inbox_usage("--batch must be 1..1000000", "--batch");
        p.batch = a.batch;
    }
    p.cfg = std::move(cfg);
    return p;
}

}  // namespace

void register_inbox(CLI::App& app, globals& g) {
    auto* inbox = app.add_subcommand("inbox", "The consumer's PostgreSQL inbox (dedup records)");
    inbox->require_subcommand(1);
    static inbox_args a;

    auto* prune = inbox->add_subcommand(
        "prune",
        "Delete inbox rows older than the retention window now, in batches (what the "
        "consumer's retention job does on its schedule)");
    prune->add_option("--group", a.group,
                      "Take the defaults (and database) from this consumers: entry");
    prune->add_option("--older-than", a.older_than,
                      "Delete rows processed before now minus this (default: inbox.retention)");
    prune->add_option("--batch", a.batch, "Rows per statement (default: inbox.prune_batch)");
    prune->add_flag("--json", a.json, "Print one JSON object");
    prune->callback([&g]() {
        const auto plan = plan_of(a, g.load_config());
        auto conn = connect(plan.cfg, "inbox");
        const ferry::dedup::inbox box(plan.cfg.postgres.schema);
        long long deleted = 0;
        long long batches = 0;
        for (;;) {
            pqxx::work tx{*conn};
            const auto n = box.prune(tx, plan.older_than, plan.batch);
            tx.commit();
            ++batches;
            deleted += n;
            if (n < plan.batch) break;
        }
        if (a.json) {
            std::cout << nlohmann::json{{"deleted", deleted},
                                        {"batches", batches},
                                        {"older_than", duration_text(plan.older_than)},
                                        {"older_than_ms", plan.older_than.count()},
                                        {"batch", plan.batch},
                                        {"schema", plan.cfg.postgres.schema},
                                        {"defaults_from", plan.source}}
                             .dump()
                      << "\n";
            return;
        }
        std::cout << "inbox prune: deleted " << deleted << " row(s) older than "
                  << duration_text(plan.older_than) << " in " << batches << " batch(es) of at most "
                  << plan.batch << " (schema " << plan.cfg.postgres.schema << ", defaults from "
                  << plan.source << ")\n";
    });
}

}  // namespace ferry::cli
