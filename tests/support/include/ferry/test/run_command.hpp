#pragma once

// Runs a shell command line and captures its standard output (redirect stderr in the command
// itself, e.g. "2>&1" or "2>/dev/null"). For tests that drive ferryctl and other binaries.
// Thread-safe: each call has its own pipe.

#include <string>

namespace ferry::test {

struct command_result {
    int exit_code = -1;  // -1 when the command could not run or did not exit normally
    std::string output;
};

[[nodiscard]] command_result run_command(const std::string& command_line);

}  // namespace ferry::test
