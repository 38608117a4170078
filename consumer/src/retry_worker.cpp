// Retry workers (re-drive due rows of the retry table through the same handler, dedup and
// failure router as the live path) and the inbox retention job.
#include "runtime.hpp"

namespace ferry::consumer {

// Returns true when the row's message was applied or absorbed (and the row removed).
bool consumer::impl::process_retry_row(std::unique_ptr<pqxx::connection>& conn,
                                       retry::retry_row& row) {
    auto it = topics.find(row.message.topic);
    auto resched = [&](int attempts, ms delay, const std::string& why) {
        (void)durably(conn, nullptr, "retry_reschedule", [&](pqxx::connection& c) {
            pqxx::work tx{c};
            (void)retries->reschedule(tx, row.id, o.instance_id, attempts, delay, why);
            tx.commit();
        });
    };
    if (it == topics.end()) {
        resched(row.attempts, o.retry.base_delay,
                "no handler for topic in instance " + o.instance_id);
        return false;
    }
    const auto& e = it->second;
    auto m = from_stored(row.message);
    std::optional<dedup::claim> claim;
    if (redis) {
        try {
            auto c = redis->try_claim(o.group, m.message_id, o.lease);
            if (c.status == dedup::claim_status::done) {
                (void)durably(conn, nullptr, "retry_remove", [&](pqxx::connection& pc) {
                    pqxx::work tx{pc};
                    (void)retries->remove(tx, row.id, o.instance_id);
                    tx.commit();
                });
                ++m_duplicates;
                return true;
            }
            if (c.status == dedup::claim_status::fresh) claim = c;
            if (c.status == dedup::claim_status::in_progress && !use_inbox) {
                resched(row.attempts, 200ms, "in progress elsewhere");
                return false;
            }
        } catch (const ferry::error& ex) {
            ++m_redis_errors;
            if (!use_inbox) {
                resched(row.attempts, 1s, std::string("redis unavailable: ") + ex.what());
                return false;
            }
        }
    }
    const int n = row.attempts + 1;
    m.attempt = n;
    const auto r = attempt(conn, e, m, row.id);
    if (r.result == attempt_result::applied || r.result == attempt_result::duplicate) {
        if (r.result == attempt_result::applied) {
            ++m_processed;
        } else {
            ++m_duplicates;
        }
        if (claim) {
            try {
                (void)redis->complete(*claim);
            } catch (const ferry::error&) {
                ++m_redis_errors;
            }
        }
        return true;
    }
    release_claim(claim);
    const bool ordered = row.message.ordered;
    // lost_claim: another worker took the row (our claim expired): not ours to route.
    const auto f = detail::classify(r, true);
    const auto rt = detail::route_failure(o.retry, detail::path::retry_table, f, n, r.error,
                                          retry::jitter_source());
    if (rt.action == detail::route::abandon) return false;
    if (rt.action != detail::route::dead_letter) {
        if (rt.counts_attempt) ++m_retries;
        resched(rt.counts_attempt ? n : row.attempts, rt.delay, r.error);
        return false;
    }
    const auto& reason = rt.reason;
    bool moved = false;
    (void)durably(conn, nullptr, "dead_letter", [&](pqxx::connection& c) {
        pqxx::work tx{c};
        moved = retries->move_to_dead_letter(tx, row.id, o.instance_id, n, reason, r.code, ordered);
        tx.commit();
    });
    if (moved) {
        ++m_dead;
        spdlog::warn("event=dead_letter group={} topic={} message_id={} attempts={} reason=\"{}\"",
                     o.group, m.topic, m.message_id, n, reason);
        publish_dead_letter(m, reason);
    }
    return false;
}

// Inbox retention: deletes rows older than inbox_retention in batches, repeating while a
// batch comes back full, then sleeps inbox_prune_interval. Safe with many instances (each
// batch is its own short transaction; concurrent deletes of one row are no-ops).
void consumer::impl::prune_loop() {
    std::unique_ptr<pqxx::connection> conn;
    while (!lanes_exit) {
        long long n = 0;
        try {
            auto& c = lane_conn(conn);
            do {
                pqxx::work tx{c};
                n = box->prune(tx, o.inbox_retention, o.inbox_prune_batch);
                tx.commit();
                m_inbox_pruned += static_cast<std::uint64_t>(n);
            } while (n >= o.inbox_prune_batch && !lanes_exit);
        } catch (const std::exception& e) {
            if (conn && !conn->is_open()) conn.reset();
            spdlog::warn("event=inbox_prune_failed group={} error=\"{}\"", o.group, e.what());
        }
        std::unique_lock lock(retry_mutex);
        retry_cv.wait_for(lock, o.inbox_prune_interval, [&] { return lanes_exit.load(); });
    }
}

// One of o.retry_workers threads draining the retry table. Claims are exclusive (SKIP
// LOCKED, claimed_by), so workers of one process and of other instances share the rows.
// Once a key's head is applied, the worker goes on with that key's next waiting row at once
// (up to retry_batch rows), instead of one row per key per claim round: a key that collected
// a backlog behind a failure drains at the speed of its handler, not of the claim poll.
void consumer::impl::retry_loop() {
    std::unique_ptr<pqxx::connection> conn;
    while (!lanes_exit) {
        std::vector<retry::retry_row> rows;
        try {
            auto& c = lane_conn(conn);
            pqxx::work tx{c};
            rows = retries->claim_due(tx, o.instance_id, o.retry_batch, o.retry_claim_ttl);
            tx.commit();
        } catch (const std::exception& e) {
            if (conn && !conn->is_open()) conn.reset();
            spdlog::warn("event=retry_claim_failed group={} error=\"{}\"", o.group, e.what());
        }
        for (auto& row : rows) {
            if (lanes_exit) break;
            const bool chain = row.message.ordered && row.message.key.has_value();
            const auto topic = row.message.topic;
            const auto key = row.message.key.value_or("");
            bool done = process_retry_row(conn, row);
            for (int next = 1; done && chain && next < o.retry_batch && !lanes_exit; ++next) {
                std::optional<retry::retry_row> head;
                try {
                    auto& c = lane_conn(conn);
                    pqxx::work tx{c};
                    head =
                        retries->claim_key_head(tx, o.instance_id, topic, key, o.retry_claim_ttl);
                    tx.commit();
                } catch (const std::exception& e) {
                    if (conn && !conn->is_open()) conn.reset();
                    spdlog::warn("event=retry_claim_failed group={} error=\"{}\"", o.group,
                                 e.what());
                }
                if (!head) break;
                ++m_retry_chained;
                done = process_retry_row(conn, *head);
            }
        }
        if (rows.empty()) {
            std::unique_lock lock(retry_mutex);
            retry_cv.wait_for(lock, o.retry_poll, [&] { return lanes_exit.load(); });
        }
    }
}

}  // namespace ferry::consumer
