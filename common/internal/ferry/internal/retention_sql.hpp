#pragma once
// Private: the two statements every table's retention runs (ferry/common/retention.hpp), so
// each owning module only names its table, key and condition.
//
// delete_batch(): one bounded DELETE: the primary keys of at most `batch` rows matching
// `condition` are picked first (skipping rows another transaction has locked, so pruning never
// waits behind a live decision or claim), then deleted by key. `condition` may use $1, the
// window in milliseconds; the batch size is $2. Table and column names come from the module's
// own code, never from input; `quoted_schema` is already quoted.

#include <pqxx/pqxx>
#include <string>
#include <utility>

#include "ferry/common/retention.hpp"
#include "ferry/internal/pq.hpp"

namespace ferry::internal {

/// `... WHERE <column> < <database clock> - window`, for a condition of delete_batch().
inline std::string older_than_window(const std::string& column) {
    return column + " < clock_timestamp() - $1::bigint * interval '1 millisecond'";
}

inline long long delete_batch(pqxx::transaction_base& tx, const std::string& quoted_schema,
                              const std::string& table, const std::string& key,
                              const std::string& condition, std::chrono::milliseconds window,
                              long long batch) {
    const std::string t = quoted_schema + "." + table;
    const auto r =
        exec(tx,
             "DELETE FROM " + t + " WHERE " + key + " = ANY(ARRAY(SELECT " + key + " FROM " + t +
                 " WHERE " + condition + " LIMIT $2 FOR UPDATE SKIP LOCKED))",
             static_cast<long long>(window.count()), batch);
    return static_cast<long long>(r.affected_rows());
}

/// Rows and the age of the oldest by `time_column` (0 when empty).
inline retention::table_stats measure_table(pqxx::transaction_base& tx,
                                            const std::string& quoted_schema,
                                            const std::string& table,
                                            const std::string& time_column) {
    const auto r = tx.exec("SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(" +
                           time_column + ")), 0)::float8 FROM " + quoted_schema + "." + table);
    return {r[0][0].as<long long>(), r[0][1].as<double>()};
}

/// The usual retained table: `condition` (which may use $1, the window) picks the rows to
/// delete by `key`; rows and oldest age are measured by `time_column`.
inline retention::table retained_table(const std::string& quoted_schema, std::string name,
                                       std::string window_key, std::chrono::milliseconds window,
                                       const std::string& key, const std::string& condition,
                                       const std::string& time_column) {
    retention::table t;
    t.name = std::move(name);
    t.window_key = std::move(window_key);
    t.window = window;
    t.prune_batch = [quoted_schema, table = t.name, key, condition, window](
                        pqxx::transaction_base& tx, long long batch) {
        return delete_batch(tx, quoted_schema, table, key, condition, window, batch);
    };
    t.measure = [quoted_schema, table = t.name, time_column](pqxx::transaction_base& tx) {
        return measure_table(tx, quoted_schema, table, time_column);
    };
    return t;
}

}  // namespace ferry::internal
