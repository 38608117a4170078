#include "ferry/retry/fence.hpp"

#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"

namespace ferry::retry {

partition_fence::partition_fence(const std::string& schema, std::string group)
    : _schema(quote_identifier(schema, "schema")), _group(std::move(group)) {}

void partition_fence::acquire(pqxx::transaction_base& tx, const std::string& owner,
                              std::vector<owned_partition>& parts) const {
    try {
        // One statement per partition keeps the lock order of concurrent acquirers irrelevant
        // (each row is locked on its own); rebalances are rare, so the round trips do not matter.
        for (auto& p : parts) {
            const auto r = internal::exec(
                tx,
                "INSERT INTO " + _schema +
                    ".consumer_partition_owner AS o (group_id, topic, partition, owner, epoch) "
                    "VALUES ($1, $2, $3, $4, 1) ON CONFLICT (group_id, topic, partition) DO "
                    "UPDATE SET owner = EXCLUDED.owner, epoch = o.epoch + 1, claimed_at = now() "
                    "RETURNING epoch",
                _group, p.topic, p.partition, owner);
            p.epoch = r[0][0].as<std::int64_t>();
        }
    } catch (...) {
        internal::rethrow_translated("partition fence acquire", "retry");
    }
}

bool partition_fence::holds(pqxx::transaction_base& tx, const std::string& topic,
                            std::int32_t partition, const std::string& owner,
                            std::int64_t epoch) const {
    try {
        const auto r = internal::exec(tx,
                                      "SELECT owner = $4 AND epoch = $5 FROM " + _schema +
                                          ".consumer_partition_owner WHERE group_id = $1 AND "
                                          "topic = $2 AND partition = $3 FOR SHARE",
                                      _group, topic, partition, owner, epoch);
        return !r.empty() && r[0][0].as<bool>();
    } catch (...) {
        internal::rethrow_translated("partition fence check", "retry");
    }
}

}  // namespace ferry::retry
