#pragma once
// Reading stored reconciliation reports (reconcile_run / reconcile_item) and rendering them as
// table, JSON or CSV. Used by ferryctl and the relay's GET /reports endpoints.
//
// report_store owns one PostgreSQL connection, opened in the constructor. Not thread-safe: use
// one per thread (the HTTP handlers open one per request). Every call throws ferry::error.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ferry/common/error.hpp"

namespace ferry::reconcile {

struct run_summary {
    std::int64_t id = 0;
    std::string scope;
    std::string window_start, window_end, started_at, finished_at;  // RFC 3339 UTC; "" if none
    std::string status;
    bool redrive = false;
    std::int64_t scanned = 0;
    std::int64_t redriven = 0;
    std::map<std::string, std::int64_t> counts;
    std::string owner;
    std::string error;
    /// WAL mode: the registered replication slots at the time of the run, a JSON array of
    /// objects (slot, state ok|missing|lost|unusable, wal_status, active, confirmed_flush_lsn,
    /// lag_bytes, safe_wal_size); "[]" in polling mode. See ADR 0070, rule 10.
    std::string wal_slots = "[]";
};

struct report_item {
    std::int64_t id = 0;
    std::int64_t run_id = 0;
    std::string kind, group, message_id, topic, key, created_at, event_at, detail, action;
};

struct report_filter {
    std::optional<std::string> kind;
    std::optional<std::string> group;
    std::optional<std::string> topic;
    std::optional<std::string> since;  // runs started at/after (any PostgreSQL timestamptz text)
    std::int64_t limit = 1000;
};

enum class report_format { table, json, csv };

/// "table" | "json" | "csv"; throws ferry::error(permanent) otherwise.
[[nodiscard]] report_format parse_format(const std::string& name);

class report_store {
public:
    report_store(const std::string& dsn, std::string schema, long connect_timeout_s = 5);
    ~report_store();
    report_store(const report_store&) = delete;
    report_store& operator=(const report_store&) = delete;

    /// Runs, newest first. kind/group/topic keep runs that have at least one matching item.
    [[nodiscard]] std::vector<run_summary> list(const report_filter& filter = {});
    [[nodiscard]] std::optional<run_summary> get(std::int64_t run_id);
    [[nodiscard]] std::vector<report_item> items(std::int64_t run_id,
                                                 const report_filter& filter = {});

private:
    struct impl;
    std::unique_ptr<impl> _impl;
};

[[nodiscard]] std::string render_runs(const std::vector<run_summary>& runs, report_format f);
[[nodiscard]] std::string render_report(const run_summary& run,
                                        const std::vector<report_item>& items, report_format f);
/// JSON documents (strings) for HTTP: {"runs":[...]} and {"run":{...},"items":[...]}.
[[nodiscard]] std::string runs_json(const std::vector<run_summary>& runs);
[[nodiscard]] std::string report_json(const run_summary& run,
                                      const std::vector<report_item>& items);

}  // namespace ferry::reconcile
