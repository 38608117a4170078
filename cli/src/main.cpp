// ferryctl: operator command line for Ferry (migrations, status, configuration, ...).
#include <CLI/CLI.hpp>
#include <iostream>

#include "commands.hpp"
#include "ferry/common/error.hpp"

int main(int argc, char** argv) {
    CLI::App app{"ferryctl - operate Ferry's outbox, relay and consumers"};
    app.require_subcommand(1);
    ferry::cli::globals g;
    app.add_option("-c,--config", g.config_path,
                   "YAML configuration file (default: defaults + FERRY_* environment)");
    ferry::cli::register_config(app, g);
    ferry::cli::register_migrate(app, g);
    ferry::cli::register_status(app, g);
    ferry::cli::register_dlq(app, g);
    ferry::cli::register_half(app, g);
    ferry::cli::register_parked(app, g);
    ferry::cli::register_expired(app, g);
    ferry::cli::register_reconcile(app, g);
    ferry::cli::register_report(app, g);
    ferry::cli::register_inbox(app, g);
    ferry::cli::register_wal(app, g);
    ferry::cli::register_retention(app, g);
    ferry::cli::register_backlog(app, g);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const ferry::error& e) {
        std::cerr << "ferryctl: " << e.what() << " [" << e.code() << "]\n";
        // Exit codes (cli/README.md): 4 = no such message, 2 = fix the input or configuration,
        // 1 = try again (database unreachable, transient).
        if (e.code() == "cli.not_parked" || e.code() == "outbox.half_unknown") return 4;
        return e.kind() == ferry::error_kind::permanent ? 2 : 1;
    } catch (const std::exception& e) {
        std::cerr << "ferryctl: " << e.what() << "\n";
        return 1;
    }
    return g.exit_code;
}
