#include "ferry/test/unique_name.hpp"

#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <random>

namespace ferry::test {

namespace {

// PostgreSQL truncates identifiers beyond 63 bytes (NAMEDATALEN - 1); stay within it so the
// name a test uses is the name the server stores.
constexpr std::size_t k_max_length = 63;

uint32_t random_bits() {
    static std::mutex mutex;
    static std::mt19937 generator{std::random_device{}()};
    std::lock_guard lock(mutex);
    return static_cast<uint32_t>(generator());
}

}  // namespace

std::string unique_name(std::string_view prefix) {
    static std::atomic<uint64_t> counter{0};

    std::string clean;
    clean.reserve(prefix.size());
    for (char c : prefix) {
        if (c >= 'A' && c <= 'Z') {
            clean.push_back(static_cast<char>(c - 'A' + 'a'));
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
            clean.push_back(c);
        } else {
            clean.push_back('_');
        }
    }
    if (clean.empty() || !(clean[0] >= 'a' && clean[0] <= 'z')) {
        clean = "t" + clean;
    }

    char suffix[64];
    const uint64_t sequence = counter.fetch_add(1) + 1;
    std::snprintf(suffix, sizeof(suffix), "_%ld_%" PRIu64 "_%08" PRIx32,
                  static_cast<long>(::getpid()), sequence, random_bits());
    const std::string tail(suffix);
    if (clean.size() + tail.size() > k_max_length) {
        clean.resize(k_max_length - tail.size());
    }
    return clean + tail;
}

}  // namespace ferry::test
