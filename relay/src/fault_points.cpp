#include "fault_points.hpp"

#ifdef FERRY_FAULT_POINTS
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>
#include <thread>

namespace ferry::relay::detail::fault {

namespace {
std::mutex fired_mutex;
std::set<std::string> fired;  // the points that fired (each fires once per process)
}  // namespace

void sleep_point(const char* name, const char* env_name, int group, std::int64_t epoch,
                 std::size_t rows) {
    const char* env = std::getenv(env_name);
    if (env == nullptr || rows == 0) return;
    {
        std::lock_guard lock(fired_mutex);
        if (!fired.insert(name).second) return;
    }
    const long sleep_ms = std::atol(env);
    spdlog::warn("event=fault_point name={} group={} epoch={} rows={} sleep_ms={}", name, group,
                 epoch, rows, sleep_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
}

bool during_mark_pending() {
    if (std::getenv("FERRY_RELAY_FAULT_DURING_MARK_MS") == nullptr) return false;
    std::lock_guard lock(fired_mutex);
    return fired.count("during_mark") == 0;
}

bool produce_guard_enabled() {
    static const bool disabled = std::getenv("FERRY_RELAY_UNSAFE_NO_PRODUCE_GUARD") != nullptr;
    return !disabled;
}

bool wal_confirm_on_receipt() {
    static const bool unsafe = std::getenv("FERRY_RELAY_UNSAFE_WAL_CONFIRM_ON_RECEIPT") != nullptr;
    return unsafe;
}

// Read at each snapshot source's construction (not cached: in-process tests set it per test).
bool snapshot_without_in_progress() {
    return std::getenv("FERRY_RELAY_UNSAFE_SNAPSHOT_NO_IN_PROGRESS") != nullptr;
}

bool fatal_producer_armed(std::size_t groups) {
    static std::atomic<bool> fired{false};
    if (groups < 2 || std::getenv("FERRY_RELAY_FAULT_FATAL_PRODUCER") == nullptr) return false;
    return !fired.exchange(true);
}

}  // namespace ferry::relay::detail::fault
#endif
