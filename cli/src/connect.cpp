// ferryctl's database session (commands.hpp: connect()). Kept out of cmd_config.cpp, which
// config/tests also compiles without Ferry's private include path.
#include "commands.hpp"
#include "ferry/internal/pq.hpp"

namespace ferry::cli {

std::unique_ptr<pqxx::connection> connect(const ferry::config::ferry_config& cfg,
                                          std::string_view prefix,
                                          std::chrono::milliseconds statement_timeout) {
    internal::session_settings s;
    s.connect_timeout = cfg.postgres.connect_timeout;
    s.statement_timeout = statement_timeout;
    s.application_name = "ferryctl";
    return internal::connect_unique(cfg.postgres.dsn, s, prefix);
}

}  // namespace ferry::cli
