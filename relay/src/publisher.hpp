#pragma once
// Private: the publisher, the relay's pipeline. It holds no SQL and no Kafka code: it asks the
// source for rows, the planner what to do with them, the sink to produce them, the planner
// again what to mark, and the source to mark it. Threads:
//  - the claimer: for each held group, claims a batch (lease checked in the same statement),
//    prepares and plans it, produces it and waits for every report, plans the marks and hands
//    them to the markers;
//  - the markers, one per mark lane (relay.mark_lanes, default 1): each marks one batch at a
//    time on its own session, fenced by the lease (FOR KEY SHARE: marks share the lease row,
//    and a change of owner or epoch waits for all of them; migration 0107).
// So batch N is marked while batch N+1 is claimed and produced. Rules that keep the guarantees
// (ADR 0002, "Pipeline" and fourteenth amendment):
//  - the sink sends batch N+1 only after every report of batch N is in, so Kafka's order is the
//    claim order, as without the pipeline;
//  - the claim of N+1 skips N's rows (still in the outbox until N's mark commits) by id, never
//    by a cursor, so a row that commits late is still found;
//  - N+1 is claimed before N's mark commits only when N published or expired every row
//    (planner: may_overlap_next_claim); otherwise the claimer waits for the mark, so a parked
//    key is held back and a failed row is claimed again before any later row of its key;
//  - after a full batch, N+1 is claimed while N's reports are awaited (the claim prefetch, ADR
//    0070 twenty-second amendment), skipping N's rows too, without waiting for rows. N+1 is
//    produced only if N may overlap (planner: keep_prefetched_claim); otherwise the prefetched
//    claim is dropped unproduced and the next claim yields N's unmarked rows first;
//  - with one lane, marks commit in batch order. With more, a later batch's mark may commit
//    before an earlier one's: Kafka's order is already fixed by then, and a mark that fails
//    leaves its rows to be published again (duplicates, never a reordering of first
//    deliveries). Batches in flight, marked or waiting for a lane, are at most mark_lanes + 1;
//  - a fenced mark drops the group, and the claimer's next claim of it finds the lease gone;
//  - a voluntary release waits for every batch in flight of the group (relay_state).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
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
    void mark_loop(std::size_t lane);
    batch_result run_batch(int group, std::int64_t epoch);
    void mark_one(const mark_job& job, std::size_t lane, std::chrono::milliseconds& backoff);

    // Marker hand-off: at most mark_lanes jobs between the claimer and the markers.
    void hand_to_marker(mark_job job);
    /// Ids to skip in a claim of `group`: the rows of the batches of that group still with the
    /// markers; waits for the markers first while any batch with them may not be overlapped.
    std::vector<std::int64_t> claim_exclusions(int group);
    /// The same without waiting: nothing while a batch with the markers may not be overlapped.
    std::optional<std::vector<std::int64_t>> try_claim_exclusions(int group);

    const relay_options& _o;
    relay_state& _state;
    relay_metrics& _m;
    source& _source;
    sink& _sink;
    bool _inject_fatal = false;  // claimer only (fault point)
    /// A claim of a group's next batch made while its previous batch's reports were awaited
    /// (claimer only): the next run_batch of that group and epoch produces it.
    struct prefetched_claim {
        std::int64_t epoch = 0;
        claim_result claim;
        std::chrono::steady_clock::time_point claimed_at;
    };
    std::map<int, prefetched_claim> _prefetched;
    std::size_t _lanes;  // relay.mark_lanes, at least 1

    std::mutex _mq;
    std::condition_variable _mcv;
    struct queued_job {
        mark_job job;
        bool taken = false;  // a marker is marking it (it stays listed until marked)
    };
    std::list<queued_job> _jobs;  // handed to the markers, in batch order, not yet marked
    bool _claimer_done = false;

    std::thread _claimer;
    std::vector<std::thread> _markers;
};

}  // namespace ferry::relay::detail
