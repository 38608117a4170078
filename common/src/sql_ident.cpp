#include "ferry/common/sql_ident.hpp"

#include "ferry/common/error.hpp"

namespace ferry {

bool is_valid_identifier(std::string_view name) noexcept {
    if (name.empty() || name.size() > 63) return false;
    const auto first = name.front();
    if (!((first >= 'a' && first <= 'z') || first == '_')) return false;
    for (char c : name) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

void require_identifier(std::string_view name, std::string_view field) {
    if (is_valid_identifier(name)) return;
    std::string shown{name.substr(0, 80)};
    throw error(error_kind::permanent, "config.invalid_identifier",
                std::string(field) + ": \"" + shown +
                    "\" is not a valid SQL identifier (use 1-63 characters of [a-z0-9_], "
                    "not starting with a digit)",
                std::string(field));
}

std::string quote_identifier(std::string_view name, std::string_view field) {
    require_identifier(name, field);
    std::string out;
    out.reserve(name.size() + 2);
    out += '"';
    out += name;
    out += '"';
    return out;
}

}  // namespace ferry
