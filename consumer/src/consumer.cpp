#include "runtime.hpp"

namespace ferry::consumer {

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

std::unique_ptr<pqxx::connection> consumer::impl::connect_pg() {
    try {
        return std::make_unique<pqxx::connection>(internal::with_connect_timeout(
            o.dsn, std::max<long>(1, static_cast<long>(o.connect_timeout.count() / 1000))));
    } catch (const std::exception& e) {
        throw ferry::error(error_kind::retryable, "consumer.connect",
                           std::string("cannot connect to PostgreSQL: ") + e.what(),
                           "postgres.dsn");
    }
}

void consumer::impl::validate() {
    if (o.group.empty()) bad_option("group", "must not be empty");
    if (o.brokers.empty()) bad_option("brokers", "must not be empty");
    if (o.dsn.empty()) bad_option("dsn", "the consumer database is required (retry, dead letters)");
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
                bad_option("dedup", "the inbox needs the effect in PostgreSQL: subscribe topic " +
                                        t + " with a tx_handler");
            }
        }
    }
}

void consumer::impl::start() {
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
            spdlog::warn("event=redis_unavailable at=start group={} action=inbox_only error=\"{}\"",
                         o.group, e.what());
        }
    }
    if (!o.dead_letter_topic.empty()) {
        char err[512];
        auto* conf = make_conf(false);
        auto* producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (producer == nullptr) bad_option("dead_letter_topic", err);
        dlq = std::make_unique<detail::dead_letter_publisher>(producer, o.dead_letter_topic);
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
    spdlog::info("event=consumer_started group={} instance={} dedup={} lanes={} topics={}", o.group,
                 o.instance_id, to_string(o.dedup), o.lanes, topics.size());
}

std::string consumer::impl::quote_schema() const {
    std::string q = "\"";
    for (char c : o.schema) {
        if (c == '"') q += '"';
        q += c;
    }
    return q + "\"";
}

void consumer::impl::stop() {
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
    spdlog::info("event=consumer_stopped group={} instance={} processed={} duplicates={}", o.group,
                 o.instance_id, m_processed.load(), m_duplicates.load());
}

metrics_snapshot consumer::impl::snapshot() const {
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
