#pragma once
// Point-in-time counts of the outbox, for ferryctl status and the relay's metrics.

#include <cstdint>
#include <pqxx/pqxx>
#include <string>

#include "ferry/common/error.hpp"  // every call here throws ferry::error

namespace ferry::outbox {

struct outbox_status {
    /// Committed messages not yet published (including delayed ones).
    std::int64_t pending = 0;
    /// Age in seconds of the oldest pending message; 0 when none is pending.
    double oldest_pending_age_s = 0;
    /// Pending messages whose delivery time has not come yet.
    std::int64_t delayed = 0;
    /// Messages Kafka refused permanently, waiting for `ferryctl parked retry|discard`.
    std::int64_t parked = 0;
    /// Messages that expired before they were published (kept in the expired table).
    std::int64_t expired = 0;
    /// Half messages waiting for a decision, and those parked after their checks ran out.
    std::int64_t half_pending = 0;
    std::int64_t half_parked = 0;
    int schema_version = 0;
};

[[nodiscard]] outbox_status read_status(pqxx::connection& conn, const std::string& schema);

}  // namespace ferry::outbox
