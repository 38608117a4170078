// ferryctl report list | show ID: stored reconciliation reports (reconcile_run/reconcile_item),
// as table, JSON or CSV, filtered by kind, group, topic and time.
#include <iostream>

#include "commands.hpp"
#include "ferry/reconcile/report.hpp"

namespace ferry::cli {
namespace {

struct report_args {
    std::string format = "table";
    std::string kind, group, topic, since;
    std::int64_t limit = 100;
    std::int64_t id = 0;
    bool json = false;  // --json: the same as --format json
};

reconcile::report_filter filter_of(const report_args& a) {
    reconcile::report_filter f;
    if (!a.kind.empty()) f.kind = a.kind;
    if (!a.group.empty()) f.group = a.group;
    if (!a.topic.empty()) f.topic = a.topic;
    if (!a.since.empty()) f.since = a.since;
    f.limit = a.limit;
    return f;
}

std::unique_ptr<reconcile::report_store> open(const globals& g) {
    const auto cfg = g.load_config();
    return std::make_unique<reconcile::report_store>(
        cfg.postgres.dsn, cfg.postgres.schema,
        static_cast<long>(cfg.postgres.connect_timeout.count() / 1000));
}

void list(const globals& g, const report_args& a) {
    const auto f = reconcile::parse_format(a.json ? "json" : a.format);
    auto store = open(g);
    std::cout << reconcile::render_runs(store->list(filter_of(a)), f);
}

void show(const globals& g, const report_args& a) {
    const auto f = reconcile::parse_format(a.json ? "json" : a.format);
    auto store = open(g);
    const auto run = store->get(a.id);
    if (!run) {
        throw ferry::error(error_kind::permanent, "cli.no_report",
                           "ID: no reconciliation run has id " + std::to_string(a.id) +
                               " (see `ferryctl report list`)",
                           "ID");
    }
    auto fl = filter_of(a);
    fl.limit = a.limit;
    std::cout << reconcile::render_report(*run, store->items(a.id, fl), f);
}

void add_common(CLI::App* c, report_args& a, const char* since_help) {
    c->add_option("--format", a.format, "table | json | csv")
        ->check(CLI::IsMember({"table", "json", "csv"}));
    c->add_flag("--json", a.json, "The same as --format json (as on every list command)");
    c->add_option("--kind", a.kind, "Only this kind (missing, stuck_unpublished, ...)");
    c->add_option("--group", a.group, "Only this consumer group");
    c->add_option("--topic", a.topic, "Only this outbox topic");
    c->add_option("--since", a.since, since_help);
    c->add_option("--limit", a.limit, "At most this many rows")->check(CLI::Range(1, 10000000));
}

}  // namespace

void register_report(CLI::App& app, globals& g) {
    auto* rep = app.add_subcommand("report", "Stored reconciliation reports: list, show");
    rep->require_subcommand(1);
    static report_args a;
    auto* ls =
        rep->add_subcommand("list", "Reconciliation runs, newest first, with counts by kind");
    add_common(ls, a, "Runs started at or after this time (e.g. 2026-01-01T00:00:00Z)");
    ls->callback([&g] { list(g, a); });
    auto* sh = rep->add_subcommand("show", "One run's items");
    sh->add_option("ID", a.id, "Run id (the id column of `report list`)")->required();
    add_common(sh, a, "Items whose event time is at or after this time");
    sh->callback([&g] { show(g, a); });
}

}  // namespace ferry::cli
