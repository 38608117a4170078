#pragma once
// Formatting of durations and byte sizes in the same notation parse_duration and parse_size
// accept, so that render_redacted() output loads back unchanged.

#include <chrono>
#include <cstddef>
#include <string>

namespace ferry::config::detail {

/// The largest whole unit that represents `d` exactly: "2h", "90s", "250ms".
[[nodiscard]] std::string format_duration(std::chrono::milliseconds d);
/// The largest binary unit that represents `bytes` exactly: "1MiB", "64KiB", "1000".
[[nodiscard]] std::string format_size(std::size_t bytes);

}  // namespace ferry::config::detail
