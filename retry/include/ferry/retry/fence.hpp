#pragma once
// Partition ownership fencing for the consumer's durable failure records
// (consumer/sql/0020_consumer_partition_owner.sql, docs/adr/0020-consumer-partition-fencing.md).
//
// When a consumer is assigned a partition it calls acquire(): the row of (group, topic,
// partition) names it as owner with a new, larger epoch. Every retry, parking and dead-letter
// write of the live path first calls holds() in the same transaction: it locks the row FOR SHARE
// and checks owner and epoch. A later acquire() by another instance updates the row, so it waits
// for any transaction that holds the lock; after it commits, holds() of the old owner is false.
// The new owner loads the blocked keys of ordered retry after its acquire() committed, so every
// record of the old owner is either visible to that load or refused.
//
// Thread-safety: stateless apart from the schema and group names; use one transaction per thread.

#include <cstdint>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "ferry/common/error.hpp"  // every call throws ferry::error for database errors

namespace ferry::retry {

struct owned_partition {
    std::string topic;
    std::int32_t partition = 0;
    std::int64_t epoch = 0;  // filled by acquire()
};

class partition_fence {
public:
    partition_fence(const std::string& schema, std::string group);

    /// Makes `owner` the owner of every partition in `parts` with a fresh epoch each (written
    /// into `parts[i].epoch`). Waits for writers that hold the previous owner's lock.
    void acquire(pqxx::transaction_base& tx, const std::string& owner,
                 std::vector<owned_partition>& parts) const;
    /// True while `owner` still owns the partition with `epoch`; locks the row FOR SHARE until
    /// the caller's transaction ends, so no acquire() can slip in before it commits.
    [[nodiscard]] bool holds(pqxx::transaction_base& tx, const std::string& topic,
                             std::int32_t partition, const std::string& owner,
                             std::int64_t epoch) const;

private:
    std::string _schema;  // quoted
    std::string _group;
};

}  // namespace ferry::retry
