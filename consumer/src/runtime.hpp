#pragma once
// consumer::impl, the consumer runtime's state, shared by the files that implement it (private).
//   consumer.cpp            validation, start-up, stop, the public API and metrics
//   kafka_session.cpp       the librdkafka session: configuration, the poll thread, rebalance
//                           and partition fencing, offset commits, pause/resume, lag
//   lanes.cpp               keyed lanes: Redis claims per run, batched effect transactions,
//                           the live path of one message and the routing of its failure
//   retry_worker.cpp        retry-table workers and inbox retention
//   failure_router.hpp      the pure failure decision shared by lanes and retry workers
//   dead_letter_publisher.* the optional dead-letter topic
//   offset_tracker.hpp, envelope.hpp: pure pieces with their own unit tests
// Threads: see ferry/consumer/consumer.hpp; each member says which thread runs it.

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "dead_letter_publisher.hpp"
#include "envelope.hpp"
#include "failure_router.hpp"
#include "ferry/consumer/consumer.hpp"
#include "ferry/dedup/inbox.hpp"
#include "ferry/dedup/redis_store.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/retry/fence.hpp"
#include "ferry/retry/tables.hpp"
#include "offset_tracker.hpp"

namespace ferry::consumer {

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;
using clock_type = std::chrono::steady_clock;

namespace detail {

inline std::string default_instance_id() {
    char host[256] = {0};
    ::gethostname(host, sizeof host - 1);
    std::random_device rd;
    std::ostringstream s;
    s << host << '-' << ::getpid() << '-' << std::hex << (rd() & 0xffffff);
    return s.str();
}

[[noreturn]] inline void bad_option(const std::string& field, const std::string& why) {
    throw ferry::error(error_kind::permanent, "consumer.options", "consumer: " + field + ": " + why,
                       field);
}

inline retry::stored_message to_stored(const message& m, bool ordered) {
    retry::stored_message s;
    s.topic = m.topic;
    s.partition = m.partition;
    s.offset = m.offset;
    s.key = m.key;
    s.message_id = m.message_id;
    s.payload = m.payload;
    for (const auto& h : m.headers) s.headers.push_back({h.name, h.value});
    s.ordered = ordered;
    return s;
}

inline message from_stored(const retry::stored_message& s) {
    message m;
    m.message_id = s.message_id;
    m.key = s.key;
    m.payload = s.payload;
    m.topic = s.topic;
    m.partition = s.partition;
    m.offset = s.offset;
    for (const auto& h : s.headers) m.headers.push_back({h.name, h.value});
    return m;
}

inline void fault_point(const char* name) {
#ifdef FERRY_FAULT_POINTS
    const char* f = std::getenv("FERRY_FAULT");
    if (f != nullptr && std::string_view(f) == name) {
        spdlog::warn("event=fault_point name={} action=SIGKILL", name);
        std::fflush(nullptr);
        std::raise(SIGKILL);
    }
#else
    (void)name;
#endif
}

// True when the named fault is armed (FERRY_FAULT, test builds only); for faults that are
// injected as an error rather than a kill.
inline bool fault_armed(const char* name) {
#ifdef FERRY_FAULT_POINTS
    const char* f = std::getenv("FERRY_FAULT");
    return f != nullptr && std::string_view(f) == name;
#else
    (void)name;
    return false;
#endif
}

inline constexpr std::size_t mib = 1u << 20;

}  // namespace detail

using detail::attempt_outcome;
using detail::attempt_result;
using detail::bad_option;
using detail::default_instance_id;
using detail::fault_armed;
using detail::fault_point;
using detail::from_stored;
using detail::mib;
using detail::to_stored;

struct consumer::impl {
    struct topic_entry {
        handler plain;
        tx_handler tx;
        topic_options options;
    };

    struct work_item {
        message msg;
        std::string malformed;  // reason, when the envelope is bad
        std::string malformed_code = "consumer.malformed";
        std::size_t bytes = 0;  // payload + key + headers, counted against max_queued_bytes
        std::uint64_t generation = 0;
        std::optional<dedup::claim> claim;  // Redis claim, taken by the lane per run
        bool claim_failed = false;          // Redis was unreachable when the lane claimed it
        topic_entry* entry = nullptr;
    };

    struct lane {
        std::size_t index = 0;
        std::mutex mutex;
        std::condition_variable cv;
        std::deque<work_item> queue;
        std::atomic<std::size_t> depth{0};
        std::thread thread;
        std::unique_ptr<pqxx::connection> conn;
        // Redis completes waiting for one pipelined round trip, with the offsets they free.
        std::vector<dedup::claim> pending_claims;
        std::vector<work_item> pending_items;
        // The lane's runs of Redis claims (ADR 0024), by run token. A run is marked "done" with
        // one write only when every fresh claim of it was decided: applied (then pending) or
        // given back (release returned). `broken`: a claim left without a decision (revoked,
        // abandoned, a release that threw) - its key still names the run, so the run is never
        // marked and its applied messages take per-message marks.
        struct run_state {
            std::size_t undecided = 0;  // fresh claims neither applied nor given back
            std::size_t pending = 0;    // applied claims of it in pending_claims
            bool broken = false;
        };
        std::unordered_map<std::string, run_state> runs;
        // Redis-only: wait before writing marks Redis refused again (doubles to 1 s).
        std::chrono::milliseconds mark_backoff{50};
    };

    consumer_options o;
    std::map<std::string, topic_entry> topics;
    bool use_redis = false;
    bool use_inbox = false;

    std::unique_ptr<dedup::redis_store> redis;
    std::unique_ptr<dedup::inbox> box;
    std::unique_ptr<retry::retry_table> retries;
    std::unique_ptr<retry::dead_letters> dead;
    std::unique_ptr<retry::partition_fence> fence;

    rd_kafka_t* rk = nullptr;
    std::unique_ptr<detail::dead_letter_publisher> dlq;
    detail::offset_tracker tracker;

    std::vector<std::unique_ptr<lane>> lanes;
    std::thread poll_thread;
    std::vector<std::thread> retry_threads;
    std::thread prune_thread;
    std::atomic<bool> stopping{false};
    std::atomic<bool> abandon_all{false};
    std::atomic<bool> lanes_exit{false};
    std::atomic<bool> started{false};
    std::atomic<bool> stopped{false};
    std::atomic<bool> paused{false};
    std::atomic<int> cooperative_protocol{-1};  // -1 unknown; set at assignment (on_rebalance)
    std::mutex retry_mutex;
    std::condition_variable retry_cv;

    // Ordered retry: keys known (or suspected) to have a message in retry or a blocking dead
    // letter. A cache of the tables: a lane checks the table before trusting an entry, and while
    // blocked_loaded is false every ordered keyed message checks the table.
    std::mutex blocked_mutex;
    std::set<std::pair<std::string, std::string>> blocked;
    std::atomic<bool> blocked_loaded{false};

    // Metrics.
    std::atomic<std::uint64_t> m_consumed{0}, m_processed{0}, m_duplicates{0}, m_retries{0},
        m_retry_scheduled{0}, m_parked{0}, m_dead{0}, m_malformed{0}, m_redis_errors{0},
        m_commits{0}, m_rebalances{0}, m_fenced{0}, m_header_limit{0}, m_batches{0},
        m_batched_messages{0}, m_batch_fallbacks{0}, m_abandoned{0}, m_inbox_pruned{0},
        m_retry_chained{0}, m_pauses{0};
    std::atomic<std::size_t> m_last_batch{0};
    std::atomic<std::int64_t> m_lag{0};
    mutable std::mutex lag_mutex;
    std::vector<partition_lag> m_partition_lags;  // guarded by lag_mutex
    std::atomic<std::size_t> m_assigned{0};
    std::atomic<std::size_t> queued_total{0};
    std::atomic<std::size_t> queued_bytes{0};
    std::atomic<std::size_t> queued_bytes_peak{0};

    explicit impl(consumer_options opts) : o(std::move(opts)) {
        if (o.instance_id.empty()) o.instance_id = default_instance_id();
    }

    ~impl() {
        if (rk != nullptr) rd_kafka_destroy(rk);
    }

    // How long the queue may stay full before every partition is paused (see poll_loop): the
    // longest a rebalance callback waits while the lanes are behind.
    static constexpr ms pause_grace{500};

    // ---------- record writes of lanes and retry workers (templates, so here)

    // Runs `fn` (a database write) until it succeeds; backs off on errors. False when the work
    // was abandoned (stop or revoke) before it succeeded.
    template <typename Fn>
    bool durably(std::unique_ptr<pqxx::connection>& conn, const work_item* w, const char* what,
                 Fn&& fn) {
        ms backoff = 50ms;
        while (true) {
            try {
                fn(lane_conn(conn));
                return true;
            } catch (const std::exception& e) {
                if (conn && !conn->is_open()) conn.reset();
                spdlog::warn("event=db_write_failed op={} group={} error=\"{}\" retry_in_ms={}",
                             what, o.group, e.what(), backoff.count());
            }
            if (lanes_exit || (w != nullptr && !still_mine(*w))) return false;
            std::this_thread::sleep_for(backoff);
            backoff = std::min<ms>(backoff * 2, 2s);
        }
    }

    enum class record_write { written, fenced, abandoned };

    // A live-path record write (retry, parking, dead letter) for a message of a partition this
    // instance owns: one transaction that first checks the partition fence (retry::
    // partition_fence::holds, FOR SHARE) and then runs `fn`. `fenced` when the partition moved
    // to another owner or generation: nothing is written and the next owner redelivers the
    // message (DESIGN.md invariant 3: nothing may overtake a record the new owner cannot see).
    template <typename Fn>
    record_write fenced_write(lane& ln, const work_item& w, const char* what, Fn&& fn) {
        bool refused = false;
        const bool ok = durably(ln.conn, &w, what, [&](pqxx::connection& c) {
            refused = false;
            const detail::tp t{w.msg.topic, w.msg.partition};
            const auto epoch = tracker.fence(t, w.generation);
            if (epoch == 0) {
                if (!still_mine(w)) {
                    refused = true;
                    return;
                }
                throw ferry::error(error_kind::retryable, "consumer.fence",
                                   "ownership of " + w.msg.topic + "/" +
                                       std::to_string(w.msg.partition) + " is not established yet");
            }
            pqxx::work tx{c};
            if (!fence->holds(tx, w.msg.topic, w.msg.partition, o.instance_id, epoch)) {
                refused = true;
                return;
            }
            fn(tx);
            tx.commit();
        });
        if (!ok) return record_write::abandoned;
        if (refused) {
            ++m_fenced;
            spdlog::warn(
                "event=record_write_fenced op={} group={} topic={} partition={} offset={} "
                "message_id={} reason=\"partition no longer owned by this instance\"",
                what, o.group, w.msg.topic, w.msg.partition, w.msg.offset, w.msg.message_id);
            return record_write::fenced;
        }
        return record_write::written;
    }

    // ---------- start-up, stop, metrics (consumer.cpp)
    std::unique_ptr<pqxx::connection> connect_pg();
    void validate();
    void start();
    std::string quote_schema() const;
    void stop();
    metrics_snapshot snapshot() const;

    // ---------- Kafka session: poll thread, rebalance, offsets (kafka_session.cpp)
    rd_kafka_conf_t* make_conf(bool consumer_conf);
    static void rebalance_trampoline(rd_kafka_t* rk_, rd_kafka_resp_err_t err,
                                     rd_kafka_topic_partition_list_t* parts, void* opaque);
    void load_blocked_keys();
    bool acquire_fences(const std::vector<detail::tp>& list);
    void on_rebalance(rd_kafka_t* rk_, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t* parts);
    void commit(const std::vector<detail::tp>& only, bool all);
    void update_lag();
    void set_paused(bool pause);
    work_item make_item(const rd_kafka_message_t* km);
    std::size_t lane_of(const work_item& w) const;
    void dispatch(std::vector<work_item>& batch);
    void poll_loop();

    // ---------- lanes: claims, batches, the live path (lanes.cpp)
    pqxx::connection& lane_conn(std::unique_ptr<pqxx::connection>& conn);
    bool still_mine(const work_item& w) const;
    attempt_outcome attempt(std::unique_ptr<pqxx::connection>& conn, const topic_entry& e,
                            const message& m, std::optional<long long> retry_row_id);
    static attempt_outcome failed_outcome();
    void publish_dead_letter(const message& m, const std::string& reason);
    void mark_blocked(const message& m, bool ordered);
    bool maybe_blocked(const message& m, bool ordered);
    void release_claim(const std::optional<dedup::claim>& c);
    /// release_claim for a lane's claim: the run's books learn the decision (a release that
    /// threw breaks the run). Clears the token.
    void release_run_claim(lane& ln, std::optional<dedup::claim>& c);
    /// Books a fresh claim under its run.
    void run_claimed(lane& ln, const dedup::claim& c);
    /// A fresh claim of run `token` was decided: applied (`applied`: its mark is now pending)
    /// or given back.
    void run_decided(lane& ln, const std::string& token, bool applied);
    /// After the lane processed everything it took: a run still counting undecided claims
    /// lost one (revoked or abandoned) and is never marked as a whole; idle runs are dropped.
    void settle_runs(lane& ln);
    struct mark_set {
        std::vector<dedup::claim> messages;  // per-message marks
        std::vector<std::string> runs;       // whole-run marks
        std::vector<std::size_t> items;      // indexes into pending_* they cover
    };
    /// The pending marks to write now: every run whose claims were all decided as one run
    /// mark; with `all`, the applied messages of the other runs as per-message marks.
    mark_set marks_due(const lane& ln, bool all) const;
    /// After Redis acknowledged `m`: complete those offsets and drop them from the books.
    void marks_written(lane& ln, const mark_set& m);
    /// Takes pending item `i` out of its run's books (the mark was written or dropped).
    void unpend(lane& ln, const std::string& token);
    void claim_run(lane& ln, work_item& first, std::deque<work_item>& local);
    bool needs_claim(const work_item& w) const;
    /// Writes the lane's pending "done" marks and completes their offsets. Returns false when
    /// Redis did not acknowledge them in Redis-only mode: marks and offsets then stay pending
    /// (an offset never commits past an unacknowledged mark) unless `giving_up` (lane exit),
    /// when the offsets are left uncommitted. With the inbox the offsets complete regardless.
    bool flush_completes(lane& ln, bool giving_up = false);
    /// After a failed mark write: finish the pending items (inbox on) or keep them.
    void marks_failed(lane& ln, const ferry::error& e, bool giving_up);
    void finish(const work_item& w, bool complete);
    std::optional<dedup::claim> reclaim(lane& ln, const work_item& w, bool& abandon);
    void process_live(lane& ln, work_item& w,
                      const std::optional<attempt_outcome>& first = std::nullopt);
    void lane_loop(lane& ln);
    bool batchable(const work_item& w);
    void run_batch(lane& ln, std::vector<work_item>& batch);
    void batch_failed(lane& ln, std::size_t n, const char* why);

    // ---------- retry workers and inbox retention (retry_worker.cpp)
    bool process_retry_row(std::unique_ptr<pqxx::connection>& conn, retry::retry_row& row);
    void prune_loop();
    void retry_loop();
};

}  // namespace ferry::consumer
