#include "ferry/internal/instance_id.hpp"

#include <unistd.h>

#include <cstdio>
#include <random>

namespace ferry::internal {

std::string default_instance_id() {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') {
        std::snprintf(host, sizeof host, "host");
    }
    std::random_device rd;
    char suffix[8];
    std::snprintf(suffix, sizeof suffix, "%06x", static_cast<unsigned>(rd() & 0xffffffu));
    return std::string(host) + "-" + std::to_string(::getpid()) + "-" + suffix;
}

}  // namespace ferry::internal
