#include "ferry/checkback/scheduler.hpp"

#include <condition_variable>
#include <mutex>
#include <pqxx/pqxx>

#include "ferry/checkback/retention.hpp"
#include "ferry/common/error.hpp"
#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"

namespace ferry::checkback {

namespace {
const char* const checks_help = "Check-backs by outcome.";
}  // namespace

struct scheduler::impl {
    scheduler_options options;
    std::string schema;
    ferry::metrics::registry& metrics;
    ferry::metrics::counter checks_commit, checks_rollback, checks_unknown, parked_total, errors;
    ferry::metrics::gauge pending, parked, oldest_pending_age;
    std::unique_ptr<pqxx::connection> conn;
    std::thread thread;
    std::mutex mu;
    std::condition_variable cv;
    bool stopping = false;
    std::chrono::steady_clock::time_point next_cleanup{};

    explicit impl(scheduler_options o)
        : options(std::move(o)),
          schema(quote_identifier(options.schema, "checkback.schema")),
          metrics(ferry::metrics::or_process(options.metrics)),
          checks_commit(metrics.add_counter("ferry_checkback_checks_total", checks_help,
                                            {{"outcome", "commit"}})),
          checks_rollback(metrics.add_counter("ferry_checkback_checks_total", checks_help,
                                              {{"outcome", "rollback"}})),
          checks_unknown(metrics.add_counter("ferry_checkback_checks_total", checks_help,
                                             {{"outcome", "unknown"}})),
          parked_total(metrics.add_counter("ferry_checkback_parked_total",
                                           "Half messages parked after their last check.")),
          errors(metrics.add_counter("ferry_checkback_errors_total",
                                     "Database errors of the check-back scheduler.")),
          pending(metrics.add_gauge("ferry_half_pending", "Half messages waiting for a decision.")),
          parked(metrics.add_gauge("ferry_half_parked",
                                   "Half messages parked after their checks ran out.")),
          oldest_pending_age(metrics.add_gauge("ferry_half_oldest_pending_age_seconds",
                                               "Age of the oldest undecided half message.")) {}

    pqxx::connection& db() {
        if (!conn || !conn->is_open()) {
            internal::session_settings s;
            s.statement_timeout = std::chrono::seconds(30);  // a stuck statement never hangs stop()
            s.application_name = "ferry-checkback";
            conn = internal::connect_unique(options.dsn, s, "checkback");
        }
        return *conn;
    }
};

scheduler::scheduler(scheduler_options options)
    : _impl(std::make_unique<impl>(std::move(options))) {
    if (_impl->options.batch_size <= 0) {
        throw ferry::error(error_kind::permanent, "checkback.invalid_options",
                           "checkback.batch_size must be positive", "checkback.batch_size");
    }
}

scheduler::~scheduler() { stop(); }

int scheduler::run_once() {
    auto& s = *_impl;
    const auto& q = s.schema;
    std::vector<check_request> due;
    try {
        pqxx::work tx{s.db()};
        // Claim: due is decided by the database's clock. Spending the check up front means a
        // relay that crashes mid-check has used one check, never a duplicate concurrent one.
        const auto rows = internal::exec(
            tx,
            "UPDATE " + q +
                ".half_message AS h SET check_count = h.check_count + 1, "
                "  last_check_at = clock_timestamp(), next_check_at = clock_timestamp() + "
                "h.check_interval "
                "FROM (SELECT message_id FROM " +
                q +
                ".half_message WHERE state = 'pending' "
                "      AND next_check_at <= clock_timestamp() ORDER BY next_check_at LIMIT $1 "
                "      FOR UPDATE SKIP LOCKED) AS d "
                "WHERE h.message_id = d.message_id "
                "RETURNING h.message_id::text, h.topic, h.key, h.tx_ref, h.producer_group, "
                "  h.producer_instance, h.check_count, h.max_checks, "
                "  to_char(h.prepared_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
            s.options.batch_size);
        for (const auto& row : rows) {
            check_request r;
            r.message_id = row[0].as<std::string>();
            r.topic = row[1].as<std::string>();
            r.key = row[2].as<std::string>();
            r.tx_ref = row[3].as<std::string>();
            r.producer_group = row[4].as<std::string>();
            if (!row[5].is_null()) r.producer_instance = row[5].as<std::string>();
            r.check_number = row[6].as<int>();
            r.max_checks = row[7].as<int>();
            r.prepared_at = row[8].as<std::string>();
            due.push_back(std::move(r));
        }
        tx.commit();
    } catch (...) {
        s.conn.reset();
        ++_stats.errors;
        s.errors.inc();
        internal::rethrow_translated("check-back claim", "checkback");
    }

    for (const auto& r : due) {
        check_result result;
        if (r.check_number > r.max_checks) {
            // max_checks = 0: the message is parked at its first due time, unasked.
            result = {check_decision::unknown, "no checks allowed (max_checks = 0)"};
        } else if (auto it = s.options.groups.find(r.producer_group);
                   it == s.options.groups.end()) {
            result = {check_decision::unknown,
                      "no resolver configured for producer group " + r.producer_group};
        } else {
            try {
                result = it->second->check(r);
            } catch (const std::exception& e) {
                result = {check_decision::unknown, std::string("resolver threw: ") + e.what()};
            }
        }
        try {
            pqxx::work tx{s.db()};
            const std::string outcome(ferry::outbox::to_string(result.decision));
            (void)internal::exec(tx,
                                 "UPDATE " + q +
                                     ".half_message SET last_check_result = $2 "
                                     "WHERE message_id = $1::uuid",
                                 r.message_id,
                                 outcome + (result.detail.empty() ? "" : ": " + result.detail));
            if (result.decision == check_decision::unknown) {
                ++_stats.checks_unknown;
                s.checks_unknown.inc();
                if (r.check_number >= r.max_checks) {
                    const auto parked = internal::exec(
                        tx,
                        "UPDATE " + q +
                            ".half_message SET state = 'parked', next_check_at = NULL "
                            "WHERE message_id = $1::uuid AND state = 'pending'",
                        r.message_id);
                    if (parked.affected_rows() == 1) {
                        ++_stats.parked;
                        s.parked_total.inc();
                    }
                }
            } else {
                (void)internal::exec(tx, "SELECT " + q + ".decide_half($1::uuid, $2, 'checkback')",
                                     r.message_id, outcome);
                const bool commit = result.decision == check_decision::commit;
                ++(commit ? _stats.checks_commit : _stats.checks_rollback);
                (commit ? s.checks_commit : s.checks_rollback).inc();
            }
            tx.commit();
        } catch (...) {
            s.conn.reset();
            ++_stats.errors;
            s.errors.inc();
            internal::rethrow_translated("check-back record", "checkback");
        }
    }

    if (std::chrono::steady_clock::now() >= s.next_cleanup) {
        try {
            // Bounded batches, each its own transaction (retention.hpp): a backlog of answered
            // requests never becomes one long delete holding the mailbox's locks.
            const auto retained =
                check_request_retention(s.options.schema, s.options.request_retention);
            constexpr long long k_batch = 5000;
            for (long long n = k_batch; n == k_batch;) {
                pqxx::work tx{s.db()};
                n = retained.prune_batch(tx, k_batch);
                tx.commit();
            }
        } catch (...) {
            s.conn.reset();
            ++_stats.errors;
            s.errors.inc();
        }
        s.next_cleanup = std::chrono::steady_clock::now() + std::chrono::minutes(1);
    }
    return static_cast<int>(due.size());
}

half_gauges scheduler::read_gauges() {
    half_gauges g;
    try {
        pqxx::read_transaction tx{_impl->db()};
        const auto r = tx.exec(
            "SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = "
            "'parked'), "
            "coalesce(extract(epoch FROM clock_timestamp() - min(prepared_at) FILTER (WHERE state "
            "= 'pending')), 0)::float8 "
            "FROM " +
            _impl->schema + ".half_message WHERE state IN ('pending', 'parked')")[0];
        g.pending = r[0].as<std::int64_t>();
        g.parked = r[1].as<std::int64_t>();
        g.oldest_pending_age_s = r[2].as<double>();
    } catch (...) {
        _impl->conn.reset();
        internal::rethrow_translated("check-back gauges", "checkback");
    }
    return g;
}

void scheduler::start() {
    std::lock_guard lock(_impl->mu);
    if (_impl->thread.joinable()) return;
    _impl->stopping = false;
    _impl->thread = std::thread([this] {
        auto backoff = std::chrono::milliseconds(100);
        auto next_gauges = std::chrono::steady_clock::now();
        while (true) {
            int checked = 0;
            bool failed = false;
            try {
                if (std::chrono::steady_clock::now() >= next_gauges) {
                    const auto g = read_gauges();
                    _stats.pending_now = g.pending;
                    _stats.parked_now = g.parked;
                    _stats.oldest_pending_age_s = g.oldest_pending_age_s;
                    _impl->pending.set(static_cast<double>(g.pending));
                    _impl->parked.set(static_cast<double>(g.parked));
                    _impl->oldest_pending_age.set(g.oldest_pending_age_s);
                    next_gauges = std::chrono::steady_clock::now() + _impl->options.gauge_interval;
                }
                checked = run_once();
                backoff = std::chrono::milliseconds(100);
            } catch (const std::exception&) {
                failed = true;  // counted in stats().errors; the database may be restarting
            }
            std::unique_lock wait_lock(_impl->mu);
            if (_impl->stopping) break;
            if (checked >= _impl->options.batch_size && !failed) continue;  // more are due now
            const auto wait = failed ? backoff : _impl->options.tick;
            _impl->cv.wait_for(wait_lock, wait, [&] { return _impl->stopping; });
            if (failed) backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
            if (_impl->stopping) break;
        }
    });
}

void scheduler::stop() {
    if (!_impl) return;
    {
        std::lock_guard lock(_impl->mu);
        _impl->stopping = true;
    }
    _impl->cv.notify_all();
    if (_impl->thread.joinable()) _impl->thread.join();
}

}  // namespace ferry::checkback
