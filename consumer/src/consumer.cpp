#include "ferry/consumer/consumer.hpp"

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

#include "envelope.hpp"
#include "failure_router.hpp"
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

std::optional<std::string> message::header_value(std::string_view name) const {
    std::optional<std::string> out;
    for (const auto& h : headers) {
        if (h.name == name) out = h.value;
    }
    return out;
}

std::string_view to_string(dedup_mode m) noexcept {
    switch (m) {
        case dedup_mode::none:
            return "none";
        case dedup_mode::redis:
            return "redis";
        case dedup_mode::inbox:
            return "inbox";
        case dedup_mode::redis_and_inbox:
            return "redis_and_inbox";
    }
    return "unknown";
}

namespace {

std::string default_instance_id() {
    char host[256] = {0};
    ::gethostname(host, sizeof host - 1);
    std::random_device rd;
    std::ostringstream s;
    s << host << '-' << ::getpid() << '-' << std::hex << (rd() & 0xffffff);
    return s.str();
}

[[noreturn]] void bad_option(const std::string& field, const std::string& why) {
    throw ferry::error(error_kind::permanent, "consumer.options", "consumer: " + field + ": " + why,
                       field);
}

// Handler / effect outcome of one attempt.
// in_progress: another consumer holds the message's inbox row (its transaction is open).
enum class attempt_result { applied, duplicate, failed, in_progress, lost_claim };

struct attempt_outcome {
    attempt_result result = attempt_result::applied;
    error_kind kind = error_kind::retryable;
    std::string code;
    std::string error;
};

retry::stored_message to_stored(const message& m, bool ordered) {
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

message from_stored(const retry::stored_message& s) {
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

[[maybe_unused]] void fault_point(const char* name) {
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
[[maybe_unused]] bool fault_armed(const char* name) {
#ifdef FERRY_FAULT_POINTS
    const char* f = std::getenv("FERRY_FAULT");
    return f != nullptr && std::string_view(f) == name;
#else
    (void)name;
    return false;
#endif
}

constexpr std::size_t mib = 1u << 20;

}  // namespace

// ---------------------------------------------------------------------------------------------

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
    rd_kafka_t* dlq_producer = nullptr;
    std::mutex dlq_mutex;
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
        if (dlq_producer != nullptr) {
            rd_kafka_flush(dlq_producer, 2000);
            rd_kafka_destroy(dlq_producer);
        }
    }

    // ---------------------------------------------------------------------------- start-up

    std::unique_ptr<pqxx::connection> connect_pg() {
        try {
            return std::make_unique<pqxx::connection>(internal::with_connect_timeout(
                o.dsn, std::max<long>(1, static_cast<long>(o.connect_timeout.count() / 1000))));
        } catch (const std::exception& e) {
            throw ferry::error(error_kind::retryable, "consumer.connect",
                               std::string("cannot connect to PostgreSQL: ") + e.what(),
                               "postgres.dsn");
        }
    }

    void validate() {
        if (o.group.empty()) bad_option("group", "must not be empty");
        if (o.brokers.empty()) bad_option("brokers", "must not be empty");
        if (o.dsn.empty())
            bad_option("dsn", "the consumer database is required (retry, dead letters)");
        if (o.lanes == 0) bad_option("lanes", "must be at least 1");
        if (o.max_batch == 0) bad_option("max_batch", "must be at least 1");
        if (o.max_queued == 0) bad_option("max_queued", "must be at least 1");
        if (o.max_queued_bytes < mib) bad_option("max_queued_bytes", "must be at least 1 MiB");
        if (o.max_headers == 0) bad_option("max_headers", "must be at least 1");
        if (o.inbox_prune_interval.count() > 0 && o.inbox_retention.count() <= 0) {
            bad_option("inbox_retention", "must be positive");
        }
        if (o.inbox_prune_batch < 1) bad_option("inbox_prune_batch", "must be at least 1");
        if (o.tx_batch_max == 0) bad_option("tx_batch_max", "must be at least 1 (1: no batching)");
        if (o.tx_batch_max_time.count() <= 0) bad_option("tx_batch_max_time", "must be positive");
        if (o.max_header_bytes == 0) bad_option("max_header_bytes", "must be at least 1");
        if (topics.empty()) bad_option("topics", "subscribe() at least one topic before start()");
        retry::validate(o.retry);
        use_redis = o.dedup == dedup_mode::redis || o.dedup == dedup_mode::redis_and_inbox;
        use_inbox = o.dedup == dedup_mode::inbox || o.dedup == dedup_mode::redis_and_inbox;
        if (use_inbox) {
            for (const auto& [t, e] : topics) {
                if (!e.tx) {
                    bad_option("dedup",
                               "the inbox needs the effect in PostgreSQL: subscribe topic " + t +
                                   " with a tx_handler");
                }
            }
        }
    }

    rd_kafka_conf_t* make_conf(bool consumer_conf) {
        rd_kafka_conf_t* conf = rd_kafka_conf_new();
        char err[512];
        auto set = [&](const std::string& k, const std::string& v) {
            if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) !=
                RD_KAFKA_CONF_OK) {
                rd_kafka_conf_destroy(conf);
                bad_option("kafka." + k, err);
            }
        };
        set("bootstrap.servers", o.brokers);
        set("client.id", "ferry-consumer-" + o.instance_id);
        if (consumer_conf) {
            set("group.id", o.group);
            set("auto.offset.reset", o.auto_offset_reset);
            set("isolation.level", "read_committed");
            set("partition.assignment.strategy", "roundrobin");
            set("session.timeout.ms", std::to_string(o.session_timeout.count()));
            set("heartbeat.interval.ms",
                std::to_string(std::max<long long>(100, o.session_timeout.count() / 5)));
            set("enable.partition.eof", "false");
            // librdkafka's prefetch counts against the memory bound too (max_queued_bytes).
            const auto prefetch = std::max<std::size_t>(mib, o.max_queued_bytes / 4);
            set("queued.max.messages.kbytes", std::to_string(prefetch / 1024));
            set("fetch.max.bytes", std::to_string(std::min<std::size_t>(prefetch, 52428800)));
        }
        for (const auto& [k, v] : o.kafka_properties) set(k, v);
        if (consumer_conf) {
            set("enable.auto.commit", "false");
            set("enable.auto.offset.store", "false");
        }
        return conf;
    }

    void start() {
        validate();
        {
            auto conn = connect_pg();  // fail fast on a bad DSN or a missing schema
            try {
                pqxx::nontransaction tx{*conn};
                (void)internal::exec(tx, "SELECT 1 FROM " + quote_schema() + ".retry LIMIT 0");
                (void)internal::exec(
                    tx, "SELECT 1 FROM " + quote_schema() + ".consumer_partition_owner LIMIT 0");
            } catch (...) {
                internal::rethrow_translated("consumer start", "consumer");
            }
        }
        retries = std::make_unique<retry::retry_table>(o.schema, o.group);
        dead = std::make_unique<retry::dead_letters>(o.schema);
        fence = std::make_unique<retry::partition_fence>(o.schema, o.group);
        if (use_inbox) box = std::make_unique<dedup::inbox>(o.schema);
        if (use_redis) {
            dedup::redis_options ro;
            ro.url = o.redis_url;
            ro.key_prefix = o.redis_key_prefix;
            ro.done_window = o.done_window;
            redis = std::make_unique<dedup::redis_store>(ro);
            try {
                redis->ping();
            } catch (const ferry::error& e) {
                if (!use_inbox) throw;  // Redis-only cannot run without Redis
                spdlog::warn(
                    "event=redis_unavailable at=start group={} action=inbox_only error=\"{}\"",
                    o.group, e.what());
            }
        }
        if (!o.dead_letter_topic.empty()) {
            char err[512];
            auto* conf = make_conf(false);
            dlq_producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
            if (dlq_producer == nullptr) bad_option("dead_letter_topic", err);
        }

        rd_kafka_conf_t* conf = make_conf(true);
        rd_kafka_conf_set_opaque(conf, this);
        rd_kafka_conf_set_rebalance_cb(conf, &impl::rebalance_trampoline);
        char err[512];
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
        if (rk == nullptr) bad_option("kafka", err);
        rd_kafka_poll_set_consumer(rk);
        auto* subs = rd_kafka_topic_partition_list_new(static_cast<int>(topics.size()));
        for (const auto& [t, e] : topics) {
            rd_kafka_topic_partition_list_add(subs, t.c_str(), RD_KAFKA_PARTITION_UA);
        }
        const auto serr = rd_kafka_subscribe(rk, subs);
        rd_kafka_topic_partition_list_destroy(subs);
        if (serr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            throw ferry::error(error_kind::permanent, "consumer.subscribe",
                               std::string("subscribe failed: ") + rd_kafka_err2str(serr));
        }

        for (std::size_t i = 0; i < o.lanes; ++i) {
            auto l = std::make_unique<lane>();
            l->index = i;
            lanes.push_back(std::move(l));
        }
        for (auto& l : lanes) {
            lane* lp = l.get();
            lp->thread = std::thread([this, lp] { lane_loop(*lp); });
        }
        for (std::size_t i = 0; i < std::max<std::size_t>(1, o.retry_workers); ++i) {
            retry_threads.emplace_back([this] { retry_loop(); });
        }
        if (box && o.inbox_prune_interval.count() > 0) {
            prune_thread = std::thread([this] { prune_loop(); });
        }
        poll_thread = std::thread([this] { poll_loop(); });
        started = true;
        spdlog::info("event=consumer_started group={} instance={} dedup={} lanes={} topics={}",
                     o.group, o.instance_id, to_string(o.dedup), o.lanes, topics.size());
    }

    std::string quote_schema() const {
        std::string q = "\"";
        for (char c : o.schema) {
            if (c == '"') q += '"';
            q += c;
        }
        return q + "\"";
    }

    void stop() {
        if (!started || stopped.exchange(true)) return;
        stopping = true;
        if (poll_thread.joinable()) poll_thread.join();  // drains, commits, leaves the group
        lanes_exit = true;
        for (auto& l : lanes) {
            { std::lock_guard lock(l->mutex); }
            l->cv.notify_all();
        }
        for (auto& l : lanes) {
            if (l->thread.joinable()) l->thread.join();
        }
        retry_cv.notify_all();
        for (auto& t : retry_threads) {
            if (t.joinable()) t.join();
        }
        if (prune_thread.joinable()) prune_thread.join();
        spdlog::info("event=consumer_stopped group={} instance={} processed={} duplicates={}",
                     o.group, o.instance_id, m_processed.load(), m_duplicates.load());
    }

    // ---------------------------------------------------------------------------- poll thread

    static void rebalance_trampoline(rd_kafka_t* rk_, rd_kafka_resp_err_t err,
                                     rd_kafka_topic_partition_list_t* parts, void* opaque) {
        static_cast<impl*>(opaque)->on_rebalance(rk_, err, parts);
    }

    void load_blocked_keys() {
        try {
            auto conn = connect_pg();
            pqxx::read_transaction tx{*conn};
            const auto keys = retries->blocked_keys(tx);
            std::lock_guard lock(blocked_mutex);
            blocked.clear();
            for (const auto& [t, k] : keys) {
                if (k) blocked.emplace(t, *k);
            }
            blocked_loaded = true;
        } catch (const std::exception& e) {
            // Lanes check the table for every ordered message until a load succeeds.
            blocked_loaded = false;
            spdlog::warn("event=blocked_keys_load_failed group={} error=\"{}\"", o.group, e.what());
        }
    }

    // Takes ownership (retry::partition_fence) of the current assignment of `list` (all
    // partitions without an epoch when empty). On a database error the partitions stay
    // unfenced: their record writes wait, and the poll loop tries again.
    bool acquire_fences(const std::vector<detail::tp>& list) {
        std::vector<retry::owned_partition> parts;
        std::vector<std::uint64_t> gens;
        if (list.empty()) {
            for (const auto& [p, g] : tracker.unfenced()) {
                parts.push_back({p.topic, p.partition, 0});
                gens.push_back(g);
            }
        } else {
            for (const auto& p : list) {
                parts.push_back({p.topic, p.partition, 0});
                gens.push_back(tracker.generation(p));
            }
        }
        if (parts.empty()) return true;
        try {
            auto conn = connect_pg();
            pqxx::work tx{*conn};
            fence->acquire(tx, o.instance_id, parts);
            tx.commit();
        } catch (const std::exception& e) {
            spdlog::warn("event=partition_fence_failed group={} count={} error=\"{}\"", o.group,
                         parts.size(), e.what());
            return false;
        }
        for (std::size_t i = 0; i < parts.size(); ++i) {
            tracker.set_fence({parts[i].topic, parts[i].partition}, gens[i], parts[i].epoch);
        }
        return true;
    }

    void on_rebalance(rd_kafka_t* rk_, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t* parts) {
        ++m_rebalances;
        // The protocol is read at assignment time and kept: rd_kafka_rebalance_protocol() can
        // block when called from the revoke callback of rd_kafka_consumer_close()
        // (librdkafka #4041), and it returns NULL while the consumer is closing.
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS || cooperative_protocol < 0) {
            const char* protocol = rd_kafka_rebalance_protocol(rk_);
            if (protocol != nullptr) {
                cooperative_protocol = std::string_view(protocol) == "COOPERATIVE" ? 1 : 0;
            }
        }
        const bool cooperative = cooperative_protocol == 1;
        std::vector<detail::tp> list;
        list.reserve(static_cast<std::size_t>(parts->cnt));
        for (int i = 0; i < parts->cnt; ++i) {
            list.push_back({parts->elems[i].topic, parts->elems[i].partition});
        }
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
            tracker.assign(list);
            // Ownership first, then the blocked keys: every retry record of a previous owner
            // either committed before our acquire (and the load sees it) or is refused.
            acquire_fences(list);
            load_blocked_keys();
            if (cooperative) {
                if (auto* e = rd_kafka_incremental_assign(rk_, parts)) rd_kafka_error_destroy(e);
            } else {
                rd_kafka_assign(rk_, parts);
            }
            // Over the memory budget: partitions assigned now start paused as well.
            if (paused) rd_kafka_pause_partitions(rk_, parts);
            m_assigned = tracker.size();
            spdlog::info("event=partitions_assigned group={} instance={} count={}", o.group,
                         o.instance_id, list.size());
            return;
        }
        // Revoked (or lost): queued work of these partitions is abandoned at once (lanes skip
        // items whose generation is stale); running work gets revoke_timeout to finish.
        const bool lost = rd_kafka_assignment_lost(rk_) != 0;
        tracker.revoke_begin(list);
        const bool drained = tracker.wait_idle(list, o.revoke_timeout);
        // Asynchronous, and before the unassign: with librdkafka 2.0.2 a synchronous commit
        // that fails here with UNKNOWN_MEMBER_ID (the member was dropped from the group while
        // the revoke drained) marks the assignment lost, and the unassign that follows then
        // never returns (fixed upstream in 2.1.0 and 2.10, see docs/adr/0022). The commit is
        // an optimisation: a position it fails to store is replayed and absorbed by dedup.
        if (!lost) commit(list, /*all=*/true);
        tracker.remove(list);
        if (cooperative) {
            if (auto* e = rd_kafka_incremental_unassign(rk_, parts)) rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk_, nullptr);
        }
        m_assigned = tracker.size();
        spdlog::info("event=partitions_revoked group={} instance={} count={} drained={} lost={}",
                     o.group, o.instance_id, list.size(), drained, lost);
    }

    // Commits, asynchronously, the commit position of `only` (or every tracked partition when
    // empty): the positions that moved, or with `all` every known one (at revoke, since an
    // earlier commit may have failed unseen, e.g. during a rebalance). Never synchronous: see
    // on_rebalance and ADR 0022.
    void commit(const std::vector<detail::tp>& only, bool all) {
        auto positions = tracker.commit_positions(only, all);
        std::erase_if(positions, [](const detail::position& p) { return p.offset < 0; });
        if (positions.empty()) return;
        auto* list = rd_kafka_topic_partition_list_new(static_cast<int>(positions.size()));
        for (const auto& p : positions) {
            rd_kafka_topic_partition_list_add(list, p.topic.c_str(), p.partition)->offset =
                p.offset;
        }
        const auto err = rd_kafka_commit(rk, list, /*async=*/1);
        rd_kafka_topic_partition_list_destroy(list);
        ++m_commits;
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            spdlog::warn("event=commit_failed group={} error=\"{}\"", o.group,
                         rd_kafka_err2str(err));
        }
        tracker.committed(positions);
    }

    void update_lag() {
        std::int64_t lag = 0;
        std::vector<partition_lag> per_partition;
        for (const auto& p : tracker.commit_positions({}, /*all=*/true)) {
            int64_t lo = 0, hi = 0;
            if (rd_kafka_get_watermark_offsets(rk, p.topic.c_str(), p.partition, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR) {
                continue;
            }
            const auto from = p.offset >= 0 ? p.offset : lo;
            const auto behind = hi > from ? hi - from : 0;
            lag += behind;
            per_partition.push_back(partition_lag{p.topic, p.partition, behind});
        }
        m_lag = lag;
        std::lock_guard lock(lag_mutex);
        m_partition_lags = std::move(per_partition);
    }

    void set_paused(bool pause) {
        if (paused == pause) return;
        rd_kafka_topic_partition_list_t* parts = nullptr;
        if (rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || parts == nullptr)
            return;
        if (pause) {
            ++m_pauses;
            rd_kafka_pause_partitions(rk, parts);
        } else {
            // Pausing drops librdkafka's prefetched records. Resume from the next record this
            // runtime has not taken (seek), rather than from wherever librdkafka's fetcher
            // stood: the runtime's own bookkeeping decides, so no record can be skipped and
            // the commit position can never move over one.
            const auto next = tracker.next_offsets();
            if (!next.empty()) {
                auto* list = rd_kafka_topic_partition_list_new(static_cast<int>(next.size()));
                for (const auto& p : next) {
                    rd_kafka_topic_partition_list_add(list, p.topic.c_str(), p.partition)->offset =
                        p.offset;
                }
                if (auto* e = rd_kafka_seek_partitions(rk, list, 10000)) {
                    spdlog::warn("event=seek_failed group={} error=\"{}\"", o.group,
                                 rd_kafka_error_string(e));
                    rd_kafka_error_destroy(e);
                }
                for (int i = 0; i < list->cnt; ++i) {
                    if (list->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                        spdlog::warn(
                            "event=seek_failed group={} topic={} partition={} error=\"{}\"",
                            o.group, list->elems[i].topic, list->elems[i].partition,
                            rd_kafka_err2str(list->elems[i].err));
                    }
                }
                rd_kafka_topic_partition_list_destroy(list);
            }
            rd_kafka_resume_partitions(rk, parts);
        }
        rd_kafka_topic_partition_list_destroy(parts);
        paused = pause;
    }

    work_item make_item(const rd_kafka_message_t* km) {
        work_item w;
        w.msg.topic = rd_kafka_topic_name(km->rkt);
        w.msg.partition = km->partition;
        w.msg.offset = km->offset;
        if (km->key != nullptr)
            w.msg.key = std::string(static_cast<const char*>(km->key), km->key_len);
        if (km->payload != nullptr) {
            w.msg.payload.assign(static_cast<const char*>(km->payload), km->len);
        }
        w.bytes = w.msg.payload.size() + (w.msg.key ? w.msg.key->size() : 0);
        rd_kafka_headers_t* hdrs = nullptr;
        std::vector<detail::raw_header> raw;
        if (rd_kafka_message_headers(km, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs != nullptr) {
            const char* name = nullptr;
            const void* val = nullptr;
            size_t size = 0;
            raw.reserve(rd_kafka_header_cnt(hdrs));
            for (size_t i = 0;
                 rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
                 ++i) {
                raw.push_back({name, static_cast<const char*>(val), size});
            }
        }
        auto env = detail::parse_envelope(raw, {o.max_headers, o.max_header_bytes});
        w.msg.headers = std::move(env.headers);
        w.msg.message_id = std::move(env.message_id);
        w.bytes += env.header_bytes;
        auto it = topics.find(w.msg.topic);
        w.entry = it == topics.end() ? nullptr : &it->second;
        if (!env.malformed.empty()) {
            // Hostile or foreign input: a dead letter with the reason, never dropped or trimmed.
            w.malformed = std::move(env.malformed);
            w.malformed_code = std::move(env.malformed_code);
            if (w.malformed_code == "consumer.header_limit") ++m_header_limit;
        }
        return w;
    }

    std::size_t lane_of(const work_item& w) const {
        std::size_t h;
        if (w.msg.key) {
            h = std::hash<std::string>{}(w.msg.topic + '\0' + *w.msg.key);
        } else {
            h = std::hash<std::string>{}(w.msg.topic) ^ static_cast<std::size_t>(w.msg.partition);
        }
        return h % lanes.size();
    }

    // Hands a polled batch to the lanes. Redis claims are not taken here: each lane claims its
    // own run, pipelined with the "done" marks of the run before (claim_run), so the poll thread
    // never waits for Redis and the lanes' round trips overlap.
    void dispatch(std::vector<work_item>& batch) {
        for (auto& w : batch) {
            const auto l = lane_of(w);
            auto& ln = *lanes[l];
            const auto bytes = w.bytes;
            {
                std::lock_guard lock(ln.mutex);
                ln.queue.push_back(std::move(w));
                ln.depth = ln.queue.size();
            }
            ++queued_total;
            const auto now_bytes = queued_bytes += bytes;
            auto peak = queued_bytes_peak.load();
            while (now_bytes > peak && !queued_bytes_peak.compare_exchange_weak(peak, now_bytes)) {
            }
            ln.cv.notify_one();
        }
        batch.clear();
    }

    // How long the queue may stay full before every partition is paused (see poll_loop): the
    // longest a rebalance callback waits while the lanes are behind.
    static constexpr ms pause_grace{500};

    void poll_loop() {
        auto last_commit = clock_type::now();
        auto last_lag = clock_type::now();
        auto last_fence = clock_type::now();
        std::vector<work_item> batch;
        std::size_t batch_bytes = 0;
        // Room for more records: counts and bytes queued, plus this poll's batch.
        auto room = [&] {
            return batch.size() < o.max_batch && queued_total + batch.size() < o.max_queued &&
                   queued_bytes + batch_bytes < o.max_queued_bytes;
        };
        std::optional<clock_type::time_point> full_since;
        while (!stopping) {
            const bool full = queued_total >= o.max_queued || queued_bytes >= o.max_queued_bytes;
            rd_kafka_message_t* km = nullptr;
            if (full) {
                // The lanes are behind: take no records. librdkafka's prefetch (capped to a
                // quarter of the byte budget) waits in its own queue and is taken the moment
                // there is room, so lanes that keep up never starve. Only lanes that stay
                // behind for pause_grace (a stalled handler) get the partitions paused, so that
                // rebalance callbacks, which arrive through poll, are served again. Pausing
                // drops the prefetch, and fetching again after the resume left the lanes idle
                // for about a second per pause (LanesThatKeepUpNeverPause...).
                const auto now = clock_type::now();
                if (!full_since) full_since = now;
                if (!paused && now - *full_since >= pause_grace) set_paused(true);
                if (paused) {
                    km = rd_kafka_consumer_poll(rk, static_cast<int>(o.poll_timeout.count()));
                } else {
                    std::this_thread::sleep_for(1ms);
                }
            } else {
                full_since.reset();
                if (paused && queued_total < o.max_queued / 2 &&
                    queued_bytes < o.max_queued_bytes / 2) {
                    set_paused(false);
                }
                km = rd_kafka_consumer_poll(rk, static_cast<int>(o.poll_timeout.count()));
            }
            while (km != nullptr) {
                if (km->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                    if (km->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        spdlog::warn("event=consume_error group={} error=\"{}\"", o.group,
                                     rd_kafka_message_errstr(km));
                    }
                } else {
                    const detail::tp t{rd_kafka_topic_name(km->rkt), km->partition};
                    const auto gen = tracker.dispatch(t, km->offset);
                    if (gen != 0) {
                        auto w = make_item(km);
                        w.generation = gen;
                        batch_bytes += w.bytes;
                        batch.push_back(std::move(w));
                        ++m_consumed;
                    }
                }
                rd_kafka_message_destroy(km);
                km = room() ? rd_kafka_consumer_poll(rk, 0) : nullptr;
            }
            if (!batch.empty()) dispatch(batch);
            batch_bytes = 0;
            const auto now = clock_type::now();
            if (now - last_fence >= 1s) {
                // Partitions whose ownership could not be taken at assignment: try again, then
                // reload the blocked keys (only records committed before it are trusted).
                if (!tracker.unfenced().empty() && acquire_fences({})) load_blocked_keys();
                last_fence = now;
            }
            if (now - last_commit >= o.commit_interval) {
                commit({}, /*all=*/false);
                last_commit = now;
            }
            if (now - last_lag >= 1s) {
                update_lag();
                last_lag = now;
            }
        }
        // Graceful stop: let the lanes drain, commit what is complete, leave the group.
        const auto deadline = clock_type::now() + o.shutdown_timeout;
        while (clock_type::now() < deadline && (queued_total > 0 || tracker.running() > 0)) {
            std::this_thread::sleep_for(5ms);
        }
        abandon_all = true;
        tracker.wait_idle({}, 2s);
        // The revoke callback commits every position (asynchronously: see on_rebalance) and
        // unassigns; close waits for outstanding commits before it leaves the group.
        rd_kafka_consumer_close(rk);
    }

    // ---------------------------------------------------------------------------- lanes

    pqxx::connection& lane_conn(std::unique_ptr<pqxx::connection>& conn) {
        if (!conn || !conn->is_open()) conn = connect_pg();
        return *conn;
    }

    bool still_mine(const work_item& w) const {
        return !abandon_all && tracker.current({w.msg.topic, w.msg.partition}, w.generation);
    }

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

    // One handler call with its transaction (and inbox row / retry-row delete).
    attempt_outcome attempt(std::unique_ptr<pqxx::connection>& conn, const topic_entry& e,
                            const message& m, std::optional<long long> retry_row_id) {
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
    static attempt_outcome failed_outcome() {
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

    static detail::failure classify(const attempt_outcome& r) {
        if (r.result == attempt_result::in_progress) return detail::failure::in_progress;
        return r.kind == error_kind::permanent ? detail::failure::permanent
                                               : detail::failure::retryable;
    }

    void publish_dead_letter(const message& m, const std::string& reason) {
        if (dlq_producer == nullptr) return;
        rd_kafka_headers_t* h = rd_kafka_headers_new(m.headers.size() + 1);
        for (const auto& x : m.headers) {
            rd_kafka_header_add(h, x.name.c_str(), -1, x.value ? x.value->data() : nullptr,
                                x.value ? static_cast<ssize_t>(x.value->size()) : 0);
        }
        rd_kafka_header_add(h, "ferry-dlq-reason", -1, reason.data(),
                            static_cast<ssize_t>(reason.size()));
        std::lock_guard lock(dlq_mutex);
        void* key_ptr = m.key ? const_cast<char*>(m.key->data()) : nullptr;
        const std::size_t key_len = m.key ? m.key->size() : 0;
        const auto err = rd_kafka_producev(
            dlq_producer, RD_KAFKA_V_TOPIC(o.dead_letter_topic.c_str()),
            RD_KAFKA_V_KEY(key_ptr, key_len),
            RD_KAFKA_V_VALUE(const_cast<char*>(m.payload.data()), m.payload.size()),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_headers_destroy(h);
            spdlog::warn("event=dlq_publish_failed topic={} error=\"{}\"", o.dead_letter_topic,
                         rd_kafka_err2str(err));
        }
        rd_kafka_poll(dlq_producer, 0);
    }

    void mark_blocked(const message& m, bool ordered) {
        if (!ordered || !m.key) return;
        std::lock_guard lock(blocked_mutex);
        blocked.emplace(m.topic, *m.key);
    }

    bool maybe_blocked(const message& m, bool ordered) {
        if (!ordered || !m.key) return false;
        if (!blocked_loaded) return true;
        std::lock_guard lock(blocked_mutex);
        return blocked.count({m.topic, *m.key}) > 0;
    }

    void release_claim(const std::optional<dedup::claim>& c) {
        if (!redis || !c || c->token.empty()) return;
        try {
            (void)redis->release(*c);
        } catch (const ferry::error&) {
            ++m_redis_errors;  // the lease expires by itself
        }
    }

    // Claims in Redis, in one round trip, `first` and the next items of `local` that still need
    // a claim (up to claim_ahead in all), after writing the lane's pending "done" marks in the
    // same pipeline (so a duplicate of a message this lane just applied sees "done"). On a Redis
    // error the items are marked claim_failed (process_live and batchable decide: the inbox
    // alone, or wait) and the marks are given up as in flush_completes.
    void claim_run(lane& ln, work_item& first, std::deque<work_item>& local) {
        constexpr std::size_t claim_ahead = 512;
        std::vector<work_item*> items{&first};
        for (auto& w : local) {
            if (items.size() >= claim_ahead) break;
            if (needs_claim(w)) items.push_back(&w);
        }
        std::vector<std::string> ids;
        ids.reserve(items.size());
        for (const auto* w : items) ids.push_back(w->msg.message_id);
        if (!ln.pending_claims.empty()) fault_point("redis_after_effect_before_done");
        try {
            auto r = redis->complete_and_claim(ln.pending_claims, o.group, ids, o.lease);
            for (std::size_t i = 0; i < items.size(); ++i) items[i]->claim = std::move(r.claims[i]);
        } catch (const ferry::error& e) {
            ++m_redis_errors;
            for (auto* w : items) w->claim_failed = true;
            spdlog::warn("event=redis_claim_failed group={} batch={} done_marks={} error=\"{}\"",
                         o.group, ids.size(), ln.pending_claims.size(), e.what());
        }
        ln.pending_claims.clear();
        for (auto& w : ln.pending_items) finish(w, true);
        ln.pending_items.clear();
    }

    bool needs_claim(const work_item& w) const {
        return redis && w.malformed.empty() && w.entry != nullptr && !w.claim && !w.claim_failed;
    }

    void flush_completes(lane& ln) {
        if (!ln.pending_claims.empty()) {
            // Redis-only crash window: these effects are applied, their "done" marks are not.
            fault_point("redis_after_effect_before_done");
            try {
                (void)redis->complete_batch(ln.pending_claims);
            } catch (const ferry::error& e) {
                // The effects are durable; only the fast filter misses them. With the inbox on,
                // the inbox still absorbs a redelivery.
                ++m_redis_errors;
                spdlog::warn("event=redis_complete_failed group={} count={} error=\"{}\"", o.group,
                             ln.pending_claims.size(), e.what());
            }
            ln.pending_claims.clear();
        }
        for (auto& w : ln.pending_items) finish(w, true);
        ln.pending_items.clear();
    }

    void finish(const work_item& w, bool complete) {
        tracker.finish({w.msg.topic, w.msg.partition}, w.generation, w.msg.offset, complete);
    }

    // Redis claim for a live message that could not use the batch claim. Returns the claim, or
    // nullopt when processing should go ahead without one (inbox on, Redis down).
    // `abandon` is set when the work was abandoned while waiting.
    std::optional<dedup::claim> reclaim(lane& ln, const work_item& w, bool& abandon) {
        ms backoff = 50ms;
        flush_completes(ln);  // a duplicate of a message this lane just applied must see "done"
        while (true) {
            try {
                auto c = redis->try_claim(o.group, w.msg.message_id, o.lease);
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
            flush_completes(ln);
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
    void process_live(lane& ln, work_item& w,
                      const std::optional<attempt_outcome>& first = std::nullopt) {
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
            const auto wr = fenced_write(ln, w, "park", [&](pqxx::work& tx) {
                parked = retries->park_if_blocked(tx, stored);
            });
            if (wr != record_write::written) {
                release_claim(w.claim);
                return finish(w, false);
            }
            if (parked) {
                ++m_parked;
                release_claim(w.claim);
                retry_cv.notify_all();
                return finish(w, true);
            }
            std::lock_guard lock(blocked_mutex);
            blocked.erase({w.msg.topic, *w.msg.key});
        }
        // Redis filter.
        std::optional<dedup::claim> claim;
        if (redis) {
            if (w.claim_failed ||
                (w.claim && w.claim->status == dedup::claim_status::in_progress)) {
                bool abandon = false;
                claim = reclaim(ln, w, abandon);
                if (abandon) return finish(w, false);
            } else {
                claim = w.claim;
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
                    ln.pending_claims.push_back(*claim);
                    ln.pending_items.push_back(std::move(w));
                    if (ln.pending_claims.size() >= 1024) flush_completes(ln);
                    return;
                }
                return finish(w, true);
            }
            const auto f = (!still_mine(w) || lanes_exit) ? detail::failure::revoked : classify(r);
            const auto rt = detail::route_failure(o.retry, detail::path::live, f, n, r.error,
                                                  retry::jitter_source());
            if (rt.action == detail::route::abandon) {
                ++m_abandoned;
                release_claim(claim);
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
                release_claim(claim);
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
            release_claim(claim);
            if (wr != record_write::written) return finish(w, false);
            mark_blocked(w.msg, ordered);
            ++m_dead;
            spdlog::warn(
                "event=dead_letter group={} topic={} message_id={} attempts={} reason=\"{}\"",
                o.group, w.msg.topic, w.msg.message_id, n, reason);
            publish_dead_letter(w.msg, reason);
            return finish(w, true);
        }
    }

    // Takes everything queued at once (a polled batch spreads over the lanes), processes it in
    // order, and completes the Redis claims of the whole run in one pipelined round trip.
    void lane_loop(lane& ln) {
        std::deque<work_item> local;
        std::vector<work_item> batch;
        while (true) {
            {
                std::unique_lock lock(ln.mutex);
                if (ln.queue.empty() && !ln.pending_items.empty()) {
                    lock.unlock();
                    flush_completes(ln);
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
            flush_completes(ln);
        }
        flush_completes(ln);
    }

    // ---------------------------------------------------------------------------- batches

    // Can `w` join a batched effect transaction? Only the plain success path is batched:
    // everything that needs a decision of its own (malformed, parked behind its key, Redis
    // claim not fresh, plain handler) runs alone, after the batch before it has committed.
    bool batchable(const work_item& w) {
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
    void run_batch(lane& ln, std::vector<work_item>& batch) {
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
                    for (std::size_t i = 0; i < n; ++i)
                        ids.push_back(batch[next + i].msg.message_id);
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
                    ln.pending_claims.push_back(*w.claim);
                    ln.pending_items.push_back(std::move(w));
                } else {
                    finish(w, true);
                }
            }
            if (ln.pending_claims.size() >= 1024) flush_completes(ln);
            next += ran;
        }
        batch.clear();
    }

    void batch_failed(lane& ln, std::size_t n, const char* why) {
        if (ln.conn && !ln.conn->is_open()) ln.conn.reset();
        ++m_batch_fallbacks;
        spdlog::info(
            "event=batch_fallback group={} size={} action=one_transaction_per_message "
            "error=\"{}\"",
            o.group, n, why);
    }

    // ---------------------------------------------------------------------------- retry worker

    // Returns true when the row's message was applied or absorbed (and the row removed).
    bool process_retry_row(std::unique_ptr<pqxx::connection>& conn, retry::retry_row& row) {
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
        const auto f =
            r.result == attempt_result::lost_claim ? detail::failure::revoked : classify(r);
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
            moved =
                retries->move_to_dead_letter(tx, row.id, o.instance_id, n, reason, r.code, ordered);
            tx.commit();
        });
        if (moved) {
            ++m_dead;
            spdlog::warn(
                "event=dead_letter group={} topic={} message_id={} attempts={} reason=\"{}\"",
                o.group, m.topic, m.message_id, n, reason);
            publish_dead_letter(m, reason);
        }
        return false;
    }

    // Inbox retention: deletes rows older than inbox_retention in batches, repeating while a
    // batch comes back full, then sleeps inbox_prune_interval. Safe with many instances (each
    // batch is its own short transaction; concurrent deletes of one row are no-ops).
    void prune_loop() {
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
    void retry_loop() {
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
                        head = retries->claim_key_head(tx, o.instance_id, topic, key,
                                                       o.retry_claim_ttl);
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

    metrics_snapshot snapshot() const {
        metrics_snapshot s;
        s.consumed = m_consumed;
        s.processed = m_processed;
        s.duplicates_absorbed = m_duplicates;
        s.retries = m_retries;
        s.retry_scheduled = m_retry_scheduled;
        s.retry_chained = m_retry_chained;
        s.parked_behind_key = m_parked;
        s.dead_letters = m_dead;
        s.malformed = m_malformed;
        s.redis_errors = m_redis_errors;
        s.commits = m_commits;
        s.rebalances = m_rebalances;
        s.lag = m_lag;
        s.assigned_partitions = m_assigned;
        s.queued_bytes = queued_bytes;
        s.queued_bytes_peak = queued_bytes_peak;
        s.fenced_writes = m_fenced;
        s.header_limit = m_header_limit;
        s.abandoned = m_abandoned;
        s.inbox_pruned = m_inbox_pruned;
        s.pauses = m_pauses;
        s.batches = m_batches;
        s.batched_messages = m_batched_messages;
        s.batch_fallbacks = m_batch_fallbacks;
        s.last_batch_size = m_last_batch;
        for (const auto& l : lanes) s.lane_queue_depth.push_back(l->depth);
        {
            std::lock_guard lock(lag_mutex);
            s.partition_lags = m_partition_lags;
        }
        return s;
    }
};

// ---------------------------------------------------------------------------------------------

consumer::consumer(consumer_options options) : _impl(std::make_unique<impl>(std::move(options))) {}

consumer::~consumer() {
    try {
        stop();
    } catch (const std::exception& e) {
        spdlog::error("event=consumer_stop_failed error=\"{}\"", e.what());
    }
}

void consumer::subscribe(std::string topic, handler h, topic_options options) {
    if (_impl->started) bad_option("topics", "subscribe() before start()");
    auto& e = _impl->topics[std::move(topic)];
    e.plain = std::move(h);
    e.tx = nullptr;
    e.options = options;
}

void consumer::subscribe(std::string topic, tx_handler h, topic_options options) {
    if (_impl->started) bad_option("topics", "subscribe() before start()");
    auto& e = _impl->topics[std::move(topic)];
    e.tx = std::move(h);
    e.plain = nullptr;
    e.options = options;
}

void consumer::start() { _impl->start(); }
void consumer::stop() { _impl->stop(); }
metrics_snapshot consumer::metrics() const { return _impl->snapshot(); }
const std::string& consumer::instance_id() const { return _impl->o.instance_id; }
const consumer_options& consumer::options() const { return _impl->o; }
bool consumer::running() const { return _impl->started && !_impl->stopping; }

std::string consumer::render_prometheus() const {
    const auto s = metrics();
    const auto& g = _impl->o.group;
    std::ostringstream out;
    auto counter = [&](const char* name, const char* help, std::uint64_t v) {
        out << "# HELP ferry_consumer_" << name << " " << help << "\n# TYPE ferry_consumer_" << name
            << " counter\nferry_consumer_" << name << "{group=\"" << g << "\"} " << v << "\n";
    };
    auto gauge = [&](const char* name, const char* help, long long v) {
        out << "# HELP ferry_consumer_" << name << " " << help << "\n# TYPE ferry_consumer_" << name
            << " gauge\nferry_consumer_" << name << "{group=\"" << g << "\"} " << v << "\n";
    };
    counter("consumed_total", "Records polled from Kafka.", s.consumed);
    counter("processed_total", "Effects applied.", s.processed);
    counter("duplicates_absorbed_total", "Duplicates absorbed by Redis or the inbox.",
            s.duplicates_absorbed);
    counter("retries_total", "Failed attempts that will be tried again.", s.retries);
    counter("retry_scheduled_total", "Messages written to the retry table.", s.retry_scheduled);
    counter("retry_chained_total",
            "Retry rows claimed right after the previous row of their key was applied.",
            s.retry_chained);
    counter("parked_behind_key_total", "Messages that waited behind an earlier one of their key.",
            s.parked_behind_key);
    counter("dead_letters_total", "Messages moved to dead letters.", s.dead_letters);
    counter("malformed_total", "Records without a valid ferry-message-id.", s.malformed);
    counter("redis_errors_total", "Redis calls that failed.", s.redis_errors);
    counter("commits_total", "Offset commits sent.", s.commits);
    counter("rebalances_total", "Rebalance callbacks.", s.rebalances);
    counter("fenced_writes_total",
            "Retry/dead-letter writes refused because the partition moved to another owner.",
            s.fenced_writes);
    counter("header_limit_total", "Records dead-lettered for too many or too large headers.",
            s.header_limit);
    counter("abandoned_total",
            "Failed attempts left unrouted because the partition moved or the consumer stopped.",
            s.abandoned);
    counter("inbox_pruned_total", "Inbox rows deleted by the retention job.", s.inbox_pruned);
    counter("pauses_total", "Times the partitions were paused because the lanes stayed behind.",
            s.pauses);
    counter("batches_total", "Batched effect transactions committed.", s.batches);
    counter("batched_messages_total", "Messages applied or absorbed in batched transactions.",
            s.batched_messages);
    counter("batch_fallbacks_total",
            "Batches rolled back and run one transaction per message (a failure inside).",
            s.batch_fallbacks);
    gauge("batch_size", "Messages in the last batched transaction.",
          static_cast<long long>(s.last_batch_size));
    gauge("queued_bytes", "Bytes of polled records queued for the lanes.",
          static_cast<long long>(s.queued_bytes));
    gauge("lag", "High watermark minus commit position, summed over assigned partitions.", s.lag);
    gauge("assigned_partitions", "Partitions assigned to this instance.",
          static_cast<long long>(s.assigned_partitions));
    out << "# HELP ferry_consumer_lane_queue_depth Messages queued per lane.\n"
           "# TYPE ferry_consumer_lane_queue_depth gauge\n";
    for (std::size_t i = 0; i < s.lane_queue_depth.size(); ++i) {
        out << "ferry_consumer_lane_queue_depth{group=\"" << g << "\",lane=\"" << i << "\"} "
            << s.lane_queue_depth[i] << "\n";
    }
    return out.str();
}

}  // namespace ferry::consumer
