#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/outbox/status.hpp"

namespace ferry::cli {

void register_status(CLI::App& app, globals& g) {
    auto* cmd = app.add_subcommand("status", "Show outbox backlog and schema version");
    static bool as_json = false;
    cmd->add_flag("--json", as_json, "Print one JSON object");
    cmd->callback([&g]() {
        const auto cfg = g.load_config();
        auto conn = connect(cfg, "status");
        const auto s = outbox::read_status(*conn, cfg.postgres.schema);
        if (as_json) {
            nlohmann::json j{
                {"schema", cfg.postgres.schema}, {"schema_version", s.schema_version},
                {"pending", s.pending},          {"oldest_pending_age_s", s.oldest_pending_age_s},
                {"delayed", s.delayed},          {"parked", s.parked},
                {"expired", s.expired},          {"half_pending", s.half_pending},
                {"half_parked", s.half_parked}};
            std::cout << j.dump() << "\n";
        } else {
            std::cout << "schema:               " << cfg.postgres.schema << " (version "
                      << s.schema_version << ")\n"
                      << "pending:              " << s.pending << "\n"
                      << "oldest pending age:   " << s.oldest_pending_age_s << " s\n"
                      << "delayed:              " << s.delayed << "\n"
                      << "parked:               " << s.parked << "\n"
                      << "expired:              " << s.expired << "\n"
                      << "half pending:         " << s.half_pending << "\n"
                      << "half parked:          " << s.half_parked << "\n";
        }
    });
}

}  // namespace ferry::cli
