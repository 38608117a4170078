#include <iostream>

#include "commands.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/outbox/migrate.hpp"

namespace ferry::cli {

void register_migrate(CLI::App& app, globals& g) {
    auto* cmd =
        app.add_subcommand("migrate", "Apply pending schema migrations (safe to run concurrently)");
    cmd->callback([&g]() {
        const auto cfg = g.load_config();
        // No statement_timeout: an index build on a large table may take a while.
        auto conn = connect(cfg, "migrate", std::chrono::milliseconds(0));
        const auto r = outbox::migrate(*conn, cfg.postgres.schema);
        if (r.applied.empty()) {
            std::cout << "schema " << cfg.postgres.schema << " is up to date (version "
                      << r.current_version << ")\n";
        } else {
            std::cout << "schema " << cfg.postgres.schema << ": applied";
            for (int v : r.applied) std::cout << ' ' << v;
            std::cout << " (now version " << r.current_version << ")\n";
        }
    });
}

}  // namespace ferry::cli
