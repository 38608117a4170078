#pragma once
// Helpers shared by the config unit tests: a fake environment, loading from text, and finding
// the diagnostic of one key with its line:column.

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/config/config.hpp"

namespace ferry_config_test {

inline ferry::config::env_lookup fake_env(std::map<std::string, std::string> vars = {}) {
    return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
        const auto it = vars.find(name);
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}

inline ferry::config::load_result load(std::string_view yaml,
                                       std::map<std::string, std::string> vars = {}) {
    return ferry::config::load_string(yaml, "test.yaml", fake_env(std::move(vars)));
}

inline std::string all_messages(const ferry::config::load_result& r) {
    std::string out;
    for (const auto& d : r.errors) out += d.to_string() + "\n";
    return out;
}

// The one diagnostic for `key`; fails the test when there is not exactly one.
inline ferry::config::diagnostic only_error_for(const ferry::config::load_result& r,
                                                const std::string& key) {
    std::vector<ferry::config::diagnostic> found;
    for (const auto& d : r.errors) {
        if (d.key == key) found.push_back(d);
    }
    EXPECT_EQ(found.size(), 1u) << "diagnostics for " << key << ":\n" << all_messages(r);
    return found.empty() ? ferry::config::diagnostic{} : found.front();
}

inline void expect_at(const ferry::config::diagnostic& d, int line, int column) {
    EXPECT_EQ(d.line, line) << d.to_string();
    EXPECT_EQ(d.column, column) << d.to_string();
}

}  // namespace ferry_config_test
