#pragma once
// Private: the pure decisions of `ferryctl backlog fan-out` (cmd_backlog.cpp), kept apart from
// Kafka I/O so they have unit tests (cli/tests/fanout_test.cpp).
//
//  - where each source partition starts: the forwarder's own checkpoint (a resumed run) or the
//    group's committed offset, whichever is further, else the partition's log start;
//  - which target partition a record goes to: Kafka's murmur2 of the key (what librdkafka's
//    `murmur2` and the Java client's default partitioner compute), so every record of a key
//    lands in one target partition in source order; a record without a key stays with the
//    records of its source partition (source partition modulo the target count).
// Thread-safety: free functions, no state.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ferry::cli::fanout {

/// librdkafka's "no committed offset" (RD_KAFKA_OFFSET_INVALID).
inline constexpr std::int64_t k_no_offset = -1001;

struct partition_plan {
    std::int32_t partition = 0;
    std::int64_t group_offset = k_no_offset;      // the group's committed offset on the source
    std::int64_t forwarder_offset = k_no_offset;  // the forwarder's checkpoint (resume)
    std::int64_t low = 0;                         // log start
    std::int64_t high = 0;                        // high watermark when the run started
    std::int64_t start = 0;                       // first offset this run forwards
    [[nodiscard]] std::int64_t backlog() const { return high > start ? high - start : 0; }
};

/// Fills `start` from the other fields: max(forwarder checkpoint, group offset), each only when
/// present, else the log start; never below the log start (records deleted by retention are
/// gone) and never above the high watermark.
void plan_start(partition_plan& p);

/// The target partition of a record: murmur2(key) for a keyed record, the source partition
/// modulo `targets` for a record without a key. `targets` must be positive.
[[nodiscard]] std::int32_t target_partition(const std::optional<std::string>& key,
                                            std::int32_t source_partition, std::int32_t targets);

/// The default forwarder group, whose committed offsets on the source topic are the durable
/// checkpoint of the fan-out from `from` to `to` for `group`.
[[nodiscard]] std::string forwarder_group(const std::string& group, const std::string& from,
                                          const std::string& to);

}  // namespace ferry::cli::fanout
