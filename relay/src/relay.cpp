// The relay's two threads:
//  - the lease keeper: heartbeats relay_instance, renews held leases every lease_ttl / 3,
//    acquires free or expired groups up to its fair share, releases extras, refreshes the
//    outbox gauges and trims the published ledger;
//  - the publish worker: for each held group, claims visible rows in id order, produces them,
//    waits for every acknowledgement, then marks the batch in one fenced transaction.
// Each thread has its own PostgreSQL connection. They share the set of held leases (guarded by
// _mutex) and one mutex per group that the worker holds for a whole batch, so that a voluntary
// release never cuts a batch in half.

#include "ferry/relay/relay.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "batch_planner.hpp"
#include "ferry/common/error.hpp"
#include "ferry/common/metrics.hpp"
#include "ferry/common/redact.hpp"
#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/instance_id.hpp"
#include "ferry/internal/pg_array.hpp"
#include "ferry/internal/pq.hpp"
#include "headers.hpp"
#include "producer.hpp"

namespace ferry::relay {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;

std::string kafka_topic(const relay_options& options, const std::string& topic) {
    const auto it = options.topic_map.find(topic);
    return options.topic_prefix + (it == options.topic_map.end() ? topic : it->second);
}

std::string shard_array_literal(int group, int groups) {
    std::string out = "{";
    for (int s = group; s < 256; s += groups) {
        if (out.size() > 1) out += ',';
        out += std::to_string(s);
    }
    return out + "}";
}

namespace {

struct claimed_row {
    std::int64_t id = 0;
    std::string message_id;
    std::string topic;
    std::string key;
    std::string payload;
    std::string headers_json;
    std::string created_at_text;  // RFC 3339, UTC, milliseconds
    double created_at_epoch = 0;  // seconds
    bool expired = false;
};

struct held_lease {
    std::int64_t epoch = 0;
};

}  // namespace

class relay::impl {
public:
    impl(relay_options options, ferry::metrics::registry* metrics)
        : _o(std::move(options)), _metrics(ferry::metrics::or_process(metrics)) {
        if (_o.instance_id.empty()) _o.instance_id = internal::default_instance_id();
        _q = quote_identifier(_o.schema, "postgres.schema");
        auto& m = _metrics;
        _published = m.add_counter("ferry_relay_published_total",
                                   "Messages acknowledged by Kafka and marked published.");
        _errors_transient =
            m.add_counter("ferry_relay_publish_errors_total",
                          "Messages Kafka did not acknowledge, by kind.", {{"kind", "transient"}});
        _errors_permanent =
            m.add_counter("ferry_relay_publish_errors_total",
                          "Messages Kafka did not acknowledge, by kind.", {{"kind", "permanent"}});
        _errors_fatal =
            m.add_counter("ferry_relay_publish_errors_total",
                          "Messages Kafka did not acknowledge, by kind.", {{"kind", "fatal"}});
        _batch_size = m.add_histogram("ferry_relay_batch_size", "Rows claimed per non-empty batch.",
                                      {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000});
        _commit_to_ack = m.add_histogram(
            "ferry_relay_commit_to_ack_seconds",
            "Time from the outbox row's created_at to Kafka's acknowledgement.",
            {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300});
        _parked_total = m.add_counter("ferry_relay_parked_total",
                                      "Messages this relay moved to the parked table.");
        _parked_gauge = m.add_gauge("ferry_relay_parked", "Rows in the parked table.");
        _expired_total = m.add_counter("ferry_relay_expired_total",
                                       "Messages this relay moved to the expired table.");
        _expired_gauge = m.add_gauge("ferry_outbox_expired", "Rows in the expired table.");
        _pending = m.add_gauge("ferry_outbox_pending", "Rows in the outbox (not yet published).");
        _oldest = m.add_gauge("ferry_outbox_oldest_pending_age_seconds",
                              "Age of the oldest outbox row, by the database clock.");
        _dead_tuples = m.add_gauge("ferry_outbox_dead_tuples",
                                   "Dead tuples of the outbox table (pg_stat_user_tables).");
        _groups_held =
            m.add_gauge("ferry_relay_lease_groups_held", "Lease groups this instance holds.");
        _fenced = m.add_counter("ferry_relay_fenced_total",
                                "Batches whose mark was refused because the lease was lost.");
        _pg_reconnects = m.add_counter("ferry_relay_pg_reconnects_total",
                                       "PostgreSQL reconnections after a lost connection.");
        _producer_restarts =
            m.add_counter("ferry_relay_producer_restarts_total",
                          "Kafka producers recreated after a fatal error or an abandoned batch.");
        _invalid_headers = m.add_counter(
            "ferry_relay_invalid_headers_total",
            "Rows parked because their headers could not be decoded (never published).");
        _held_after_failure = m.add_counter(
            "ferry_relay_held_after_failure_total",
            "Acknowledged messages left unmarked because an earlier message of their key failed "
            "in the same batch (republished after it).");
    }

    ~impl() { stop(); }

    void start() {
        if (_o.lease_groups < 1 || _o.lease_groups > 256) {
            throw ferry::error(error_kind::permanent, "relay.options",
                               "relay.lease_groups must be 1..256", "relay.lease_groups");
        }
        if (_o.batch_size < 1) {
            throw ferry::error(error_kind::permanent, "relay.options",
                               "relay.batch_size must be positive", "relay.batch_size");
        }
        if (_o.poll_min > _o.poll_max) _o.poll_min = _o.poll_max;
        for (int g = 0; g < _o.lease_groups; ++g) {
            _group_mutex.push_back(std::make_unique<std::mutex>());
            _epoch_gauge.push_back(_metrics.add_gauge(
                "ferry_relay_epoch", "Epoch of each lease group this instance acquired.",
                {{"group", std::to_string(g)}}));
        }
        spdlog::info(
            "event=relay_start instance={} schema={} dsn={} brokers={} lease_groups={} "
            "lease_ttl_ms={} batch_size={}",
            _o.instance_id, _o.schema, redact_dsn(_o.dsn), _o.brokers, _o.lease_groups,
            _o.lease_ttl.count(), _o.batch_size);
        // An invalid kafka.properties entry is a configuration error: fail here, not in a loop.
        _first_producer = std::make_unique<detail::producer>(_o);
        _lease_thread = std::thread([this] { lease_loop(); });
        _worker_thread = std::thread([this] { worker_loop(); });
        _maintenance_thread = std::thread([this] { maintenance_loop(); });
    }

    void stop() {
        {
            std::lock_guard lock(_mutex);
            if (_stopping) {
                // Already stopped or stopping: only join below.
            } else {
                _stopping = true;
                _stop_deadline = clock::now() + _o.shutdown_timeout;
            }
        }
        _cv.notify_all();
        if (_worker_thread.joinable()) _worker_thread.join();
        {
            std::lock_guard lock(_mutex);
            _worker_done = true;
        }
        _cv.notify_all();
        if (_lease_thread.joinable()) _lease_thread.join();
        if (_maintenance_thread.joinable()) _maintenance_thread.join();
    }

    bool ready() const {
        std::lock_guard lock(_mutex);
        return _pg_ok && !_stopping;
    }
    int groups_held() const {
        std::lock_guard lock(_mutex);
        return static_cast<int>(_held.size());
    }

    relay_options _o;
    ferry::metrics::registry& _metrics;
    std::string _q;  // quoted schema

    std::optional<ferry::metrics::counter> _published;
    std::optional<ferry::metrics::counter> _errors_transient;
    std::optional<ferry::metrics::counter> _errors_permanent;
    std::optional<ferry::metrics::counter> _errors_fatal;
    std::optional<ferry::metrics::histogram> _batch_size;
    std::optional<ferry::metrics::histogram> _commit_to_ack;
    std::optional<ferry::metrics::counter> _parked_total;
    std::optional<ferry::metrics::gauge> _parked_gauge;
    std::optional<ferry::metrics::counter> _expired_total;
    std::optional<ferry::metrics::gauge> _expired_gauge;
    std::optional<ferry::metrics::gauge> _pending;
    std::optional<ferry::metrics::gauge> _oldest;
    std::optional<ferry::metrics::gauge> _dead_tuples;
    std::optional<ferry::metrics::gauge> _groups_held;
    std::optional<ferry::metrics::counter> _fenced;
    std::optional<ferry::metrics::counter> _pg_reconnects;
    std::optional<ferry::metrics::counter> _producer_restarts;
    std::optional<ferry::metrics::counter> _invalid_headers;
    std::optional<ferry::metrics::counter> _held_after_failure;
    std::vector<ferry::metrics::gauge> _epoch_gauge;
    std::atomic<std::uint64_t> _batches{0};
    // This instance's totals for counts(): the registry may be shared by several relays (the
    // process registry), so its series are not per instance.
    std::atomic<std::uint64_t> _n_published{0}, _n_parked{0}, _n_expired{0}, _n_fenced{0};

    mutable std::mutex _mutex;
    std::condition_variable _cv;
    bool _stopping = false;
    bool _worker_done = false;
    clock::time_point _stop_deadline{};
    bool _pg_ok = false;
    std::map<int, held_lease> _held;
    std::set<int> _release_requested;  // groups the lease keeper wants to give up
    std::vector<std::unique_ptr<std::mutex>> _group_mutex;
    std::thread _lease_thread;
    std::thread _worker_thread;
    std::thread _maintenance_thread;
    std::unique_ptr<detail::producer> _first_producer;  // created by start(), moved to the worker
    clock::time_point _last_mismatch_log{};             // lease keeper only
    bool _inject_fatal = false;                         // worker only (fault point)

private:
    // ------------------------------------------------------------------------------------
    // helpers

    std::string ms_param(ms d) const { return std::to_string(d.count()); }

    // Sleeps up to `d`, waking early when stop() is called. Returns false when stopping.
    bool sleep_for(ms d) {
        std::unique_lock lock(_mutex);
        _cv.wait_for(lock, d, [this] { return _stopping; });
        return !_stopping;
    }

    bool stopping() const {
        std::lock_guard lock(_mutex);
        return _stopping;
    }

    // Every session: connect timeout, statement_timeout (no statement may hang a thread, and so
    // a graceful stop, indefinitely) and application_name, through the one helper in
    // common/internal. Failures are ferry::error(retryable, "relay.connect") without the DSN.
    std::unique_ptr<pqxx::connection> connect() {
        internal::session_settings settings;
        settings.connect_timeout = _o.connect_timeout;
        settings.statement_timeout = _o.statement_timeout.count() > 0
                                         ? _o.statement_timeout
                                         : std::max<ms>(_o.lease_ttl, 5s);
        // pg_stat_activity shows "ferry-relay" unless the DSN names its own application_name.
        if (_o.dsn.find("application_name") == std::string::npos) {
            settings.application_name = "ferry-relay";
        }
        return internal::connect_unique(_o.dsn, settings, "relay");
    }

    void set_pg_ok(bool ok) {
        std::lock_guard lock(_mutex);
        _pg_ok = ok;
    }

    void drop_group(int group, std::int64_t epoch, const char* why) {
        std::lock_guard lock(_mutex);
        auto it = _held.find(group);
        if (it != _held.end() && it->second.epoch == epoch) {
            _held.erase(it);
            _release_requested.erase(group);
            spdlog::warn("event=lease_dropped group={} epoch={} reason={}", group, epoch, why);
        }
        _groups_held->set(static_cast<double>(_held.size()));
    }

    // ------------------------------------------------------------------------------------
    // lease keeper

    void lease_loop() {
        std::unique_ptr<pqxx::connection> conn;
        ms backoff = 100ms;
        const ms period = std::max<ms>(_o.lease_ttl / 3, 10ms);
        bool had_connection = false;
        for (;;) {
            {
                std::lock_guard lock(_mutex);
                if (_stopping) break;
            }
            try {
                if (!conn) {
                    conn = connect();
                    if (had_connection) _pg_reconnects->inc();
                    had_connection = true;
                    ensure_rows(*conn);
                }
                lease_cycle(*conn);  // renewal only: gauges and retention run on maintenance_loop
                set_pg_ok(true);
                backoff = 100ms;
                sleep_for(period);
            } catch (const std::exception& e) {
                set_pg_ok(false);
                conn.reset();
                spdlog::warn("event=lease_keeper_error error=\"{}\" retry_in_ms={}", e.what(),
                             backoff.count());
                sleep_for(backoff);
                backoff = std::min<ms>(backoff * 2, period);
            }
        }
        // Wait for the worker to finish its batch, then release every lease so a peer can
        // take over at once instead of after the ttl.
        {
            std::unique_lock lock(_mutex);
            _cv.wait(lock, [this] { return _worker_done; });
        }
        release_all(conn);
    }

    void ensure_rows(pqxx::connection& conn) {
        pqxx::work tx{conn};
        (void)internal::exec(
            tx,
            "INSERT INTO " + _q +
                ".relay_lease (lease_group) SELECT g FROM generate_series(0, $1 - 1) "
                "AS g ON CONFLICT (lease_group) DO NOTHING",
            _o.lease_groups);
        tx.commit();
    }

    void lease_cycle(pqxx::connection& conn) {
        const std::string ttl = ms_param(_o.lease_ttl);
        // Heartbeat and count live instances (this one included).
        long live = 1;
        long disagreeing = 0;
        {
            pqxx::work tx{conn};
            (void)internal::exec(tx,
                                 "INSERT INTO " + _q +
                                     ".relay_instance (instance_id, lease_groups) VALUES ($1, $2) "
                                     "ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = "
                                     "clock_timestamp(), lease_groups = excluded.lease_groups",
                                 _o.instance_id, _o.lease_groups);
            (void)internal::exec(tx,
                                 "DELETE FROM " + _q +
                                     ".relay_instance WHERE heartbeat_at < clock_timestamp() - "
                                     "10 * $1::bigint * interval '1 millisecond'",
                                 ttl);
            const auto r = internal::exec(
                tx,
                "SELECT count(*), count(*) FILTER (WHERE lease_groups <> $2) FROM " + _q +
                    ".relay_instance WHERE heartbeat_at > clock_timestamp() - $1::bigint * "
                    "interval '1 millisecond'",
                ttl, _o.lease_groups);
            live = r[0][0].as<long>();
            disagreeing = r[0][1].as<long>();
            tx.commit();
        }
        if (disagreeing > 0) {
            // Two group counts would map one key to two owners and break per-key order: keep
            // what is held (renewed below), acquire nothing until the operator fixes it.
            const auto now = clock::now();
            if (now - _last_mismatch_log > 30s) {
                spdlog::error(
                    "event=lease_groups_mismatch lease_groups={} disagreeing_instances={} "
                    "action=acquire_nothing (every instance sharing schema {} must use "
                    "the same relay.lease_groups)",
                    _o.lease_groups, disagreeing, _o.schema);
                _last_mismatch_log = now;
            }
        }
        live = std::max<long>(live, 1);
        const int target = static_cast<int>((_o.lease_groups + live - 1) / live);

        // Renew what we hold (epoch must still be ours).
        std::map<int, held_lease> held;
        {
            std::lock_guard lock(_mutex);
            held = _held;
        }
        if (!held.empty()) {
            std::vector<int> groups;
            std::vector<std::int64_t> epochs;
            for (const auto& [g, l] : held) {
                groups.push_back(g);
                epochs.push_back(l.epoch);
            }
            pqxx::work tx{conn};
            const auto r = internal::exec(
                tx,
                "UPDATE " + _q +
                    ".relay_lease AS l SET expires_at = clock_timestamp() + $2::bigint * "
                    "interval '1 millisecond' FROM unnest($3::int[], $4::bigint[]) AS h(g, e) "
                    "WHERE l.lease_group = h.g AND l.epoch = h.e AND l.owner = $1 "
                    "RETURNING l.lease_group",
                _o.instance_id, ttl, internal::array_literal(groups),
                internal::array_literal(epochs));
            tx.commit();
            std::set<int> renewed;
            for (const auto& row : r) renewed.insert(row[0].as<int>());
            for (const auto& [g, l] : held) {
                if (renewed.count(g) == 0) drop_group(g, l.epoch, "lost_on_renewal");
            }
        }

        // A release the worker deferred (its batch was running) stands only while it is still
        // wanted: the fair share moves as instances come and go, and a stale request would keep
        // the worker off a group this instance still holds and renews, so nobody would ever
        // publish it again. The wanted releases are the highest `excess` groups held.
        {
            std::lock_guard lock(_mutex);
            const long excess = (_stopping || disagreeing > 0)
                                    ? 0
                                    : static_cast<long>(_held.size()) - static_cast<long>(target);
            std::set<int> wanted;
            for (auto it = _held.rbegin();
                 it != _held.rend() && static_cast<long>(wanted.size()) < excess; ++it) {
                wanted.insert(it->first);
            }
            for (auto it = _release_requested.begin(); it != _release_requested.end();) {
                if (wanted.count(*it) == 0 && !_stopping) {
                    spdlog::info(
                        "event=lease_release_cancelled group={} reason=fair_share_changed "
                        "(live_instances={} fair_share={})",
                        *it, live, target);
                    it = _release_requested.erase(it);
                    _cv.notify_all();
                } else {
                    ++it;
                }
            }
        }

        // Release extras beyond the fair share (highest groups first).
        for (;;) {
            int group = -1;
            std::int64_t epoch = 0;
            {
                std::lock_guard lock(_mutex);
                if (static_cast<int>(_held.size()) <= target || _stopping || disagreeing > 0) {
                    break;  // (a mismatch freezes the assignment: nobody would take them)
                }
                group = _held.rbegin()->first;
                epoch = _held.rbegin()->second.epoch;
            }
            // A group busy with a batch (possibly waiting out a broker outage) is released on
            // a later cycle: never block renewals of the other groups behind it.
            if (!release_group(conn, group, epoch, "rebalance")) break;
        }

        // Acquire free or expired groups up to the fair share.
        int have = groups_held();
        if (have < target && disagreeing == 0 && !stopping()) {
            std::vector<int> candidates;
            {
                pqxx::work tx{conn};
                const auto r = internal::exec(
                    tx,
                    "SELECT lease_group FROM " + _q +
                        ".relay_lease WHERE lease_group < $1 AND (owner IS NULL OR expires_at IS "
                        "NULL OR expires_at < clock_timestamp() OR owner = $2) ORDER BY random()",
                    _o.lease_groups, _o.instance_id);
                tx.commit();
                for (const auto& row : r) candidates.push_back(row[0].as<int>());
            }
            for (int g : candidates) {
                if (have >= target || stopping()) break;
                {
                    std::lock_guard lock(_mutex);
                    if (_held.count(g) != 0) continue;
                }
                pqxx::work tx{conn};
                const auto r = internal::exec(
                    tx,
                    "UPDATE " + _q +
                        ".relay_lease SET owner = $2, epoch = epoch + 1, expires_at = "
                        "clock_timestamp() + $3::bigint * interval '1 millisecond', acquired_at = "
                        "clock_timestamp() WHERE lease_group = $1 AND (owner IS NULL OR expires_at "
                        "IS NULL OR expires_at < clock_timestamp() OR owner = $2) RETURNING epoch",
                    g, _o.instance_id, ttl);
                tx.commit();
                if (r.empty()) continue;
                const auto epoch = r[0][0].as<std::int64_t>();
                {
                    std::lock_guard lock(_mutex);
                    _held[g] = held_lease{epoch};
                    _groups_held->set(static_cast<double>(_held.size()));
                }
                _epoch_gauge[static_cast<std::size_t>(g)].set(static_cast<double>(epoch));
                ++have;
                spdlog::info(
                    "event=lease_acquired group={} epoch={} instance={} live_instances={} "
                    "fair_share={}",
                    g, epoch, _o.instance_id, live, target);
                _cv.notify_all();
            }
        }
    }

    // Returns false when the worker is in the middle of a batch of this group.
    bool release_group(pqxx::connection& conn, int group, std::int64_t epoch, const char* why) {
        // The worker holds the group's mutex for a whole batch; a release never cuts one.
        std::unique_lock batch_lock(*_group_mutex[static_cast<std::size_t>(group)],
                                    std::try_to_lock);
        if (!batch_lock.owns_lock()) {
            std::lock_guard lock(_mutex);
            if (_release_requested.insert(group).second) {  // the worker starts no new batch of it
                spdlog::info(
                    "event=lease_release_deferred group={} epoch={} reason={} "
                    "(a batch of the group is running)",
                    group, epoch, why);
            }
            return false;
        }
        {
            std::lock_guard lock(_mutex);
            _release_requested.erase(group);
            _held.erase(group);
            _groups_held->set(static_cast<double>(_held.size()));
        }
        pqxx::work tx{conn};
        (void)internal::exec(tx,
                             "UPDATE " + _q +
                                 ".relay_lease SET owner = NULL, expires_at = NULL WHERE "
                                 "lease_group = $1 AND owner = $2 AND epoch = $3",
                             group, _o.instance_id, epoch);
        tx.commit();
        spdlog::info("event=lease_released group={} epoch={} reason={}", group, epoch, why);
        return true;
    }

    void release_all(std::unique_ptr<pqxx::connection>& conn) {
        std::map<int, held_lease> held;
        {
            std::lock_guard lock(_mutex);
            held.swap(_held);
            _release_requested.clear();
            _groups_held->set(0);
        }
        try {
            if (!conn) conn = connect();
            pqxx::work tx{*conn};
            for (const auto& [g, l] : held) {
                (void)internal::exec(tx,
                                     "UPDATE " + _q +
                                         ".relay_lease SET owner = NULL, expires_at = NULL WHERE "
                                         "lease_group = $1 AND owner = $2 AND epoch = $3",
                                     g, _o.instance_id, l.epoch);
            }
            (void)internal::exec(tx, "DELETE FROM " + _q + ".relay_instance WHERE instance_id = $1",
                                 _o.instance_id);
            tx.commit();
            spdlog::info("event=leases_released count={} instance={}", held.size(), _o.instance_id);
        } catch (const std::exception& e) {
            spdlog::warn(
                "event=lease_release_failed error=\"{}\" (the leases expire after the ttl)",
                e.what());
        }
    }

    void refresh_stats(pqxx::connection& conn) {
        pqxx::read_transaction tx{conn};
        const auto r = internal::exec(tx,
                                      "SELECT (SELECT count(*) FROM " + _q +
                                          ".outbox), "
                                          "(SELECT coalesce(extract(epoch FROM clock_timestamp() - "
                                          "min(created_at)), 0)::float8 "
                                          "FROM " +
                                          _q + ".outbox), (SELECT count(*) FROM " + _q +
                                          ".parked), "
                                          "(SELECT count(*) FROM " +
                                          _q +
                                          ".expired), "
                                          "(SELECT coalesce(max(n_dead_tup), 0) FROM "
                                          "pg_stat_user_tables WHERE schemaname = $1 "
                                          "AND relname = 'outbox')",
                                      _o.schema);
        _pending->set(r[0][0].as<double>());
        _oldest->set(r[0][1].as<double>());
        _parked_gauge->set(r[0][2].as<double>());
        _expired_gauge->set(r[0][3].as<double>());
        _dead_tuples->set(r[0][4].as<double>());
    }

    // ------------------------------------------------------------------------------------
    // maintenance: gauges and ledger retention, on their own thread and session, so that slow
    // statements over a large backlog never delay lease renewal (issue 10, hole 4).

    void maintenance_loop() {
        std::unique_ptr<pqxx::connection> conn;
        const ms stats_period = std::max<ms>(_o.lease_ttl / 3, 100ms);
        const ms ledger_period = std::clamp<ms>(ledger_width() / 2, 500ms, 60s);
        auto last_ledger = clock::now() - 1h;
        ms backoff = 100ms;
        bool had_connection = false;
        while (!stopping()) {
            try {
                if (!conn) {
                    conn = connect();
                    if (had_connection) _pg_reconnects->inc();
                    had_connection = true;
                }
                try {
                    refresh_stats(*conn);
                } catch (const pqxx::broken_connection&) {
                    throw;
                } catch (const std::exception& e) {
                    // Typically statement_timeout over a huge backlog: the gauges go stale, the
                    // ledger retention below still runs.
                    spdlog::warn("event=stats_error error=\"{}\"", one_line(e.what()));
                }
                if (clock::now() - last_ledger >= ledger_period) {
                    maintain_ledger(*conn);
                    last_ledger = clock::now();
                }
                backoff = 100ms;
                sleep_for(std::min(stats_period, ledger_period));
            } catch (const std::exception& e) {
                conn.reset();
                spdlog::warn("event=maintenance_error error=\"{}\" retry_in_ms={}",
                             one_line(e.what()), backoff.count());
                sleep_for(backoff);
                backoff = std::min<ms>(backoff * 2, 5s);
            }
        }
    }

    static std::string one_line(std::string s) {
        for (auto& c : s) {
            if (c == '\n' || c == '"') c = ' ';
        }
        while (!s.empty() && s.back() == ' ') s.pop_back();
        return s;
    }

    // Width of one ledger partition: a quarter of the retention, between 1 s and 1 day, so a
    // row lives at most retention + width (+ one maintenance period).
    ms ledger_width() const {
        return std::clamp<ms>(
            std::chrono::duration_cast<std::chrono::seconds>(_o.published_retention / 4), 1s, 24h);
    }

    static std::string utc_literal(std::int64_t epoch_s) {
        const std::time_t t = static_cast<std::time_t>(epoch_s);
        std::tm tm{};
        ::gmtime_r(&t, &tm);
        char buf[40];
        std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S+00", &tm);
        return buf;
    }

    // One DDL statement of the ledger's maintenance. A lock that readers hold past lock_timeout
    // (a long reconciliation scan) defers the work to the next cycle instead of queueing the
    // relay's marks behind it. Returns false when deferred.
    bool ledger_ddl(pqxx::connection& conn, const std::string& sql) {
        try {
            pqxx::work tx{conn};
            tx.exec(sql);
            tx.commit();
            return true;
        } catch (const pqxx::broken_connection&) {
            throw;
        } catch (const pqxx::sql_error& e) {
            spdlog::warn("event=ledger_ddl_deferred sqlstate={} error=\"{}\"", e.sqlstate(),
                         one_line(e.what()));
            return false;
        }
    }

    // Ledger retention by partitions (migration 0010, ADR 0010): create range partitions ahead
    // of the database clock, drop those whose upper bound is past the retention, and trim the
    // default partition (rows outside every range) with bounded deletes. One instance at a
    // time (advisory lock); DDL waits at most lock_timeout for readers, then retries later.
    void maintain_ledger(pqxx::connection& conn) {
        {
            pqxx::nontransaction tx{conn};
            const auto got = internal::exec(
                tx, "SELECT pg_try_advisory_lock(hashtext('ferry.relay.ledger'), hashtext($1))",
                _o.schema);
            if (!got[0][0].as<bool>()) return;
            tx.exec("SET lock_timeout = 500");
        }
        struct unlock_guard {
            pqxx::connection& conn;
            const std::string& schema;
            ~unlock_guard() {
                try {
                    pqxx::nontransaction tx{conn};
                    tx.exec("SET lock_timeout = 0");
                    (void)internal::exec(
                        tx,
                        "SELECT pg_advisory_unlock(hashtext('ferry.relay.ledger'), hashtext($1))",
                        schema);
                } catch (...) {
                    // A broken session releases its advisory locks itself.
                }
            }
        } unlock{conn, _o.schema};

        const std::int64_t width =
            std::chrono::duration_cast<std::chrono::seconds>(ledger_width()).count();
        const std::int64_t retention_s =
            std::chrono::duration_cast<std::chrono::seconds>(_o.published_retention).count();
        std::int64_t now_s = 0;
        std::vector<std::pair<std::int64_t, std::string>> ranged;  // (upper bound, name)
        std::int64_t max_upper = 0;
        {
            pqxx::nontransaction tx{conn};
            now_s = tx.exec("SELECT floor(extract(epoch FROM clock_timestamp()))::bigint")[0][0]
                        .as<std::int64_t>();
            const auto r = internal::exec(
                tx,
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = "
                "to_regclass($1) AND n.nspname = $2 AND c.relname ~ '^published_p[0-9]+_[0-9]+$'",
                _q + ".published", _o.schema);
            for (const auto& row : r) {
                const auto name = row[0].as<std::string>();
                const std::int64_t upper = std::stoll(name.substr(name.rfind('_') + 1));
                ranged.emplace_back(upper, name);
                max_upper = std::max(max_upper, upper);
            }
        }
        // Drop partitions wholly past the retention.
        int dropped = 0;
        for (const auto& [upper, name] : ranged) {
            if (upper > now_s - retention_s) continue;
            if (!ledger_ddl(conn, "DROP TABLE IF EXISTS " + _q + "." +
                                      quote_identifier(name, "partition"))) {
                break;
            }
            ++dropped;
        }
        // Create partitions up to three widths ahead. After a gap (no partition covers now),
        // start at the next boundary a second ahead: rows already in the default partition for
        // the current range would make the creation fail.
        std::int64_t from = max_upper;
        if (from <= now_s) from = ((now_s + 1) / width + 1) * width;
        int created = 0;
        while (from < now_s + 3 * width) {
            const std::int64_t to = from + width;
            const auto name = "published_p" + std::to_string(from) + "_" + std::to_string(to);
            if (!ledger_ddl(conn, "CREATE TABLE IF NOT EXISTS " + _q + "." +
                                      quote_identifier(name, "partition") + " PARTITION OF " + _q +
                                      ".published FOR VALUES FROM ('" + utc_literal(from) +
                                      "') TO ('" + utc_literal(to) + "')")) {
                break;
            }
            ++created;
            from = to;
        }
        // Rows outside every range: bounded deletes, as before partitioning.
        long trimmed = 0;
        for (int i = 0; i < 20; ++i) {
            pqxx::work tx{conn};
            const auto r = internal::exec(
                tx,
                "DELETE FROM " + _q +
                    ".published_default WHERE ctid = ANY(ARRAY(SELECT ctid FROM " + _q +
                    ".published_default WHERE published_at < clock_timestamp() - $1::bigint * "
                    "interval '1 millisecond' LIMIT 5000))",
                ms_param(_o.published_retention));
            tx.commit();
            trimmed += static_cast<long>(r.affected_rows());
            if (r.affected_rows() < 5000) break;
        }
        if (dropped > 0 || created > 0 || trimmed > 0) {
            spdlog::debug("event=ledger_maintained dropped={} created={} trimmed_default={}",
                          dropped, created, trimmed);
        }
    }

    // ------------------------------------------------------------------------------------
    // publish worker

    enum class batch_result { empty, partial, full, fenced, not_ready, kafka_trouble };

    // Named fault point "before_mark" (test builds only): with FERRY_RELAY_FAULT_BEFORE_MARK_MS
    // set, the first batch that has acknowledged rows logs the point and sleeps, so a fault
    // test can SIGSTOP or kill -9 the relay between Kafka's ack and the mark.
    // Named fault point "before_produce" (test builds only): with
    // FERRY_RELAY_FAULT_BEFORE_PRODUCE_MS set, the first batch logs the point after its lease
    // check and claim, then sleeps, so a fault test can SIGSTOP the relay before it produces.
    void fault_point_before_produce([[maybe_unused]] int group, [[maybe_unused]] std::int64_t epoch,
                                    [[maybe_unused]] std::size_t rows) {
#ifdef FERRY_FAULT_POINTS
        static std::atomic<bool> fired{false};
        const char* env = std::getenv("FERRY_RELAY_FAULT_BEFORE_PRODUCE_MS");
        if (env == nullptr || rows == 0 || fired.exchange(true)) return;
        const long sleep_ms = std::atol(env);
        spdlog::warn("event=fault_point name=before_produce group={} epoch={} rows={} sleep_ms={}",
                     group, epoch, rows, sleep_ms);
        std::this_thread::sleep_for(ms(sleep_ms));
#endif
    }

    // Named fault point "after_produce" (test builds only): with FERRY_RELAY_FAULT_AFTER_PRODUCE_MS
    // set, the first batch logs the point once every row was handed to librdkafka, before any
    // delivery report is read, then sleeps: Kafka may hold the records, the relay has seen no ack.
    void fault_point_after_produce([[maybe_unused]] int group, [[maybe_unused]] std::int64_t epoch,
                                   [[maybe_unused]] std::size_t rows) {
#ifdef FERRY_FAULT_POINTS
        fault_point_sleep("after_produce", "FERRY_RELAY_FAULT_AFTER_PRODUCE_MS", group, epoch,
                          rows);
#endif
    }

    // Named fault point "during_mark" (test builds only): with FERRY_RELAY_FAULT_DURING_MARK_MS
    // set, the first mark transaction logs the point after its fence check and its statements,
    // before COMMIT, then sleeps (holding the lease row's lock), so a fault test can kill the
    // relay inside the mark transaction.
    void fault_point_during_mark([[maybe_unused]] int group, [[maybe_unused]] std::int64_t epoch,
                                 [[maybe_unused]] std::size_t rows) {
#ifdef FERRY_FAULT_POINTS
        fault_point_sleep("during_mark", "FERRY_RELAY_FAULT_DURING_MARK_MS", group, epoch, rows);
#endif
    }

#ifdef FERRY_FAULT_POINTS
    // Each named point fires once per process, on its first batch with rows.
    static void fault_point_sleep(const char* name, const char* env_name, int group,
                                  std::int64_t epoch, std::size_t rows) {
        static std::mutex m;
        static std::set<std::string> fired;
        const char* env = std::getenv(env_name);
        if (env == nullptr || rows == 0) return;
        {
            std::lock_guard lock(m);
            if (!fired.insert(name).second) return;
        }
        const long sleep_ms = std::atol(env);
        spdlog::warn("event=fault_point name={} group={} epoch={} rows={} sleep_ms={}", name, group,
                     epoch, rows, sleep_ms);
        std::this_thread::sleep_for(ms(sleep_ms));
    }
#endif

    // The negative control of the zombie test switches the produce guard off (test builds only).
    static bool guard_enabled() {
#ifdef FERRY_FAULT_POINTS
        static const bool disabled = std::getenv("FERRY_RELAY_UNSAFE_NO_PRODUCE_GUARD") != nullptr;
        return !disabled;
#else
        return true;
#endif
    }

    void fault_point_before_mark([[maybe_unused]] int group, [[maybe_unused]] std::int64_t epoch,
                                 [[maybe_unused]] std::size_t rows) {
#ifdef FERRY_FAULT_POINTS
        static std::atomic<bool> fired{false};
        const char* env = std::getenv("FERRY_RELAY_FAULT_BEFORE_MARK_MS");
        if (env == nullptr || rows == 0 || fired.exchange(true)) return;
        const long sleep_ms = std::atol(env);
        spdlog::warn("event=fault_point name=before_mark group={} epoch={} rows={} sleep_ms={}",
                     group, epoch, rows, sleep_ms);
        std::this_thread::sleep_for(ms(sleep_ms));
#endif
    }

    // Named fault point "fatal_producer" (test builds only): with
    // FERRY_RELAY_FAULT_FATAL_PRODUCER set, the first round over two or more held groups raises
    // a fatal producer error (librdkafka's OUT_OF_ORDER_SEQUENCE_NUMBER) just before the first
    // batch with rows produces, so the rest of that round runs after the producer was lost.
    void fault_point_fatal_producer([[maybe_unused]] std::size_t groups) {
#ifdef FERRY_FAULT_POINTS
        static std::atomic<bool> fired{false};
        if (groups < 2 || std::getenv("FERRY_RELAY_FAULT_FATAL_PRODUCER") == nullptr) return;
        if (!fired.exchange(true)) _inject_fatal = true;
#endif
    }

    static constexpr std::chrono::seconds k_busy_window{1};

    void worker_loop() {
        std::unique_ptr<pqxx::connection> conn;
        std::unique_ptr<detail::producer> prod = std::move(_first_producer);
        ms idle = _o.poll_min;
        clock::time_point last_found{};
        ms pg_backoff = 100ms;
        ms kafka_backoff = 100ms;
        bool had_connection = false;
        while (!stopping()) {
            try {
                if (!conn) {
                    conn = connect();
                    if (had_connection) {
                        _pg_reconnects->inc();
                        spdlog::info("event=pg_reconnected thread=worker");
                    }
                    had_connection = true;
                }
                ensure_producer(prod);
                std::vector<std::pair<int, std::int64_t>> groups;
                {
                    std::lock_guard lock(_mutex);
                    for (const auto& [g, l] : _held) {
                        if (_release_requested.count(g) == 0) groups.emplace_back(g, l.epoch);
                    }
                }
                if (groups.empty()) {
                    std::unique_lock lock(_mutex);
                    _cv.wait_for(lock, 50ms, [this] {
                        return _stopping || _held.size() > _release_requested.size();
                    });
                    continue;
                }
                bool full = false;
                bool found = false;
                bool trouble = false;
                fault_point_fatal_producer(groups.size());
                for (const auto& [g, epoch] : groups) {
                    if (stopping()) break;
                    const auto r = run_batch(*conn, prod, g, epoch);
                    full = full || r == batch_result::full;
                    found = found || r == batch_result::full || r == batch_result::partial;
                    trouble = trouble || r == batch_result::kafka_trouble;
                }
                pg_backoff = 100ms;
                if (trouble) {
                    sleep_for(kafka_backoff);
                    kafka_backoff = std::min<ms>(kafka_backoff * 2, 5s);
                    idle = _o.poll_min;
                    continue;
                }
                kafka_backoff = 100ms;
                if (full) {
                    idle = _o.poll_min;
                    continue;
                }
                // Adaptive polling: while messages keep arriving (some were found within the
                // last second) poll every poll_min, so a steady or bursty stream never waits on
                // a backed-off sleep; after a quiet second, back off doubling to poll_max.
                const auto now = clock::now();
                if (found) last_found = now;
                if (now - last_found < k_busy_window) {
                    idle = _o.poll_min;
                    sleep_for(idle);
                    continue;
                }
                sleep_for(idle);
                idle = std::min<ms>(idle * 2, _o.poll_max);
            } catch (const ferry::error& e) {
                if (e.kind() == error_kind::permanent && e.code() == "relay.kafka_config") {
                    spdlog::error("event=worker_error error=\"{}\"", e.what());
                }
                handle_worker_error(conn, e.what(), pg_backoff);
            } catch (const std::exception& e) {
                handle_worker_error(conn, e.what(), pg_backoff);
            }
        }
        prod.reset();
    }

    // (Re)creates the worker's producer after a fatal error or an abandoned batch dropped it
    // (issue 10, hole 1: every send goes through here, so no round over several groups can
    // use a dropped producer).
    void ensure_producer(std::unique_ptr<detail::producer>& prod) {
        if (prod) return;
        prod = std::make_unique<detail::producer>(_o);
        _producer_restarts->inc();
        spdlog::warn("event=producer_restarted restarts={}", _producer_restarts->value());
    }

    void handle_worker_error(std::unique_ptr<pqxx::connection>& conn, const std::string& what,
                             ms& backoff) {
        bool broken = !conn;
        try {
            broken = broken || !conn->is_open();
        } catch (...) {
            broken = true;
        }
        spdlog::warn("event=worker_error error=\"{}\" reconnect={} retry_in_ms={}", what, broken,
                     backoff.count());
        conn.reset();  // a fresh session is the simplest safe state after any database error
        sleep_for(backoff);
        backoff = std::min<ms>(backoff * 2, 5s);
    }

    batch_result run_batch(pqxx::connection& conn, std::unique_ptr<detail::producer>& prod,
                           int group, std::int64_t epoch) {
        std::lock_guard batch_lock(*_group_mutex[static_cast<std::size_t>(group)]);
        {
            std::lock_guard lock(_mutex);
            auto it = _held.find(group);
            if (it == _held.end() || it->second.epoch != epoch) return batch_result::fenced;
        }
        // 1. Lease still ours, with time to spare? (database clock)
        std::vector<claimed_row> rows;
        clock::time_point produce_until{};
        {
            pqxx::nontransaction tx{conn};
            const auto lease = internal::exec_cached(
                tx, "ferry_relay_lease_check",
                "SELECT owner = $1 AND epoch = $2, extract(epoch FROM (expires_at - "
                "clock_timestamp())) * 1000 FROM " +
                    _q + ".relay_lease WHERE lease_group = $3",
                _o.instance_id, epoch, group);
            if (lease.empty() || lease[0][0].is_null() || !lease[0][0].as<bool>()) {
                drop_group(group, epoch, "lease_taken");
                return batch_result::fenced;
            }
            const double remaining_ms = lease[0][1].is_null() ? 0 : lease[0][1].as<double>();
            if (remaining_ms < static_cast<double>(_o.lease_ttl.count()) / 4) {
                return batch_result::not_ready;  // renewal is lagging; do not publish near expiry
            }
            // The zombie guard's budget: the lease's remaining time on the database clock, less
            // a margin for the round trip, counted on this process's monotonic clock from now.
            // A pause (SIGSTOP) does not stop the monotonic clock, so a process that wakes after
            // its lease could have been taken produces nothing (see producer::send).
            produce_until = clock::now() +
                            std::chrono::duration_cast<clock::duration>(
                                std::chrono::duration<double, std::milli>(remaining_ms)) -
                            _o.lease_ttl / 8;
            // 2. Claim visible rows of our shards, in id order, skipping held-back keys.
            const auto r = internal::exec_cached(
                tx, "ferry_relay_claim",
                "SELECT o.id, o.message_id::text, o.topic, o.key, o.payload, o.headers::text, "
                "to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
                "extract(epoch FROM o.created_at)::float8, "
                "(o.expires_at IS NOT NULL AND o.expires_at <= clock_timestamp()) "
                "FROM " +
                    _q +
                    ".outbox o WHERE o.shard = ANY($1::smallint[]) "
                    "AND o.available_at <= clock_timestamp() "
                    "AND NOT EXISTS (SELECT 1 FROM " +
                    _q +
                    ".parked p WHERE p.topic = o.topic AND "
                    "p.key = o.key) ORDER BY o.id LIMIT $2",
                shard_array_literal(group, _o.lease_groups), static_cast<long>(_o.batch_size));
            rows.reserve(r.size());
            for (const auto& row : r) {
                claimed_row c;
                c.id = row[0].as<std::int64_t>();
                c.message_id = row[1].as<std::string>();
                c.topic = row[2].as<std::string>();
                c.key = row[3].as<std::string>();
                const pqxx::binarystring payload(row[4]);
                c.payload = payload.str();
                c.headers_json = row[5].as<std::string>();
                c.created_at_text = row[6].as<std::string>();
                c.created_at_epoch = row[7].as<double>();
                c.expired = row[8].as<bool>();
                rows.push_back(std::move(c));
            }
        }
        if (rows.empty()) return batch_result::empty;
        const auto t_claimed = clock::now();
        ++_batches;
        _batch_size->observe(static_cast<double>(rows.size()));

        // 3. Decide (batch_planner.hpp, pure): decode each row's headers, then plan what to
        //    produce. Expired rows are not produced; a row whose headers cannot be decoded is
        //    parked and holds back the later rows of its key, like any failed row.
        std::vector<detail::planned_row> planned(rows.size());
        std::vector<detail::produce_item> prepared(rows.size());
        for (std::size_t i = 0; i < rows.size(); ++i) {
            auto& row = rows[i];
            auto& p = planned[i];
            p.id = row.id;
            p.topic = row.topic;
            p.key = row.key;
            p.expired = row.expired;
            if (row.expired) continue;
            auto& item = prepared[i];
            item.topic = kafka_topic(_o, row.topic);
            if (!row.key.empty()) item.key = row.key;
            item.payload = std::move(row.payload);
            item.headers.emplace_back("ferry-message-id", row.message_id);
            item.headers.emplace_back("ferry-created-at", row.created_at_text);
            p.header_error = detail::decode_headers(row.headers_json, item.headers);
            if (!p.header_error.empty()) {
                _invalid_headers->inc();
                spdlog::error(
                    "event=invalid_headers group={} outbox_id={} message_id={} reason=\"{}\" "
                    "action=park",
                    group, row.id, row.message_id, one_line(p.header_error));
            }
        }
        const auto plan = detail::plan_produce(planned);
        std::vector<detail::produce_item> items;
        items.reserve(plan.produce.size());
        for (const auto i : plan.produce) items.push_back(std::move(prepared[i]));

        detail::batch_outcome out;
        fault_point_before_produce(group, epoch, items.size());
        if (!items.empty() && _inject_fatal) {
            _inject_fatal = false;
            spdlog::warn("event=fault_point name=fatal_producer group={} epoch={} rows={}", group,
                         epoch, items.size());
            prod->raise_fatal_for_test("fault point fatal_producer");
        }
        if (!items.empty()) {
            ensure_producer(prod);
            const auto deadline = clock::now() + _o.delivery_timeout;
            out = prod->send(
                items, deadline, guard_enabled() ? produce_until : clock::time_point::max(),
                [this] {
                    std::lock_guard lock(_mutex);
                    return _stopping && clock::now() >= _stop_deadline;
                },
                [&] { fault_point_after_produce(group, epoch, items.size()); });
        }

        const auto t_acked = clock::now();
        // 4. Decide what to mark (batch_planner.hpp): per key in id order, the acknowledged
        //    prefix is published; the first failure is parked (permanent) or left for the next
        //    round, and every later row of that key stays in the outbox even if Kafka
        //    acknowledged it, so it is republished after the failed one (issue 10, hole 2; the
        //    producer's idempotence and gapless guarantee keep Kafka from appending it between).
        const auto marks = detail::plan_mark(planned, plan, out.deliveries);
        const double now_epoch =
            std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                .count();
        std::vector<std::int64_t> pub_ids;
        std::vector<int> pub_parts;
        std::vector<std::int64_t> pub_offsets;
        for (const auto& p : marks.publish) {
            pub_ids.push_back(rows[p.row].id);
            pub_parts.push_back(p.partition);
            pub_offsets.push_back(p.offset);
            _commit_to_ack->observe(std::max(0.0, now_epoch - rows[p.row].created_at_epoch));
        }
        std::vector<std::int64_t> expired_ids;
        for (const auto i : marks.expire) expired_ids.push_back(rows[i].id);
        std::vector<std::int64_t> park_ids;
        std::vector<std::string> park_reasons;
        std::vector<std::string> park_codes;
        for (const auto& p : marks.park) {
            park_ids.push_back(rows[p.row].id);
            park_reasons.push_back(p.reason);
            park_codes.push_back(p.error_code);
        }
        const std::size_t transient = marks.transient;
        if (marks.held_acked > 0) {
            _held_after_failure->inc(static_cast<double>(marks.held_acked));
            spdlog::warn(
                "event=held_after_failure group={} count={} (acknowledged after an earlier "
                "failure of their key; left unmarked, republished after it)",
                group, marks.held_acked);
        }
        if (transient > 0) {
            _errors_transient->inc(static_cast<double>(transient));
            std::string example;
            for (const auto& d : out.deliveries) {
                if (d.result == detail::outcome::transient) {
                    example = d.error_code + ": " + d.error_text;
                    break;
                }
            }
            spdlog::warn("event=publish_transient_errors group={} count={} example=\"{}\"", group,
                         transient, example);
        }
        if (out.fatal) {
            _errors_fatal->inc();
            spdlog::error("event=producer_fatal group={} reason=\"{}\" action=recreate", group,
                          out.fatal_reason);
            prod.reset();  // recreated by ensure_producer before the next send
        } else if (out.purged) {
            // Messages were purged (lease budget spent or batch abandoned): librdkafka would
            // re-sequence what follows, so this producer is not used again.
            spdlog::warn("event=producer_purged group={} action=recreate", group);
            prod.reset();
        }

        // 5. Mark, fenced by the lease row (locked, so a steal and a mark cannot interleave).
        if (!marks.nothing_to_mark()) {
            fault_point_before_mark(group, epoch, pub_ids.size());
            pqxx::work tx{conn};
            const auto lease = internal::exec_cached(
                tx, "ferry_relay_fence",
                "SELECT owner = $1 AND epoch = $2 AND expires_at > clock_timestamp() FROM " + _q +
                    ".relay_lease WHERE lease_group = $3 FOR UPDATE",
                _o.instance_id, epoch, group);
            if (lease.empty() || lease[0][0].is_null() || !lease[0][0].as<bool>()) {
                tx.abort();
                _fenced->inc();
                ++_n_fenced;
                spdlog::warn(
                    "event=fenced group={} epoch={} instance={} unmarked={} (another "
                    "instance owns the group; its rows will be republished by it)",
                    group, epoch, _o.instance_id, pub_ids.size());
                drop_group(group, epoch, "fenced_at_mark");
                return batch_result::fenced;
            }
            if (!pub_ids.empty()) {
                (void)internal::exec_cached(
                    tx, "ferry_relay_mark_published",
                    "WITH info AS (SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[]) "
                    "AS t(id, part, off)), moved AS (DELETE FROM " +
                        _q +
                        ".outbox o USING info "
                        "WHERE o.id = info.id RETURNING o.message_id, o.topic, o.key, "
                        "o.created_at, o.payload, o.headers, "
                        "info.part, info.off) INSERT INTO " +
                        _q +
                        ".published (message_id, topic, "
                        "key, partition, \"offset\", created_at, relay_epoch, lease_group, "
                        "payload, headers) SELECT "
                        "message_id, topic, key, part, off, created_at, $4, $5, payload, headers "
                        "FROM moved",
                    internal::array_literal(pub_ids), internal::array_literal(pub_parts),
                    internal::array_literal(pub_offsets), epoch, group);
            }
            if (!expired_ids.empty()) {
                (void)internal::exec_cached(
                    tx, "ferry_relay_mark_expired",
                    "WITH moved AS (DELETE FROM " + _q +
                        ".outbox WHERE id = ANY($1::bigint[]) "
                        "RETURNING *) INSERT INTO " +
                        _q +
                        ".expired (id, message_id, topic, key, "
                        "payload, headers, created_at, available_at, expires_at) SELECT id, "
                        "message_id, topic, key, payload, headers, created_at, available_at, "
                        "expires_at FROM moved ON CONFLICT (id) DO UPDATE SET expired_at = "
                        "excluded.expired_at",
                    internal::array_literal(expired_ids));
            }
            if (!park_ids.empty()) {
                (void)internal::exec_cached(
                    tx, "ferry_relay_mark_parked",
                    "WITH info AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS "
                    "t(id, reason, code)), moved AS (DELETE FROM " +
                        _q +
                        ".outbox o USING info "
                        "WHERE o.id = info.id RETURNING o.id, o.message_id, o.topic, o.key, "
                        "o.payload, "
                        "o.headers, o.created_at, o.available_at, o.expires_at, info.reason, "
                        "info.code) "
                        "INSERT INTO " +
                        _q +
                        ".parked (id, message_id, topic, key, payload, headers, "
                        "created_at, available_at, expires_at, reason, error_code) SELECT id, "
                        "message_id, topic, key, payload, headers, created_at, available_at, "
                        "expires_at, reason, code FROM moved ON CONFLICT (id) DO UPDATE SET reason "
                        "= "
                        "excluded.reason, error_code = excluded.error_code, parked_at = "
                        "excluded.parked_at, attempts = " +
                        _q + ".parked.attempts + 1",
                    internal::array_literal(park_ids), internal::array_literal(park_reasons),
                    internal::array_literal(park_codes));
            }
            fault_point_during_mark(group, epoch, pub_ids.size());
            tx.commit();
            _published->inc(static_cast<double>(pub_ids.size()));
            _expired_total->inc(static_cast<double>(expired_ids.size()));
            _parked_total->inc(static_cast<double>(park_ids.size()));
            _n_published += pub_ids.size();
            _n_expired += expired_ids.size();
            _n_parked += park_ids.size();
            _errors_permanent->inc(static_cast<double>(park_ids.size()));
            for (std::size_t i = 0; i < park_ids.size(); ++i) {
                spdlog::warn(
                    "event=message_parked group={} outbox_id={} error_code={} reason=\"{}\"", group,
                    park_ids[i], park_codes[i], park_reasons[i]);
            }
            if (!expired_ids.empty()) {
                spdlog::info("event=messages_expired group={} count={}", group, expired_ids.size());
            }
        }
        spdlog::debug(
            "event=batch group={} rows={} published={} expired={} parked={} "
            "produce_ms={} mark_ms={}",
            group, rows.size(), pub_ids.size(), expired_ids.size(), park_ids.size(),
            std::chrono::duration_cast<ms>(t_acked - t_claimed).count(),
            std::chrono::duration_cast<ms>(clock::now() - t_acked).count());
        switch (detail::plan_next({.claimed = rows.size(),
                                   .batch_size = _o.batch_size,
                                   .fenced = false,
                                   .producer_lost = out.fatal || out.purged},
                                  marks)) {
            case detail::next_step::back_off:
                return batch_result::kafka_trouble;
            case detail::next_step::poll_again_now:
                return batch_result::full;
            case detail::next_step::drop_group:
                return batch_result::fenced;
            case detail::next_step::poll_later:
                break;
        }
        return batch_result::partial;
    }
};

relay::relay(relay_options options, ferry::metrics::registry* metrics)
    : _impl(std::make_unique<impl>(std::move(options), metrics)) {}
relay::~relay() = default;
void relay::start() { _impl->start(); }
void relay::stop() { _impl->stop(); }
bool relay::ready() const { return _impl->ready(); }
int relay::groups_held() const { return _impl->groups_held(); }
const std::string& relay::instance_id() const { return _impl->_o.instance_id; }
ferry::metrics::registry& relay::metrics() { return _impl->_metrics; }
relay_counts relay::counts() const {
    relay_counts c;
    c.published = _impl->_n_published.load();
    c.parked = _impl->_n_parked.load();
    c.expired = _impl->_n_expired.load();
    c.fenced = _impl->_n_fenced.load();
    c.batches = _impl->_batches.load();
    return c;
}

}  // namespace ferry::relay
