#pragma once
// Private: text for one logfmt value: newlines and double quotes become spaces, trailing spaces
// go (server messages end in a newline).

#include <string>

namespace ferry::relay::detail {

inline std::string one_line(std::string s) {
    for (auto& c : s) {
        if (c == '\n' || c == '"') c = ' ';
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
}

}  // namespace ferry::relay::detail
