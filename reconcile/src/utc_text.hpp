#pragma once
// SQL shared by the report and held-message stores. Private to ferry::reconcile.

#include <string>

namespace ferry::reconcile {

/// SQL that renders the timestamptz expression `col` as RFC 3339 UTC text with microseconds
/// (`2026-11-30T18:00:00.000000Z`), or '' when it is NULL.
inline std::string utc_text_or_empty(const std::string& col) {
    return "coalesce(to_char(" + col +
           " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '')";
}

}  // namespace ferry::reconcile
