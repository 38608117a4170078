#pragma once
// Retention of reconciliation reports (outbox/sql/0006_reconcile.sql), window
// reconcile.retention, by the run's started_at (ferry/common/retention.hpp):
//  - reconcile_item: the items of runs past the window, in bounded batches;
//  - reconcile_run: runs past the window whose items are gone.
// The latest succeeded run of each scope (the reconcile_latest view, what `/reports` and
// `ferryctl report list` show first) is kept whatever its age, so a scope that stopped running
// still has its last report. Run reconcile_item before reconcile_run (runs_retention() returns
// them in that order); a run whose items are not all gone yet waits for the next pass.

#include <chrono>
#include <string>
#include <vector>

#include "ferry/common/retention.hpp"

namespace ferry::reconcile {

/// `schema` is the unquoted schema name; `window` is reconcile.retention. Returns
/// {reconcile_item, reconcile_run}.
[[nodiscard]] std::vector<retention::table> report_retention(const std::string& schema,
                                                             std::chrono::milliseconds window);

}  // namespace ferry::reconcile
