#pragma once
// Private: the publisher, the relay's pipeline. It holds no SQL and no Kafka code: it asks the
// source for rows, the planner what to do with them, the sink to produce them, the planner
// again what to mark, and the source to mark it. Two threads:
//  - the claimer: for each held group, claims a batch (lease checked in the same statement),
//    prepares and plans it, produces it and waits for every report, plans the marks and hands
//    them to the marker;
//  - the marker: marks one batch at a time, fenced by the lease.
// So batch N is marked while batch N+1 is claimed and produced. Rules that keep the guarantees
// (ADR 0002, "Pipeline"):
//  - the sink sends batch N+1 only after every report of batch N is in, so Kafka's order is the
//    claim order, as without the pipeline;
//  - the claim of N+1 skips N's rows (still in the outbox until N's mark commits) by id, never
//    by a cursor, so a row that commits late is still found;
//  - N+1 is claimed before N's mark commits only when N published or expired every row
//    (planner: may_overlap_next_claim); otherwise the claimer waits for the mark, so a parked
//    key is held back and a failed row is claimed again before any later row of its key;
//  - marks commit in batch order (one marker); a fenced mark drops the group, and the claimer's
//    next claim of it finds the lease gone;
//  - a voluntary release waits for every batch in flight of the group (relay_state).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "batch_planner.hpp"
#include "ferry/relay/options.hpp"
#include "relay_metrics.hpp"
#include "relay_state.hpp"
#include "sink.hpp"
#include "source.hpp"

namespace ferry::relay::detail {

class publisher {
public:
    publisher(const relay_options& options, relay_state& state, relay_metrics& metrics, source& src,
              sink& snk);
    ~publisher();
    publisher(const publisher&) = delete;
    publisher& operator=(const publisher&) = delete;

    void start();
    /// Joins both threads (after relay_state::request_stop): the claimer finishes its batch,
    /// the marker marks what was handed to it, then relay_state::set_publisher_done().
    void join();

private:
    enum class batch_result { empty, partial, full, fenced, not_ready, trouble };

    /// One batch between claim and mark.
    struct mark_job {
        mark_request request;
        std::vector<std::int64_t> claimed_ids;  // every row claimed (skipped by the next claim)
        bool overlap_ok = false;                // planner: may_overlap_next_claim
    };

    void claim_loop();
    void mark_loop();
    batch_result run_batch(int group, std::int64_t epoch);
    void mark_one(mark_job& job);

    // Marker hand-off (one job at a time).
    void wait_marker_idle();
    void hand_to_marker(mark_job job);
    /// Ids to skip in a claim of `group`: the rows of a batch of that group still in the
    /// marker; waits for the marker first when that batch may not be overlapped.
    std::vector<std::int64_t> claim_exclusions(int group);

    const relay_options& _o;
    relay_state& _state;
    relay_metrics& _m;
    source& _source;
    sink& _sink;
    bool _inject_fatal = false;                    // claimer only (fault point)
    std::chrono::milliseconds _mark_backoff{100};  // marker only

    std::mutex _mq;
    std::condition_variable _mcv;
    std::optional<mark_job> _job;  // handed to the marker, not yet marked
    bool _claimer_done = false;

    std::thread _claimer;
    std::thread _marker;
};

}  // namespace ferry::relay::detail
