#pragma once
// ferryctl subcommands. Each register_* adds its subcommand to the app; the callbacks set
// `exit_code` so main() can return it. Options shared by every subcommand live in `globals`.

#include <CLI/CLI.hpp>
#include <chrono>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <string_view>

#include "ferry/config/config.hpp"

namespace ferry::cli {

struct globals {
    std::string config_path;  // --config FILE; empty = defaults + environment
    int exit_code = 0;

    /// Loads the configuration named by --config (or defaults + env). On errors prints every
    /// diagnostic to stderr and throws CLI::RuntimeError(2).
    [[nodiscard]] ferry::config::ferry_config load_config() const;
};

/// A session on the configured database (postgres.dsn, connect_timeout), named "ferryctl" in
/// pg_stat_activity, with a statement_timeout (0: the server's default). Throws ferry::error
/// ("<prefix>.connect", retryable) without the connection string.
[[nodiscard]] std::unique_ptr<pqxx::connection> connect(
    const ferry::config::ferry_config& cfg, std::string_view prefix,
    std::chrono::milliseconds statement_timeout = std::chrono::minutes(5));

/// A duration as an operator writes it in YAML: "168h", "90m", "30s", else "250ms".
[[nodiscard]] inline std::string duration_text(std::chrono::milliseconds d) {
    if (d.count() % 3600000 == 0) return std::to_string(d.count() / 3600000) + "h";
    if (d.count() % 60000 == 0) return std::to_string(d.count() / 60000) + "m";
    if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
    return std::to_string(d.count()) + "ms";
}

void register_config(CLI::App& app, globals& g);   // config check FILE | config show
void register_migrate(CLI::App& app, globals& g);  // migrate
void register_status(CLI::App& app, globals& g);   // status [--json]
void register_dlq(CLI::App& app, globals& g);      // dlq list|show|replay|purge
void register_parked(CLI::App& app, globals& g);   // parked list|show|retry|discard
void register_half(CLI::App& app, globals& g);     // half list|show|commit|rollback
void register_expired(CLI::App& app, globals& g);  // expired list|show|redrive

void register_reconcile(CLI::App& app, globals& g);  // reconcile run
void register_report(CLI::App& app, globals& g);     // report list|show
void register_inbox(CLI::App& app, globals& g);      // inbox prune
void register_wal(CLI::App& app, globals& g);        // wal setup|status|slot|publication
void register_retention(CLI::App& app, globals& g);  // retention run
void register_backlog(CLI::App& app, globals& g);    // backlog fan-out

}  // namespace ferry::cli
