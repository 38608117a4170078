#include "ferry/reconcile/report.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/reconcile/reconcile.hpp"
#include "utc_text.hpp"

namespace ferry::reconcile {
namespace {

using internal::exec;

std::string run_columns() {
    return "r.id, r.scope, " + utc_text_or_empty("r.window_start") + ", " +
           utc_text_or_empty("r.window_end") + ", " + utc_text_or_empty("r.started_at") + ", " +
           utc_text_or_empty("r.finished_at") +
           ", r.status, r.redrive, r.scanned, r.redriven, r.counts::text, coalesce(r.owner, ''), "
           "coalesce(r.error, ''), r.wal_slots::text";
}

run_summary to_run(const pqxx::row& row) {
    run_summary s;
    s.id = row[0].as<std::int64_t>();
    s.scope = row[1].as<std::string>();
    s.window_start = row[2].as<std::string>();
    s.window_end = row[3].as<std::string>();
    s.started_at = row[4].as<std::string>();
    s.finished_at = row[5].as<std::string>();
    s.status = row[6].as<std::string>();
    s.redrive = row[7].as<bool>();
    s.scanned = row[8].as<std::int64_t>();
    s.redriven = row[9].as<std::int64_t>();
    const auto counts = nlohmann::json::parse(row[10].as<std::string>());
    for (auto it = counts.begin(); it != counts.end(); ++it) {
        s.counts[it.key()] = it.value().get<std::int64_t>();
    }
    s.owner = row[11].as<std::string>();
    s.error = row[12].as<std::string>();
    s.wal_slots = row[13].as<std::string>();
    return s;
}

nlohmann::json run_to_json(const run_summary& r) {
    nlohmann::json counts = nlohmann::json::object();
    for (const auto& [k, v] : r.counts) counts[k] = v;
    return {{"id", r.id},
            {"scope", r.scope},
            {"window_start", r.window_start},
            {"window_end", r.window_end},
            {"started_at", r.started_at},
            {"finished_at", r.finished_at},
            {"status", r.status},
            {"redrive", r.redrive},
            {"scanned", r.scanned},
            {"redriven", r.redriven},
            {"counts", counts},
            {"owner", r.owner},
            {"error", r.error},
            {"wal_slots", nlohmann::json::parse(r.wal_slots)}};
}

nlohmann::json item_to_json(const report_item& i) {
    return {{"id", i.id},         {"run_id", i.run_id},         {"kind", i.kind},
            {"group", i.group},   {"message_id", i.message_id}, {"topic", i.topic},
            {"key", i.key},       {"created_at", i.created_at}, {"event_at", i.event_at},
            {"detail", i.detail}, {"action", i.action}};
}

std::string csv_field(const std::string& s) {
    if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
    std::string out = "\"";
    for (char c : s) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}

std::string csv(const std::vector<std::vector<std::string>>& rows) {
    std::string out;
    for (const auto& r : rows) {
        for (std::size_t i = 0; i < r.size(); ++i) out += (i ? "," : "") + csv_field(r[i]);
        out += "\n";
    }
    return out;
}

std::string table(const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::size_t> w;
    for (const auto& r : rows) {
        w.resize(std::max(w.size(), r.size()));
        for (std::size_t i = 0; i < r.size(); ++i) w[i] = std::max(w[i], r[i].size());
    }
    std::string out;
    for (const auto& r : rows) {
        std::string line;
        for (std::size_t i = 0; i < r.size(); ++i) {
            line += r[i];
            if (i + 1 < r.size()) line += std::string(w[i] - r[i].size() + 2, ' ');
        }
        out += line + "\n";
    }
    return out;
}

std::string counts_text(const run_summary& r) {
    std::string s;
    for (const auto& k : kinds()) {
        auto it = r.counts.find(k);
        s += (s.empty() ? "" : " ") + k + "=" +
             std::to_string(it == r.counts.end() ? 0 : it->second);
    }
    return s;
}

std::vector<std::string> run_row(const run_summary& r) {
    std::vector<std::string> row{
        std::to_string(r.id), r.status, r.window_start,           r.window_end,
        r.started_at,         r.scope,  std::to_string(r.scanned)};
    for (const auto& k : kinds()) {
        auto it = r.counts.find(k);
        row.push_back(std::to_string(it == r.counts.end() ? 0 : it->second));
    }
    return row;
}

std::vector<std::string> run_header() {
    std::vector<std::string> h{"id",         "status", "window_start", "window_end",
                               "started_at", "scope",  "scanned"};
    for (const auto& k : kinds()) h.push_back(k);
    return h;
}

const std::vector<std::string> item_header{"kind", "group",    "message_id", "topic",
                                           "key",  "event_at", "action",     "detail"};

std::vector<std::string> item_row(const report_item& i) {
    return {i.kind, i.group, i.message_id, i.topic, i.key, i.event_at, i.action, i.detail};
}

}  // namespace

report_format parse_format(const std::string& name) {
    if (name == "table") return report_format::table;
    if (name == "json") return report_format::json;
    if (name == "csv") return report_format::csv;
    throw ferry::error(error_kind::permanent, "reconcile.format",
                       "format must be table, json or csv, not \"" + name + "\"", "format");
}

struct report_store::impl {
    impl(const std::string& dsn, const std::string& schema, long timeout_s)
        : conn_holder(internal::connect_unique(dsn, session(timeout_s), "reconcile")),
          conn(*conn_holder),
          q(quote_identifier(schema, "schema")) {}
    static internal::session_settings session(long timeout_s) {
        internal::session_settings s;
        s.connect_timeout = std::chrono::seconds(timeout_s);
        s.statement_timeout = std::chrono::seconds(30);  // an HTTP request never waits longer
        s.application_name = "ferry-reports";
        s.read_only = true;
        return s;
    }
    std::unique_ptr<pqxx::connection> conn_holder;
    pqxx::connection& conn;
    std::string q;
};

report_store::report_store(const std::string& dsn, std::string schema, long connect_timeout_s)
    : _impl(std::make_unique<impl>(dsn, schema, connect_timeout_s)) {}

report_store::~report_store() = default;

std::vector<run_summary> report_store::list(const report_filter& f) {
    try {
        pqxx::read_transaction tx{_impl->conn};
        const auto r =
            exec(tx,
                 "SELECT " + run_columns() + " FROM " + _impl->q +
                     ".reconcile_run r WHERE "
                     "($1 = '' OR r.started_at >= nullif($1, '')::timestamptz) AND "
                     "(($2 = '' AND $3 = '' AND $4 = '') OR EXISTS (SELECT 1 FROM " +
                     _impl->q +
                     ".reconcile_item i WHERE i.run_id = r.id AND ($2 = '' OR i.kind = $2) AND "
                     "($3 = '' OR i.group_id = $3) AND ($4 = '' OR i.topic = $4))) "
                     "ORDER BY r.id DESC LIMIT $5",
                 f.since.value_or(""), f.kind.value_or(""), f.group.value_or(""),
                 f.topic.value_or(""), f.limit);
        std::vector<run_summary> out;
        for (const auto& row : r) out.push_back(to_run(row));
        return out;
    } catch (...) {
        internal::rethrow_translated("report list", "reconcile");
    }
}

std::optional<run_summary> report_store::get(std::int64_t run_id) {
    try {
        pqxx::read_transaction tx{_impl->conn};
        const auto r = exec(
            tx,
            "SELECT " + run_columns() + " FROM " + _impl->q + ".reconcile_run r WHERE r.id = $1",
            run_id);
        if (r.empty()) return std::nullopt;
        return to_run(r[0]);
    } catch (...) {
        internal::rethrow_translated("report show", "reconcile");
    }
}

std::vector<report_item> report_store::items(std::int64_t run_id, const report_filter& f) {
    try {
        pqxx::read_transaction tx{_impl->conn};
        const auto r = exec(
            tx,
            "SELECT id, run_id, kind, coalesce(group_id, ''), coalesce(message_id::text, ''), "
            "coalesce(topic, ''), coalesce(key, ''), " +
                utc_text_or_empty("created_at") + ", " + utc_text_or_empty("event_at") +
                ", detail, action FROM " + _impl->q +
                ".reconcile_item WHERE run_id = $1 AND ($2 = '' OR kind = $2) AND "
                "($3 = '' OR group_id = $3) AND ($4 = '' OR topic = $4) AND "
                "($5 = '' OR event_at >= nullif($5, '')::timestamptz) ORDER BY kind, id LIMIT $6",
            run_id, f.kind.value_or(""), f.group.value_or(""), f.topic.value_or(""),
            f.since.value_or(""), f.limit);
        std::vector<report_item> out;
        for (const auto& row : r) {
            out.push_back(
                {row[0].as<std::int64_t>(), row[1].as<std::int64_t>(), row[2].as<std::string>(),
                 row[3].as<std::string>(), row[4].as<std::string>(), row[5].as<std::string>(),
                 row[6].as<std::string>(), row[7].as<std::string>(), row[8].as<std::string>(),
                 row[9].as<std::string>(), row[10].as<std::string>()});
        }
        return out;
    } catch (...) {
        internal::rethrow_translated("report items", "reconcile");
    }
}

std::string runs_json(const std::vector<run_summary>& runs) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& r : runs) a.push_back(run_to_json(r));
    return nlohmann::json{{"runs", a}}.dump();
}

std::string report_json(const run_summary& run, const std::vector<report_item>& items) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& i : items) a.push_back(item_to_json(i));
    return nlohmann::json{{"run", run_to_json(run)}, {"items", a}}.dump();
}

std::string render_runs(const std::vector<run_summary>& runs, report_format f) {
    if (f == report_format::json) return nlohmann::json::parse(runs_json(runs)).dump(2) + "\n";
    std::vector<std::vector<std::string>> rows{run_header()};
    for (const auto& r : runs) rows.push_back(run_row(r));
    return f == report_format::csv ? csv(rows) : table(rows);
}

std::string render_report(const run_summary& run, const std::vector<report_item>& items,
                          report_format f) {
    if (f == report_format::json) {
        return nlohmann::json::parse(report_json(run, items)).dump(2) + "\n";
    }
    std::vector<std::vector<std::string>> rows{item_header};
    for (const auto& i : items) rows.push_back(item_row(i));
    if (f == report_format::csv) return csv(rows);
    std::ostringstream s;
    s << "run " << run.id << " (" << run.status << ")  window [" << run.window_start << ", "
      << run.window_end << ")  scope " << run.scope << "\n"
      << "scanned " << run.scanned << " ledger rows; " << counts_text(run) << "\n";
    if (!run.error.empty()) s << "error: " << run.error << "\n";
    for (const auto& slot : nlohmann::json::parse(run.wal_slots)) {
        s << "WAL slot " << slot.value("slot", "?") << ": " << slot.value("state", "?");
        if (slot.contains("wal_status"))
            s << ", wal_status " << slot["wal_status"].get<std::string>();
        if (slot.contains("confirmed_flush_lsn")) {
            s << ", confirmed " << slot["confirmed_flush_lsn"].get<std::string>();
        }
        if (slot.contains("lag_bytes"))
            s << ", lag " << slot["lag_bytes"].get<std::int64_t>() << " bytes";
        s << "\n";
    }
    s << "\n" << (items.empty() ? std::string("no anomalies\n") : table(rows));
    return s.str();
}

}  // namespace ferry::reconcile
