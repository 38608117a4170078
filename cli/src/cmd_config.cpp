// ferryctl config check FILE | config show, and globals::load_config() used by every command.
//
// Exit codes: 0 when the configuration is valid, 2 when it has errors (the same code main()
// uses for permanent ferry::error). Errors leave through CLI::RuntimeError(2): CLI11 2.1 derives
// it from CLI::ParseError, so main()'s `catch (const CLI::ParseError&)` hands it to app.exit(),
// which returns the code without printing anything more.

#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "ferry/config/config.hpp"

namespace ferry::cli {
namespace {

void print_diagnostics(const std::vector<ferry::config::diagnostic>& errors) {
    for (const auto& d : errors) std::cerr << d.to_string() << '\n';
    std::cerr << "ferryctl: configuration has " << errors.size()
              << (errors.size() == 1 ? " error\n" : " errors\n");
}

}  // namespace

ferry::config::ferry_config globals::load_config() const {
    auto result = config_path.empty() ? ferry::config::load_defaults()
                                      : ferry::config::load_file(config_path);
    if (!result.ok()) {
        print_diagnostics(result.errors);
        throw CLI::RuntimeError(2);
    }
    return std::move(result.config);
}

void register_config(CLI::App& app, globals& g) {
    auto* config = app.add_subcommand("config", "Validate or print the configuration");
    config->require_subcommand(1);

    // The callback outlives this function; the parsed path lives in shared storage it owns.
    auto file = std::make_shared<std::string>();
    auto* check = config->add_subcommand(
        "check",
        "Validate FILE (with FERRY_* overrides): print every problem as file:line:col: key: "
        "message and exit 2, or print \"config ok\" and exit 0");
    check->add_option("file", *file, "YAML configuration file")->required();
    check->callback([&g, file] {
        const auto result = ferry::config::load_file(*file);
        if (!result.ok()) {
            print_diagnostics(result.errors);
            g.exit_code = 2;
            return;
        }
        std::cout << "config ok: " << *file << '\n';
        g.exit_code = 0;
    });

    auto* show = config->add_subcommand(
        "show",
        "Print the effective configuration (--config FILE, or defaults + FERRY_* environment) "
        "as YAML with secrets masked");
    show->callback([&g] {
        const auto cfg = g.load_config();
        std::cout << ferry::config::render_redacted(cfg);
        g.exit_code = 0;
    });
}

}  // namespace ferry::cli
