#include "ferry/wal/lsn.hpp"

#include <cstdio>

namespace ferry::wal {

std::string format_lsn(lsn value) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(value >> 32),
                  static_cast<unsigned>(value & 0xffffffffu));
    return buf;
}

std::optional<lsn> parse_lsn(std::string_view text) noexcept {
    const auto slash = text.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    auto hex = [](std::string_view s) -> std::optional<std::uint64_t> {
        if (s.empty() || s.size() > 8) return std::nullopt;
        std::uint64_t v = 0;
        for (char c : s) {
            int d;
            if (c >= '0' && c <= '9') {
                d = c - '0';
            } else if (c >= 'a' && c <= 'f') {
                d = c - 'a' + 10;
            } else if (c >= 'A' && c <= 'F') {
                d = c - 'A' + 10;
            } else {
                return std::nullopt;
            }
            v = v * 16 + static_cast<std::uint64_t>(d);
        }
        return v;
    };
    const auto hi = hex(text.substr(0, slash));
    const auto lo = hex(text.substr(slash + 1));
    if (!hi || !lo) return std::nullopt;
    return (*hi << 32) | *lo;
}

}  // namespace ferry::wal
