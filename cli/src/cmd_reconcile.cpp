// ferryctl reconcile run: one reconciliation on demand (the same job ferry-relay runs when
// reconcile.enabled), then its report in table, JSON or CSV. Exit code 0 when the run finished
// (anomalies are data, not errors), 3 when another instance holds the lock.
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>

#include "commands.hpp"
#include "ferry/reconcile/from_config.hpp"
#include "ferry/reconcile/reconcile.hpp"
#include "ferry/reconcile/report.hpp"

namespace ferry::cli {
namespace {

struct reconcile_args {
    std::string window;
    std::string grace;
    bool no_redrive = false;
    std::string format = "table";
};

std::chrono::milliseconds duration_arg(const std::string& text, const char* name) {
    const auto d = ferry::config::parse_duration(text);
    if (!d || d->count() < 0) {
        throw ferry::error(error_kind::permanent, "cli.duration",
                           std::string(name) +
                               ": expected a duration such as 30s, 15m or 1h, got \"" + text + "\"",
                           name);
    }
    return *d;
}

void run(globals& g, const reconcile_args& a) {
    const auto f = reconcile::parse_format(a.format);
    // The report goes to stdout (scripts parse --format json/csv); the job's log lines go to
    // stderr.
    if (!spdlog::get("ferryctl")) spdlog::set_default_logger(spdlog::stderr_logger_mt("ferryctl"));
    const auto cfg = g.load_config();
    auto o = reconcile::options_from_config(cfg);
    if (!a.window.empty()) o.window = duration_arg(a.window, "--window");
    if (!a.grace.empty()) o.grace = duration_arg(a.grace, "--grace");
    if (a.no_redrive) o.redrive = false;
    o.owner = "ferryctl";
    const auto r = reconcile::run(o);
    if (r.status == reconcile::run_status::busy) {
        std::cerr << "ferryctl: another reconciliation of schema " << o.schema
                  << " is running; try again later\n";
        g.exit_code = 3;
        return;
    }
    reconcile::report_store store(o.dsn, o.schema,
                                  static_cast<long>(o.connect_timeout.count() / 1000));
    const auto run = store.get(r.run_id);
    if (!run) {
        // Retention so short that the run was already deleted: say so rather than print nothing.
        throw ferry::error(error_kind::permanent, "cli.report_gone",
                           "run " + std::to_string(r.run_id) +
                               " finished but is no longer stored "
                               "(reconcile.retention)");
    }
    std::cout << reconcile::render_report(*run, store.items(r.run_id), f);
}

}  // namespace

void register_reconcile(CLI::App& app, globals& g) {
    auto* rec = app.add_subcommand("reconcile", "Reconcile producers against consumers (ADR 0005)");
    rec->require_subcommand(1);
    static reconcile_args a;
    auto* r = rec->add_subcommand("run", "Run one reconciliation now and print its report");
    r->add_option("--window", a.window,
                  "Ledger window to check (default reconcile.window), e.g. 1h");
    r->add_option("--grace", a.grace, "In-flight grace (default reconcile.grace), e.g. 5m");
    r->add_flag("--no-redrive", a.no_redrive, "Report only: do not re-drive missing messages");
    r->add_option("--format", a.format, "table | json | csv")
        ->check(CLI::IsMember({"table", "json", "csv"}));
    r->callback([&g] { run(g, a); });
}

}  // namespace ferry::cli
