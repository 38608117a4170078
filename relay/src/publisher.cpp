#include "publisher.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>

#include "fault_points.hpp"
#include "ferry/common/error.hpp"
#include "log_text.hpp"

namespace ferry::relay::detail {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;

namespace {

// While messages keep arriving (some were found within this window) the claimer polls every
// poll_min, so a steady or bursty stream never waits on a backed-off sleep.
constexpr std::chrono::seconds k_busy_window{1};

double now_epoch_seconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

publisher::publisher(const relay_options& options, relay_state& state, relay_metrics& metrics,
                     source& src, sink& snk)
    : _o(options),
      _state(state),
      _m(metrics),
      _source(src),
      _sink(snk),
      _lanes(std::max<std::size_t>(options.mark_lanes, 1)) {}

publisher::~publisher() { join(); }

void publisher::start() {
    for (std::size_t lane = 0; lane < _lanes; ++lane) {
        _markers.emplace_back([this, lane] { mark_loop(lane); });
    }
    _claimer = std::thread([this] { claim_loop(); });
}

void publisher::join() {
    if (_claimer.joinable()) _claimer.join();
    for (auto& m : _markers) {
        if (m.joinable()) m.join();
    }
    _state.set_publisher_done();
}

// ------------------------------------------------------------------------------------------
// claimer

void publisher::claim_loop() {
    ms idle = _o.poll_min;
    clock::time_point last_found{};
    ms pg_backoff = 100ms;
    ms trouble_backoff = 100ms;
    while (!_state.stopping()) {
        try {
            const auto groups = _state.publishable();
            if (groups.empty()) {
                _state.wait_for_publishable(50ms);
                continue;
            }
            bool full = false;
            bool found = false;
            bool trouble = false;
            bool not_ready = false;
            if (fault::fatal_producer_armed(groups.size())) _inject_fatal = true;
            for (const auto& [g, epoch] : groups) {
                if (_state.stopping()) break;
                const auto r = run_batch(g, epoch);
                full = full || r == batch_result::full;
                found = found || r == batch_result::full || r == batch_result::partial;
                trouble = trouble || r == batch_result::trouble;
                not_ready = not_ready || r == batch_result::not_ready || r == batch_result::fenced;
            }
            pg_backoff = 100ms;
            if (trouble) {
                _state.sleep_for(trouble_backoff);
                trouble_backoff = std::min<ms>(trouble_backoff * 2, 5s);
                idle = _o.poll_min;
                continue;
            }
            trouble_backoff = 100ms;
            if (full || (_source.waits_for_rows() && !not_ready)) {
                // A full batch: more rows are likely waiting. A streaming source: the claim
                // already waited for rows.
                idle = _o.poll_min;
                continue;
            }
            // Adaptive polling: after a quiet second, back off doubling up to poll_max.
            const auto now = clock::now();
            if (found) last_found = now;
            if (now - last_found < k_busy_window) {
                idle = _o.poll_min;
                _state.sleep_for(idle);
                continue;
            }
            _state.sleep_for(idle);
            idle = std::min<ms>(idle * 2, _o.poll_max);
        } catch (const std::exception& e) {
            const auto* fe = dynamic_cast<const ferry::error*>(&e);
            const bool config = fe != nullptr && fe->kind() == error_kind::permanent &&
                                fe->code() == "relay.kafka_config";
            if (config) {
                spdlog::error("event=worker_error error=\"{}\"", one_line(e.what()));
            } else {
                spdlog::warn("event=worker_error error=\"{}\" reconnect=true retry_in_ms={}",
                             one_line(e.what()), pg_backoff.count());
            }
            // A fresh session is the simplest safe state after any database error.
            _source.reset_claim_session();
            _state.sleep_for(pg_backoff);
            pg_backoff = std::min<ms>(pg_backoff * 2, 5s);
        }
    }
    {
        std::lock_guard lock(_mq);
        _claimer_done = true;
    }
    _mcv.notify_all();
}

publisher::batch_result publisher::run_batch(int group, std::int64_t epoch) {
    if (!_state.begin_batch(group, epoch)) return batch_result::fenced;
    // Until the batch is handed to the marker, ending it is this function's job.
    bool handed = false;
    struct batch_end {
        relay_state& state;
        int group;
        const bool& handed;
        ~batch_end() {
            if (!handed) state.end_batch(group);
        }
    } end{_state, group, handed};

    // 1. Claim: the lease (ours, with time to spare, on the database clock) and the rows, in one
    //    statement, skipping the rows of a batch of this group that is still being marked.
    //    A claim prefetched while the group's previous batch was in flight is used instead.
    const double min_remaining_ms = static_cast<double>(_o.lease_ttl.count()) / 4;
    const auto t_claim = clock::now();
    claim_result claim;
    auto claimed_at = t_claim;
    bool pipelined = false;
    if (auto it = _prefetched.find(group); it != _prefetched.end()) {
        if (it->second.epoch == epoch && !_state.stopping()) {
            claim = std::move(it->second.claim);
            claimed_at = it->second.claimed_at;
            pipelined = true;
        }
        _prefetched.erase(it);
    }
    if (!pipelined) {
        const auto exclude = claim_exclusions(group);
        pipelined = !exclude.empty();
        claim = _source.claim(group, epoch, _o.batch_size, exclude, min_remaining_ms, true);
        claimed_at = clock::now();
    }
    if (!claim.lease_ours) {
        if (_state.drop_lease(group, epoch)) {
            spdlog::warn("event=lease_dropped group={} epoch={} reason=lease_taken", group, epoch);
        }
        _m.groups_held.set(static_cast<double>(_state.groups_held()));
        return batch_result::fenced;
    }
    if (claim.rows.empty()) {
        // Renewal lagging: do not publish near expiry.
        return claim.lease_remaining_ms < min_remaining_ms ? batch_result::not_ready
                                                           : batch_result::empty;
    }
    // The zombie guard's budget: the lease's remaining time on the database clock, less a
    // margin for the round trip, counted on this process's monotonic clock from now. A pause
    // (SIGSTOP) does not stop the monotonic clock, so a process that wakes after its lease could
    // have been taken produces nothing (kafka_sink, producer::send).
    const auto produce_until =
        claimed_at +
        std::chrono::duration_cast<clock::duration>(
            std::chrono::duration<double, std::milli>(claim.lease_remaining_ms)) -
        _o.lease_ttl / 8;
    auto& rows = claim.rows;
    const auto t_claimed = clock::now();
    ++_m.n_batches;
    _m.batch_size.observe(static_cast<double>(rows.size()));
    if (pipelined) _m.pipelined_batches.inc();

    // 2. Decide what to produce (batch_planner, pure).
    auto prepared =
        prepare_batch(rows, [this](const std::string& topic) { return kafka_topic(_o, topic); });
    for (std::size_t i = 0; i < rows.size(); ++i) {
        if (prepared.planned[i].header_error.empty()) continue;
        _m.invalid_headers.inc();
        spdlog::error(
            "event=invalid_headers group={} outbox_id={} message_id={} reason=\"{}\" "
            "action=park",
            group, rows[i].id, prepared.items[i].message_id,
            one_line(prepared.planned[i].header_error));
    }
    const auto plan = plan_produce(prepared.planned);
    std::vector<produce_item> items;
    items.reserve(plan.produce.size());
    for (const auto i : plan.produce) items.push_back(std::move(prepared.items[i]));

    // 3. Produce, and wait for every report. After a full claim, the group's next batch is
    //    claimed meanwhile on another thread (the claim session is not used here until it is
    //    joined below), skipping this batch's rows and those with the markers.
    std::future<claim_result> next;
    clock::time_point next_claimed_at;
    if (!items.empty() && _source.prefetches_claims() &&
        may_prefetch_next_claim(rows.size(), _o.batch_size)) {
        if (auto exclude = try_claim_exclusions(group)) {
            for (const auto& r : rows) exclude->push_back(r.id);
            next = std::async(std::launch::async, [this, group, epoch, min_remaining_ms,
                                                   &next_claimed_at, ex = std::move(*exclude)] {
                auto c = _source.claim(group, epoch, _o.batch_size, ex, min_remaining_ms, false);
                next_claimed_at = clock::now();
                return c;
            });
        }
    }
    // Joins the prefetched claim (a claim error resets the session, as in claim_loop): it
    // runs before this function returns or throws, so the claim session has one user at a time.
    struct prefetch_join {
        std::future<claim_result>& f;
        source& src;
        std::optional<claim_result> get() {
            if (!f.valid()) return std::nullopt;
            try {
                return f.get();
            } catch (const std::exception& e) {
                spdlog::warn("event=worker_error error=\"{}\" reconnect=true (prefetched claim)",
                             one_line(e.what()));
                src.reset_claim_session();
                return std::nullopt;
            }
        }
        ~prefetch_join() { (void)get(); }
    } prefetch{next, _source};
    batch_outcome out;
    fault::before_produce(group, epoch, items.size());
    if (!items.empty() && _inject_fatal) {
        _inject_fatal = false;
        spdlog::warn("event=fault_point name=fatal_producer group={} epoch={} rows={}", group,
                     epoch, items.size());
        _sink.raise_fatal_for_test("fault point fatal_producer");
    }
    if (!items.empty()) {
        out = _sink.send(
            items, clock::now() + _o.delivery_timeout,
            fault::produce_guard_enabled() ? produce_until : clock::time_point::max(),
            [this] { return _state.past_stop_deadline(); },
            [&] { fault::after_produce(group, epoch, items.size()); });
    }
    const auto t_acked = clock::now();
    // The ledger row's acked_at: the batch was in Kafka from here on (system clock).
    const auto acked_at_us = items.empty()
                                 ? std::int64_t{0}
                                 : std::chrono::duration_cast<std::chrono::microseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count();

    // 4. Decide what to mark (batch_planner): per key in id order, the acknowledged prefix is
    //    published; the first failure is parked (permanent) or left for the next round, and
    //    every later row of that key stays in the outbox even if Kafka acknowledged it
    //    (issue 10, hole 2).
    const auto marks = plan_mark(prepared.planned, plan, out.deliveries);
    const bool producer_lost = out.fatal || out.purged;
    const double now_epoch = now_epoch_seconds();
    mark_job job;
    job.request.group = group;
    job.request.epoch = epoch;
    job.request.acked_at_us = acked_at_us;
    job.overlap_ok = may_overlap_next_claim(marks, producer_lost);
    job.claimed_ids.reserve(rows.size());
    for (const auto& r : rows) job.claimed_ids.push_back(r.id);
    job.request.publish.reserve(marks.publish.size());
    for (const auto& p : marks.publish) {
        job.request.publish.push_back(
            {rows[p.row].id, p.partition, p.offset, std::move(rows[p.row].ctid)});
        _m.commit_to_ack.observe(
            std::max(0.0, now_epoch - static_cast<double>(rows[p.row].created_at_us) / 1e6));
    }
    for (const auto i : marks.expire) job.request.expire.push_back(rows[i].id);
    for (const auto& p : marks.park) {
        job.request.park.push_back({rows[p.row].id, p.reason, p.error_code});
    }
    if (marks.held_acked > 0) {
        _m.held_after_failure.inc(static_cast<double>(marks.held_acked));
        spdlog::warn(
            "event=held_after_failure group={} count={} (acknowledged after an earlier "
            "failure of their key; left unmarked, republished after it)",
            group, marks.held_acked);
    }
    if (marks.transient > 0) {
        _m.errors_transient.inc(static_cast<double>(marks.transient));
        std::string example;
        for (const auto& d : out.deliveries) {
            if (d.result == delivery_result::transient) {
                example = d.error_code + ": " + d.error_text;
                break;
            }
        }
        spdlog::warn("event=publish_transient_errors group={} count={} example=\"{}\"", group,
                     marks.transient, one_line(example));
    }
    if (out.fatal) {
        _m.errors_fatal.inc();
        spdlog::error("event=producer_fatal group={} reason=\"{}\" action=recreate", group,
                      one_line(out.fatal_reason));
    } else if (out.purged) {
        spdlog::warn("event=producer_purged group={} action=recreate", group);
    }
    spdlog::debug(
        "event=batch group={} rows={} published={} expired={} parked={} claim_us={} "
        "produce_us={}",
        group, rows.size(), marks.publish.size(), marks.expire.size(), marks.park.size(),
        std::chrono::duration_cast<std::chrono::microseconds>(t_claimed - t_claim).count(),
        std::chrono::duration_cast<std::chrono::microseconds>(t_acked - t_claimed).count());

    // 5. Hand the marks to the marker (it marks while the next batch is claimed and produced).
    if (!marks.nothing_to_mark()) {
        fault::before_mark(group, epoch, job.request.publish.size());
        job.request.before_commit = [group, epoch, n = job.request.publish.size()] {
            fault::during_mark(group, epoch, n);
        };
        hand_to_marker(std::move(job));
        handed = true;
    }
    const batch_facts facts{.claimed = rows.size(),
                            .batch_size = _o.batch_size,
                            .fenced = false,
                            .producer_lost = producer_lost};
    if (auto prefetched = prefetch.get()) {
        if (keep_prefetched_claim(facts, marks, prefetched->lease_ours, prefetched->rows.size())) {
            _prefetched[group] = {epoch, std::move(*prefetched), next_claimed_at};
            _m.claims_prefetched.inc();
        } else if (!prefetched->rows.empty()) {
            // Unproduced: its rows are yielded again by the next claim, after this batch's.
            _m.prefetched_claims_dropped.inc();
            spdlog::debug("event=prefetched_claim_dropped group={} rows={}", group,
                          prefetched->rows.size());
        }
    }
    switch (plan_next(facts, marks)) {
        case next_step::back_off:
            return batch_result::trouble;
        case next_step::poll_again_now:
            return batch_result::full;
        case next_step::drop_group:
            return batch_result::fenced;
        case next_step::poll_later:
            break;
    }
    return batch_result::partial;
}

std::vector<std::int64_t> publisher::claim_exclusions(int group) {
    std::unique_lock lock(_mq);
    _mcv.wait(lock, [this] {
        return std::all_of(_jobs.begin(), _jobs.end(),
                           [](const queued_job& q) { return q.job.overlap_ok; });
    });
    std::vector<std::int64_t> ids;
    for (const auto& q : _jobs) {
        if (q.job.request.group == group) {
            ids.insert(ids.end(), q.job.claimed_ids.begin(), q.job.claimed_ids.end());
        }
    }
    return ids;
}

std::optional<std::vector<std::int64_t>> publisher::try_claim_exclusions(int group) {
    std::lock_guard lock(_mq);
    std::vector<std::int64_t> ids;
    for (const auto& q : _jobs) {
        if (!q.job.overlap_ok) return std::nullopt;
        if (q.job.request.group == group) {
            ids.insert(ids.end(), q.job.claimed_ids.begin(), q.job.claimed_ids.end());
        }
    }
    return ids;
}

void publisher::hand_to_marker(mark_job job) {
    std::unique_lock lock(_mq);
    _mcv.wait(lock, [this] { return _jobs.size() < _lanes; });
    _jobs.push_back({std::move(job), false});
    _mcv.notify_all();
}

// ------------------------------------------------------------------------------------------
// markers

void publisher::mark_loop(std::size_t lane) {
    ms backoff = 100ms;
    for (;;) {
        std::unique_lock lock(_mq);
        auto next = _jobs.end();
        _mcv.wait(lock, [&] {
            next = std::find_if(_jobs.begin(), _jobs.end(),
                                [](const queued_job& q) { return !q.taken; });
            return next != _jobs.end() || (_claimer_done && _jobs.empty());
        });
        if (next == _jobs.end()) break;  // the claimer is done and nothing is left to mark
        next->taken = true;
        lock.unlock();
        // The job stays listed while it is marked: the claimer skips its rows meanwhile.
        mark_one(next->job, lane, backoff);
        lock.lock();
        _jobs.erase(next);
        lock.unlock();
        _mcv.notify_all();
    }
}

void publisher::mark_one(const mark_job& job, std::size_t lane, ms& backoff) {
    const auto& req = job.request;
    mark_outcome result = mark_outcome::marked;
    const auto t0 = clock::now();
    try {
        result = _source.mark(req, lane);
        backoff = 100ms;
    } catch (const std::exception& e) {
        // Nothing was marked: the rows stay in the outbox and are published again (consumers
        // absorb the duplicates by ferry-message-id).
        spdlog::warn(
            "event=mark_error group={} epoch={} unmarked={} error=\"{}\" retry_in_ms={} "
            "(the rows stay in the outbox and are published again)",
            req.group, req.epoch, req.publish.size(), one_line(e.what()), backoff.count());
        _source.reset_mark_session(lane);
        _state.end_batch(req.group);
        _state.sleep_for(backoff);
        backoff = std::min<ms>(backoff * 2, 5s);
        return;
    }
    if (result == mark_outcome::fenced) {
        _m.fenced.inc();
        ++_m.n_fenced;
        spdlog::warn(
            "event=fenced group={} epoch={} instance={} unmarked={} (another instance owns the "
            "group; its rows will be republished by it)",
            req.group, req.epoch, _o.instance_id, req.publish.size());
        if (_state.drop_lease(req.group, req.epoch)) {
            spdlog::warn("event=lease_dropped group={} epoch={} reason=fenced_at_mark", req.group,
                         req.epoch);
        }
        _m.groups_held.set(static_cast<double>(_state.groups_held()));
        _state.end_batch(req.group);
        return;
    }
    _m.published.inc(static_cast<double>(req.publish.size()));
    _m.expired_total.inc(static_cast<double>(req.expire.size()));
    _m.parked_total.inc(static_cast<double>(req.park.size()));
    _m.errors_permanent.inc(static_cast<double>(req.park.size()));
    _m.n_published += req.publish.size();
    _m.n_expired += req.expire.size();
    _m.n_parked += req.park.size();
    for (const auto& p : req.park) {
        spdlog::warn("event=message_parked group={} outbox_id={} error_code={} reason=\"{}\"",
                     req.group, p.id, p.error_code, one_line(p.reason));
    }
    if (!req.expire.empty()) {
        spdlog::info("event=messages_expired group={} count={}", req.group, req.expire.size());
    }
    spdlog::debug("event=batch_marked group={} lane={} published={} mark_us={}", req.group, lane,
                  req.publish.size(),
                  std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - t0).count());
    _state.end_batch(req.group);
}

}  // namespace ferry::relay::detail
