#include <iostream>

#include "commands.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/outbox/migrate.hpp"

namespace ferry::cli {

void register_migrate(CLI::App& app, globals& g) {
    std::string modules;
    for (const auto& m : outbox::schema_modules()) modules += (modules.empty() ? "" : ", ") + m;
    auto* cmd =
        app.add_subcommand("migrate", "Apply pending schema migrations (safe to run concurrently)");
    static std::vector<std::string> only;
    cmd->add_option("--only", only,
                    "Only these modules' tables, with the modules they need (comma-separated: " +
                        modules + "); a consumer-only database uses --only consumer")
        ->delimiter(',');
    cmd->callback([&g]() {
        const auto cfg = g.load_config();
        // Validates --only before connecting: a typo is a usage error, not a database one.
        outbox::migrate_options options;
        options.only = only;
        (void)outbox::modules_for(options.only);
        // No statement_timeout: an index build on a large table may take a while.
        auto conn = connect(cfg, "migrate", std::chrono::milliseconds(0));
        const auto r = outbox::migrate(*conn, cfg.postgres.schema, options);
        std::string installed;
        for (const auto& m : r.modules) installed += (installed.empty() ? "" : ", ") + m;
        if (r.applied.empty()) {
            std::cout << "schema " << cfg.postgres.schema << " is up to date (version "
                      << r.current_version << "; modules: " << installed << ")\n";
        } else {
            std::cout << "schema " << cfg.postgres.schema << ": applied";
            for (int v : r.applied) std::cout << ' ' << v;
            std::cout << " (now version " << r.current_version << "; modules: " << installed
                      << ")\n";
        }
    });
}

}  // namespace ferry::cli
