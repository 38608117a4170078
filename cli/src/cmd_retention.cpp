// ferryctl retention run: the retention job of ferry-relay (every retained table, or one with
// --table), run now with the configured windows. Each table's statements are its module's own
// (ferry::reconcile::retained_tables collects them); the runner deletes in bounded batches, each
// its own transaction, repeated while a batch comes back full, then measures the table.
// For a consumer-only database (dead letters), point --config at a file whose postgres.dsn and
// postgres.schema are that database: tables it does not hold fail with exit 2.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "ferry/reconcile/retention_from_config.hpp"

namespace ferry::cli {
namespace {

struct retention_args {
    std::string table;
    bool json = false;
};

}  // namespace

void register_retention(CLI::App& app, globals& g) {
    auto* cmd = app.add_subcommand("retention", "Retention of the tables that keep finished rows");
    cmd->require_subcommand(1);
    static retention_args a;
    auto* run = cmd->add_subcommand(
        "run",
        "Delete rows past each table's window now, in batches, and show every table's "
        "rows and oldest age (what ferry-relay does every retention.interval)");
    run->add_option("--table", a.table,
                    "Only this table: half_message, expired, parked, dead_letter, check_request, "
                    "reconcile_item, reconcile_run");
    run->add_flag("--json", a.json, "Print a JSON array, one object per table");
    run->callback([&g]() {
        const auto cfg = g.load_config();
        ferry::metrics::registry local;  // this process serves no /metrics
        auto o = ferry::reconcile::retention_options(cfg);
        o.metrics = &local;
        ferry::outbox::retention_runner runner(ferry::reconcile::retained_tables(cfg),
                                               std::move(o));
        auto conn = connect(cfg, "retention");
        const auto results = runner.run_once(*conn, a.table);
        if (a.json) {
            auto out = nlohmann::json::array();
            for (const auto& r : results) {
                out.push_back({{"table", r.table},
                               {"window_key", r.window_key},
                               {"window_ms", r.window.count()},
                               {"pruned", r.pruned},
                               {"deleted", r.deleted},
                               {"batches", r.batches},
                               {"rows", r.after.rows},
                               {"oldest_age_seconds", r.after.oldest_age_seconds}});
            }
            std::cout << out.dump() << "\n";
            return;
        }
        std::printf("%-16s %-10s %10s %8s %12s %14s\n", "TABLE", "WINDOW", "DELETED", "BATCHES",
                    "ROWS", "OLDEST_AGE_S");
        for (const auto& r : results) {
            std::printf(
                "%-16s %-10s %10lld %8d %12lld %14.0f\n", r.table.c_str(),
                (r.window.count() == 0 ? std::string("-") : duration_text(r.window)).c_str(),
                r.deleted, r.batches, r.after.rows, r.after.oldest_age_seconds);
        }
    });
}

}  // namespace ferry::cli
