// The pure decisions of the backlog fan-out (fanout.hpp).
#include "fanout.hpp"

#include <librdkafka/rdkafka.h>

#include <algorithm>

namespace ferry::cli::fanout {

void plan_start(partition_plan& p) {
    std::int64_t s = p.low;
    bool found = false;
    for (const std::int64_t o : {p.group_offset, p.forwarder_offset}) {
        if (o < 0) continue;  // no committed offset (or a logical one)
        s = found ? std::max(s, o) : o;
        found = true;
    }
    p.start = std::clamp(s, p.low, std::max(p.low, p.high));
}

std::int32_t target_partition(const std::optional<std::string>& key, std::int32_t source_partition,
                              std::int32_t targets) {
    if (!key) return source_partition % targets;
    // librdkafka's Java-compatible murmur2 partitioner; it reads only the key and the count.
    return rd_kafka_msg_partitioner_murmur2(nullptr, key->data(), key->size(), targets, nullptr,
                                            nullptr);
}

std::string forwarder_group(const std::string& group, const std::string& from,
                            const std::string& to) {
    return "ferry-fanout." + group + "." + from + "." + to;
}

}  // namespace ferry::cli::fanout
