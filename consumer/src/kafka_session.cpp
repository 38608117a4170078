// The librdkafka session of the consumer runtime: configuration, the poll thread (records to
// lanes, room and pausing), rebalance with partition fencing and blocked keys, offset commits
// (never past unfinished work: offset_tracker.hpp) and lag.
#include "runtime.hpp"

namespace ferry::consumer {

rd_kafka_conf_t* consumer::impl::make_conf(bool consumer_conf) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char err[512];
    auto set = [&](const std::string& k, const std::string& v) {
        if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
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

void consumer::impl::rebalance_trampoline(rd_kafka_t* rk_, rd_kafka_resp_err_t err,
                                          rd_kafka_topic_partition_list_t* parts, void* opaque) {
    static_cast<impl*>(opaque)->on_rebalance(rk_, err, parts);
}

void consumer::impl::load_blocked_keys() {
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
bool consumer::impl::acquire_fences(const std::vector<detail::tp>& list) {
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

void consumer::impl::on_rebalance(rd_kafka_t* rk_, rd_kafka_resp_err_t err,
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
void consumer::impl::commit(const std::vector<detail::tp>& only, bool all) {
    auto positions = tracker.commit_positions(only, all);
    std::erase_if(positions, [](const detail::position& p) { return p.offset < 0; });
    if (positions.empty()) return;
    auto* list = rd_kafka_topic_partition_list_new(static_cast<int>(positions.size()));
    for (const auto& p : positions) {
        rd_kafka_topic_partition_list_add(list, p.topic.c_str(), p.partition)->offset = p.offset;
    }
    const auto err = rd_kafka_commit(rk, list, /*async=*/1);
    rd_kafka_topic_partition_list_destroy(list);
    ++m_commits;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        spdlog::warn("event=commit_failed group={} error=\"{}\"", o.group, rd_kafka_err2str(err));
    }
    tracker.committed(positions);
}

void consumer::impl::update_lag() {
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

void consumer::impl::set_paused(bool pause) {
    if (paused == pause) return;
    rd_kafka_topic_partition_list_t* parts = nullptr;
    if (rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || parts == nullptr) return;
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
                    spdlog::warn("event=seek_failed group={} topic={} partition={} error=\"{}\"",
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

consumer::impl::work_item consumer::impl::make_item(const rd_kafka_message_t* km) {
    work_item w;
    w.msg.topic = rd_kafka_topic_name(km->rkt);
    w.msg.partition = km->partition;
    w.msg.offset = km->offset;
    if (km->key != nullptr) w.msg.key = std::string(static_cast<const char*>(km->key), km->key_len);
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
        if (env.problem == detail::envelope_problem::header_limit) ++m_header_limit;
    }
    return w;
}

std::size_t consumer::impl::lane_of(const work_item& w) const {
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
void consumer::impl::dispatch(std::vector<work_item>& batch) {
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

void consumer::impl::poll_loop() {
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

}  // namespace ferry::consumer
