#pragma once
// Retention of a table that keeps rows after a message's life ended (terminal half messages,
// expired messages, replayed dead letters, check-back requests, reconciliation reports).
//
// The module that owns a table describes its retention with a `retention::table`: how to delete
// one bounded batch of rows past the window, and how to measure the table (rows, oldest age).
// ferry::outbox::retention_runner runs a list of them (ferry-relay on a schedule, `ferryctl
// retention run` on demand) and exports the measurements as metrics. Header-only and free of
// libpqxx's definitions (pqxx::transaction_base is only named), so modules that do not use it
// pay nothing.
//
// Thread-safety: a table is a value; its functions keep no state and may run on any thread, each
// call in the transaction it is given.

#include <chrono>
#include <functional>
#include <string>

namespace pqxx {
class transaction_base;
}  // namespace pqxx

namespace ferry::retention {

/// A table's size now: its rows and the age of its oldest row (0 when empty), both by the
/// database (count(*), clock_timestamp()).
struct table_stats {
    long long rows = 0;
    double oldest_age_seconds = 0;
};

struct table {
    /// The table's name, also the `table` label of its metrics ("half_message").
    std::string name;
    /// The configuration key of its window ("retention.expired"), for reports and errors.
    std::string window_key;
    /// Rows older than this are deleted; 0 when the table is measured only.
    std::chrono::milliseconds window{0};
    /// Deletes at most `batch` rows past the window in the given transaction and returns how
    /// many it deleted. Empty: the table is never pruned (measured only).
    std::function<long long(pqxx::transaction_base&, long long batch)> prune_batch;
    std::function<table_stats(pqxx::transaction_base&)> measure;
};

}  // namespace ferry::retention
