// Keyed lanes: each lane takes its queue in order, claims the next run in Redis (pipelined
// with the done marks of the run before), applies runs of transactional messages in one
// transaction (set-based inbox rows, one commit), and falls back to one transaction per message
// when a run fails, routing a failure with the shared failure router.
#include <algorithm>

#include "runtime.hpp"

namespace ferry::consumer {

pqxx::connection& consumer::impl::lane_conn(std::unique_ptr<pqxx::connection>& conn) {
    if (!conn || !conn->is_open()) conn = connect_pg();
    return *conn;
}

bool consumer::impl::still_mine(const work_item& w) const {
    return !abandon_all && tracker.current({w.msg.topic, w.msg.partition}, w.generation);
}

// One handler call with its transaction (and inbox row / retry-row delete).
attempt_outcome consumer::impl::attempt(std::unique_ptr<pqxx::connection>& conn,
                                        const topic_entry& e, const message& m,
                                        std::optional<long long> retry_row_id) {
    attempt_outcome out;
    try {
        if (e.tx) {
            auto& c = lane_conn(conn);
            pqxx::work tx{c};
            if (box) {
                const auto r = box->insert(tx, o.group, m.message_id, o.inbox_lock_wait);
                if (r == dedup::inbox_result::duplicate) {
                    tx.abort();
                    if (retry_row_id) {
                        pqxx::work t2{c};
                        (void)retries->remove(t2, *retry_row_id, o.instance_id);
                        t2.commit();
                    }
                    out.result = attempt_result::duplicate;
                    return out;
                }
                if (r == dedup::inbox_result::in_progress) {
                    out.result = attempt_result::in_progress;
                    out.error = "another consumer holds this message in its inbox transaction";
                    return out;
                }
            }
            if (retry_row_id && !retries->remove(tx, *retry_row_id, o.instance_id)) {
                out.result = attempt_result::lost_claim;
                return out;
            }
            e.tx(m, tx);
            tx.commit();
            if (m.attempt == 1 && fault_armed("lost_commit_ack")) {
                // The commit went through; the runtime is told the connection broke while
                // committing, as when the COMMIT acknowledgement is lost.
                throw pqxx::in_doubt_error(
                    "fault point lost_commit_ack: COMMIT sent, acknowledgement lost");
            }
        } else {
            e.plain(m);
            if (retry_row_id) {
                auto& c = lane_conn(conn);
                pqxx::work tx{c};
                (void)retries->remove(tx, *retry_row_id, o.instance_id);
                tx.commit();
            }
        }
        if (!retry_row_id) fault_point("after_effect_before_offset");
        out.result = attempt_result::applied;
        return out;
    } catch (...) {
        out = failed_outcome();
        if (conn && !conn->is_open()) conn.reset();
        return out;
    }
}

// The outcome of the exception in flight (call inside a catch block): ferry::error keeps
// its kind and code, database errors are translated, anything else is retryable.
attempt_outcome consumer::impl::failed_outcome() {
    attempt_outcome out;
    out.result = attempt_result::failed;
    try {
        try {
            throw;
        } catch (const ferry::error&) {
            throw;
        } catch (const pqxx::failure&) {
            internal::rethrow_translated("handler", "consumer");
        } catch (const pqxx::usage_error&) {
            internal::rethrow_translated("handler", "consumer");
        }
    } catch (const ferry::error& fe) {
        out.kind = fe.kind();
        out.code = fe.code();
        out.error = fe.what();
    } catch (const std::exception& se) {
        out.kind = error_kind::retryable;
        out.code = "consumer.handler";
        out.error = se.what();
    } catch (...) {
        out.kind = error_kind::retryable;
        out.code = "consumer.handler";
        out.error = "unknown exception";
    }
    return out;
}

void consumer::impl::publish_dead_letter(const message& m, const std::string& reason) {
    if (dlq) dlq->publish(m, reason);
}

void consumer::impl::mark_blocked(const message& m, bool ordered) {
    if (!ordered || !m.key) return;
    std::lock_guard lock(blocked_mutex);
    blocked.emplace(m.topic, *m.key);
}

bool consumer::impl::maybe_blocked(const message& m, bool ordered) {
    if (!ordered || !m.key) return false;
    if (!blocked_loaded) return true;
    std::lock_guard lock(blocked_mutex);
    return blocked.count({m.topic, *m.key}) > 0;
}

void consumer::impl::release_claim(const std::optional<dedup::claim>& c) {
    if (!redis || !c || c->token.empty()) return;
    try {
        (void)redis->release(*c);
    } catch (const ferry::error&) {
        ++m_redis_errors;  // the lease expires by itself
    }
}

void consumer::impl::release_run_claim(lane& ln, std::optional<dedup::claim>& c) {
    if (!redis || !c || c->token.empty() || c->status != dedup::claim_status::fresh) return;
    try {
        (void)redis->release(*c);  // false: another owner took it over; either way not ours
        run_decided(ln, c->token, false);
    } catch (const ferry::error&) {
        ++m_redis_errors;  // the key may still name the run: the run must never be marked
        if (auto it = ln.runs.find(c->token); it != ln.runs.end()) it->second.broken = true;
    }
    c->token.clear();
}

void consumer::impl::run_claimed(lane& ln, const dedup::claim& c) {
    if (c.status == dedup::claim_status::fresh && !c.token.empty()) ++ln.runs[c.token].undecided;
}

void consumer::impl::run_decided(lane& ln, const std::string& token, bool applied) {
    auto it = ln.runs.find(token);
    if (it == ln.runs.end()) return;  // not booked: its marks are per message
    auto& r = it->second;
    if (r.undecided == 0) {
        r.broken = true;  // more decisions than claims: the books are wrong, never mark it
    } else {
        --r.undecided;
    }
    if (applied) {
        ++r.pending;
    } else if (r.pending == 0 && (r.undecided == 0 || r.broken)) {
        ln.runs.erase(it);
    }
}

void consumer::impl::settle_runs(lane& ln) {
    for (auto it = ln.runs.begin(); it != ln.runs.end();) {
        if (it->second.undecided > 0) it->second.broken = true;
        if (it->second.pending == 0) {
            it = ln.runs.erase(it);
        } else {
            ++it;
        }
    }
}

consumer::impl::mark_set consumer::impl::marks_due(const lane& ln, bool all) const {
    mark_set m;
    for (std::size_t i = 0; i < ln.pending_claims.size(); ++i) {
        const auto& c = ln.pending_claims[i];
        const auto it = ln.runs.find(c.token);
        const bool whole = it != ln.runs.end() && !it->second.broken && it->second.undecided == 0;
        if (whole) {
            if (std::find(m.runs.begin(), m.runs.end(), c.token) == m.runs.end()) {
                m.runs.push_back(c.token);
            }
        } else if (all) {
            m.messages.push_back(c);
        } else {
            continue;
        }
        m.items.push_back(i);
    }
    return m;
}

void consumer::impl::unpend(lane& ln, const std::string& token) {
    auto it = ln.runs.find(token);
    if (it == ln.runs.end()) return;
    if (it->second.pending > 0) --it->second.pending;
    if (it->second.pending == 0 && (it->second.undecided == 0 || it->second.broken)) {
        ln.runs.erase(it);
    }
}

void consumer::impl::marks_written(lane& ln, const mark_set& m) {
    if (m.items.empty()) return;
    std::vector<dedup::claim> claims;
    std::vector<work_item> items;
    std::size_t next = 0;
    for (std::size_t i = 0; i < ln.pending_claims.size(); ++i) {
        if (next < m.items.size() && m.items[next] == i) {
            ++next;
            finish(ln.pending_items[i], true);
            unpend(ln, ln.pending_claims[i].token);
            continue;
        }
        claims.push_back(std::move(ln.pending_claims[i]));
        items.push_back(std::move(ln.pending_items[i]));
    }
    ln.pending_claims.swap(claims);
    ln.pending_items.swap(items);
}

// Claims in Redis, in one round trip, `first` and the next items of `local` that still need
// a claim (up to claim_ahead in all, one run: ADR 0024), after writing the "done" marks of the
// lane's runs whose claims were all decided in the same pipeline (so a duplicate of a message
// this lane just applied sees "done"). On a Redis error the items are marked claim_failed
// (process_live and batchable decide: the inbox alone, or wait) and the marks are handled as
// in flush_completes (marks_failed: kept pending in Redis-only mode, so their offsets do not
// complete).
void consumer::impl::claim_run(lane& ln, work_item& first, std::deque<work_item>& local) {
    constexpr std::size_t claim_ahead = 512;
    std::vector<work_item*> items{&first};
    for (auto& w : local) {
        if (items.size() >= claim_ahead) break;
        if (needs_claim(w)) items.push_back(&w);
    }
    std::vector<std::string> ids;
    ids.reserve(items.size());
    for (const auto* w : items) ids.push_back(w->msg.message_id);
    const auto due = marks_due(ln, false);
    if (!due.items.empty()) fault_point("redis_after_effect_before_done");
    try {
        auto r = redis->complete_and_claim(due.messages, due.runs, o.group, ids, o.lease);
        for (std::size_t i = 0; i < items.size(); ++i) {
            run_claimed(ln, r.claims[i]);
            items[i]->claim = std::move(r.claims[i]);
        }
    } catch (const ferry::error& e) {
        for (auto* w : items) w->claim_failed = true;
        spdlog::warn("event=redis_claim_failed group={} batch={} error=\"{}\"", o.group, ids.size(),
                     e.what());
        marks_failed(ln, e, false);
        return;
    }
    marks_written(ln, due);
    if (!due.items.empty()) ln.mark_backoff = 50ms;
}

bool consumer::impl::needs_claim(const work_item& w) const {
    return redis && w.malformed.empty() && w.entry != nullptr && !w.claim && !w.claim_failed;
}

bool consumer::impl::flush_completes(lane& ln, bool giving_up) {
    if (!ln.pending_claims.empty()) {
        // Redis-only crash window: these effects are applied, their "done" marks are not.
        fault_point("redis_after_effect_before_done");
        const auto due = marks_due(ln, true);
        try {
            (void)redis->complete_and_claim(due.messages, due.runs, o.group, {}, o.lease);
        } catch (const ferry::error& e) {
            marks_failed(ln, e, giving_up);
            return ln.pending_items.empty();
        }
        marks_written(ln, due);
        ln.mark_backoff = 50ms;
    }
    return true;
}

void consumer::impl::marks_failed(lane& ln, const ferry::error& e, bool giving_up) {
    ++m_redis_errors;
    if (ln.pending_claims.empty()) return;
    spdlog::warn("event=redis_done_marks_failed group={} count={} action={} error=\"{}\"", o.group,
                 ln.pending_claims.size(),
                 use_inbox   ? "inbox_absorbs"
                 : giving_up ? "offsets_left_uncommitted"
                             : "retry",
                 e.what());
    if (!use_inbox && !giving_up) return;  // Redis-only: marks and offsets stay pending
    // With the inbox the effects are durable and the inbox absorbs a redelivery: the offsets
    // complete, only the fast filter misses them. Redis-only at lane exit: the offsets stay
    // uncommitted, so the next owner gets the messages again (the crash window of
    // docs/guarantees.md), never an offset past an unacknowledged mark.
    for (auto& w : ln.pending_items) finish(w, use_inbox);
    for (const auto& c : ln.pending_claims) unpend(ln, c.token);
    ln.pending_claims.clear();
    ln.pending_items.clear();
}

void consumer::impl::finish(const work_item& w, bool complete) {
    tracker.finish({w.msg.topic, w.msg.partition}, w.generation, w.msg.offset, complete);
}

// Redis claim for a live message that could not use the batch claim. Returns the claim, or
// nullopt when processing should go ahead without one (inbox on, Redis down).
// `abandon` is set when the work was abandoned while waiting.
std::optional<dedup::claim> consumer::impl::reclaim(lane& ln, const work_item& w, bool& abandon) {
    ms backoff = 50ms;
    (void)flush_completes(ln);  // a duplicate of a message this lane just applied sees "done"
    while (true) {
        try {
            auto c = redis->try_claim(o.group, w.msg.message_id, o.lease);
            run_claimed(ln, c);
            if (c.status != dedup::claim_status::in_progress || use_inbox) return c;
        } catch (const ferry::error& e) {
            ++m_redis_errors;
            if (use_inbox) return std::nullopt;  // the inbox alone is authoritative
            spdlog::warn(
                "event=redis_unavailable group={} message_id={} retry_in_ms={} error=\"{}\"",
                o.group, w.msg.message_id, backoff.count(), e.what());
        }
        // Redis-only: another owner holds the lease (or Redis is down): wait, never apply
        // concurrently. Our own pending completes go first, so a duplicate in this lane
        // sees "done".
        (void)flush_completes(ln);
        if (lanes_exit || !still_mine(w)) {
            abandon = true;
            return std::nullopt;
        }
        std::this_thread::sleep_for(backoff);
        backoff = std::min<ms>(backoff * 2, 1s);
    }
}

// `first`: the outcome of attempt 1 when it already ran (a handler that failed inside a
// batched transaction): it is routed like any failed attempt, without calling again.
void consumer::impl::process_live(lane& ln, work_item& w,
                                  const std::optional<attempt_outcome>& first) {
    const auto* e = w.entry;
    const bool ordered = e != nullptr && e->options.ordered_retry;
    // Revoked since it was begun (a batch's fallback runs items begun before the revoke):
    // abandoned like queued work. An earlier message of its key may have failed without a
    // durable record (its retry write was fenced), so applying this one could overtake it.
    if (!still_mine(w)) return finish(w, false);
    if (!w.malformed.empty() || e == nullptr) {
        const auto reason =
            !w.malformed.empty() ? w.malformed : "no handler for topic " + w.msg.topic;
        const auto stored = to_stored(w.msg, ordered);
        const auto wr = fenced_write(ln, w, "dead_letter", [&](pqxx::work& tx) {
            dead->add(tx, o.group, stored, reason, w.malformed_code, 0, false, false);
        });
        if (wr != record_write::written) return finish(w, false);
        ++m_dead;
        ++m_malformed;
        spdlog::warn("event=dead_letter group={} topic={} partition={} offset={} reason=\"{}\"",
                     o.group, w.msg.topic, w.msg.partition, w.msg.offset, reason);
        publish_dead_letter(w.msg, reason);
        return finish(w, true);
    }
    // Ordered retry: a key with a message in retry holds its later messages.
    if (maybe_blocked(w.msg, ordered)) {
        bool parked = false;
        const auto stored = to_stored(w.msg, ordered);
        const auto wr = fenced_write(
            ln, w, "park", [&](pqxx::work& tx) { parked = retries->park_if_blocked(tx, stored); });
        if (wr != record_write::written) {
            release_run_claim(ln, w.claim);
            return finish(w, false);
        }
        if (parked) {
            ++m_parked;
            release_run_claim(ln, w.claim);
            retry_cv.notify_all();
            return finish(w, true);
        }
        std::lock_guard lock(blocked_mutex);
        blocked.erase({w.msg.topic, *w.msg.key});
    }
    // Redis filter.
    std::optional<dedup::claim> claim;
    if (redis) {
        if (w.claim_failed || (w.claim && w.claim->status == dedup::claim_status::in_progress)) {
            bool abandon = false;
            claim = reclaim(ln, w, abandon);
            if (abandon) return finish(w, false);
        } else {
            claim = std::move(w.claim);
        }
        if (claim && claim->status == dedup::claim_status::done) {
            ++m_duplicates;
            return finish(w, true);
        }
        if (claim && claim->status == dedup::claim_status::in_progress) claim.reset();
    }
    for (int n = 1;; ++n) {
        w.msg.attempt = n;
        const auto r = n == 1 && first ? *first : attempt(ln.conn, *e, w.msg, std::nullopt);
        if (r.result == attempt_result::applied || r.result == attempt_result::duplicate) {
            if (r.result == attempt_result::applied) {
                ++m_processed;
            } else {
                ++m_duplicates;
            }
            if (claim && !claim->token.empty()) {
                run_decided(ln, claim->token, true);
                ln.pending_claims.push_back(std::move(*claim));
                ln.pending_items.push_back(std::move(w));
                if (ln.pending_claims.size() >= 1024) (void)flush_completes(ln);
                return;
            }
            return finish(w, true);
        }
        const auto f = detail::classify(r, still_mine(w) && !lanes_exit);
        const auto rt = detail::route_failure(o.retry, detail::path::live, f, n, r.error,
                                              retry::jitter_source());
        if (rt.action == detail::route::abandon) {
            ++m_abandoned;
            release_run_claim(ln, claim);
            return finish(w, false);
        }
        if (rt.action == detail::route::wait || rt.action == detail::route::retry_now) {
            // wait: another consumer's inbox transaction holds it (then: duplicate, or it
            // rolls back); not an attempt of this message.
            if (!rt.counts_attempt) --n;
            if (rt.action == detail::route::retry_now) ++m_retries;
            std::this_thread::sleep_for(rt.delay);
            continue;
        }
        const auto stored = to_stored(w.msg, ordered);
        if (rt.action == detail::route::retry_later) {
            ++m_retries;
            const auto wr = fenced_write(ln, w, "retry_schedule", [&](pqxx::work& tx) {
                (void)retries->schedule(tx, stored, n, rt.delay, r.error);
            });
            release_run_claim(ln, claim);
            if (wr != record_write::written) return finish(w, false);
            mark_blocked(w.msg, ordered);
            ++m_retry_scheduled;
            retry_cv.notify_all();
            return finish(w, true);
        }
        const auto& reason = rt.reason;
        const auto wr = fenced_write(ln, w, "dead_letter", [&](pqxx::work& tx) {
            dead->add(tx, o.group, stored, reason, r.code, n, true, ordered);
        });
        release_run_claim(ln, claim);
        if (wr != record_write::written) return finish(w, false);
        mark_blocked(w.msg, ordered);
        ++m_dead;
        spdlog::warn("event=dead_letter group={} topic={} message_id={} attempts={} reason=\"{}\"",
                     o.group, w.msg.topic, w.msg.message_id, n, reason);
        publish_dead_letter(w.msg, reason);
        return finish(w, true);
    }
}

// Takes everything queued at once (a polled batch spreads over the lanes), processes it in
// order; the Redis "done" marks of the run go out with the next run's claims in one pipelined
// round trip, or alone when the lane has nothing else to do.
void consumer::impl::lane_loop(lane& ln) {
    std::deque<work_item> local;
    std::vector<work_item> batch;
    while (true) {
        {
            std::unique_lock lock(ln.mutex);
            if (ln.queue.empty() && !ln.pending_items.empty() && !lanes_exit) {
                lock.unlock();
                if (!flush_completes(ln)) {
                    // Redis-only and Redis refused the marks: try again after a backoff, or
                    // with the claims of new work, whichever comes first.
                    lock.lock();
                    ln.cv.wait_for(lock, ln.mark_backoff,
                                   [&] { return !ln.queue.empty() || lanes_exit.load(); });
                    ln.mark_backoff = std::min<ms>(ln.mark_backoff * 2, 1s);
                }
                continue;
            }
            ln.cv.wait(lock, [&] { return !ln.queue.empty() || lanes_exit; });
            if (ln.queue.empty()) break;
            local.swap(ln.queue);
        }
        while (!local.empty()) {
            work_item w = std::move(local.front());
            local.pop_front();
            {
                std::lock_guard lock(ln.mutex);
                ln.depth = ln.queue.size() + local.size();
            }
            const bool mine = tracker.begin({w.msg.topic, w.msg.partition}, w.generation);
            --queued_total;
            queued_bytes -= w.bytes;
            if (!mine) continue;  // revoked: abandoned, its offset is never committed past
            if (abandon_all) {
                finish(w, false);
                continue;
            }
            if (needs_claim(w)) claim_run(ln, w, local);
            if (batchable(w)) {
                batch.push_back(std::move(w));
                if (batch.size() >= o.tx_batch_max) run_batch(ln, batch);
                continue;
            }
            run_batch(ln, batch);  // the earlier messages first: per-key order
            process_live(ln, w);
        }
        run_batch(ln, batch);
        settle_runs(ln);
        // The "done" marks of this run stay pending: when more work is queued they go out
        // in the next run's claim round trip (claim_run), otherwise at the top of the loop.
        // Their offsets complete only once they are written.
    }
    (void)flush_completes(ln, /*giving_up=*/true);
}

// Can `w` join a batched effect transaction? Only the plain success path is batched:
// everything that needs a decision of its own (malformed, parked behind its key, Redis
// claim not fresh, plain handler) runs alone, after the batch before it has committed.
bool consumer::impl::batchable(const work_item& w) {
    if (o.tx_batch_max <= 1 || !w.malformed.empty() || w.entry == nullptr || !w.entry->tx) {
        return false;
    }
    if (maybe_blocked(w.msg, w.entry->options.ordered_retry)) return false;
    if (redis) {
        if (w.claim_failed) return use_inbox;  // Redis down: the inbox alone decides
        if (!w.claim || w.claim->status != dedup::claim_status::fresh) return false;
    }
    return true;
}

// Applies `batch` (items already begun, in lane order) in as few transactions as the
// bounds allow: each one inserts the inbox rows set-based, runs the handlers of the fresh
// messages in order and commits once. On any failure that transaction rolls back (no effect
// of it is durable) and its messages run one transaction each through process_live, which
// routes a failing one alone. Offsets complete only after the commit.
void consumer::impl::run_batch(lane& ln, std::vector<work_item>& batch) {
    std::size_t next = 0;
    while (next < batch.size()) {
        const std::size_t n = batch.size() - next;
        if (n == 1) {
            process_live(ln, batch[next]);
            break;
        }
        std::vector<bool> fresh(n, true);
        std::size_t ran = 0;
        bool committed = false;
        std::optional<std::size_t> failed_at;  // the handler that threw, if one did
        std::optional<attempt_outcome> failure;
        try {
            auto& c = lane_conn(ln.conn);
            pqxx::work tx{c};
            if (box) {
                std::vector<std::string> ids;
                ids.reserve(n);
                for (std::size_t i = 0; i < n; ++i) ids.push_back(batch[next + i].msg.message_id);
                fresh = box->insert_batch(tx, o.group, ids, o.inbox_lock_wait);
            }
            const auto t0 = clock_type::now();
            for (; ran < n; ++ran) {
                if (ran > 0 && clock_type::now() - t0 >= o.tx_batch_max_time) break;
                auto& w = batch[next + ran];
                w.msg.attempt = 1;
                if (fresh[ran]) {
                    try {
                        w.entry->tx(w.msg, tx);
                    } catch (...) {
                        failed_at = ran;
                        failure = failed_outcome();
                        throw;
                    }
                }
                if (ran + 1 == n / 2) fault_point("mid_batch_before_commit");
            }
            if (ran < n && box) {
                // Cut short by the time bound: the rest was not applied in this transaction.
                std::vector<std::string> rest;
                for (std::size_t i = ran; i < n; ++i) {
                    if (fresh[i]) rest.push_back(batch[next + i].msg.message_id);
                }
                box->remove_batch(tx, o.group, rest);
            }
            tx.commit();
            if (fault_armed("lost_batch_commit_ack")) {
                throw pqxx::in_doubt_error(
                    "fault point lost_batch_commit_ack: COMMIT sent, acknowledgement lost");
            }
            committed = true;
        } catch (const std::exception& e) {
            batch_failed(ln, n, e.what());
        } catch (...) {
            batch_failed(ln, n, "unknown exception");
        }
        if (!committed) {
            // Nothing of this transaction is durable. The messages before the failing one
            // run again alone; the failing one is routed from its failure (its attempt 1);
            // the rest run alone after it.
            for (std::size_t i = next; i < batch.size(); ++i) {
                if (failed_at && i == next + *failed_at) {
                    process_live(ln, batch[i], failure);
                } else {
                    process_live(ln, batch[i]);
                }
            }
            break;
        }
        fault_point("after_effect_before_offset");
        fault_point("after_batch_commit_before_offset");
        ++m_batches;
        m_batched_messages += ran;
        m_last_batch = ran;
        for (std::size_t i = 0; i < ran; ++i) {
            auto& w = batch[next + i];
            if (fresh[i]) {
                ++m_processed;
            } else {
                ++m_duplicates;
            }
            if (w.claim && !w.claim->token.empty()) {
                run_decided(ln, w.claim->token, true);
                ln.pending_claims.push_back(std::move(*w.claim));
                ln.pending_items.push_back(std::move(w));
            } else {
                finish(w, true);
            }
        }
        if (ln.pending_claims.size() >= 1024) (void)flush_completes(ln);
        next += ran;
    }
    batch.clear();
}

void consumer::impl::batch_failed(lane& ln, std::size_t n, const char* why) {
    if (ln.conn && !ln.conn->is_open()) ln.conn.reset();
    ++m_batch_fallbacks;
    spdlog::info(
        "event=batch_fallback group={} size={} action=one_transaction_per_message "
        "error=\"{}\"",
        o.group, n, why);
}

}  // namespace ferry::consumer
