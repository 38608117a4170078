#pragma once
// Retention of the check-back mailbox (check_request, outbox/sql/0005_checkback.sql): requests
// older than the window by created_at that are answered or past their deadline are deleted in
// bounded batches (ferry/common/retention.hpp). An open request is never deleted: the scheduler
// is still waiting for its answer. ferry::outbox::retention_runner runs it (ferry-relay,
// `ferryctl retention run`); the scheduler also prunes with the same function.

#include <chrono>
#include <string>

#include "ferry/common/retention.hpp"

namespace ferry::checkback {

/// `schema` is the unquoted schema name; `window` is retention.check_request.
[[nodiscard]] retention::table check_request_retention(const std::string& schema,
                                                       std::chrono::milliseconds window);

}  // namespace ferry::checkback
