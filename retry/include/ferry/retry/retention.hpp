#pragma once
// Retention of dead letters (dead_letter, consumer/sql/0003_consumer.sql), window
// retention.dead_letter (ferry/common/retention.hpp). A purge already deletes its rows; a replay
// keeps the row (replayed_at set) as the record of what was replayed, and those rows are
// deleted once replayed_at is past the window. A dead letter that was never replayed is never
// deleted by retention: it is a message Ferry gave up on, and it may hold its key
// (blocks_key); only an operator's purge or replay ends it.

#include <chrono>
#include <string>

#include "ferry/common/retention.hpp"

namespace ferry::retry {

/// `schema` is the unquoted schema name of the consumer's database.
[[nodiscard]] retention::table dead_letter_retention(const std::string& schema,
                                                     std::chrono::milliseconds window);

}  // namespace ferry::retry
