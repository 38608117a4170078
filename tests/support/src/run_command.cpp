#include "ferry/test/run_command.hpp"

#include <sys/wait.h>

#include <cstdio>

namespace ferry::test {

command_result run_command(const std::string& command_line) {
    FILE* p = popen(command_line.c_str(), "r");
    if (!p) return {-1, "popen failed"};
    command_result r;
    char buf[4096];
    while (auto n = fread(buf, 1, sizeof buf, p)) r.output.append(buf, n);
    const int status = pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

}  // namespace ferry::test
