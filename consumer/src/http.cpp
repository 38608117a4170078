// HTTP for consumer processes (ferry/consumer/http.hpp): readiness probe, metrics exporter and
// the cpp-httplib server.
#include "ferry/consumer/http.hpp"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cctype>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>

#include "ferry/common/error.hpp"
#include "ferry/common/redact.hpp"
#include "ferry/dedup/redis_store.hpp"
#include "ferry/internal/http_auth.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/retry/tables.hpp"

namespace ferry::consumer {
namespace {

using clock_type = std::chrono::steady_clock;

bool uses_redis(dedup_mode m) { return m == dedup_mode::redis || m == dedup_mode::redis_and_inbox; }

// A PostgreSQL session of the probe or the exporter: opened on demand with a short connect and
// statement timeout, dropped after any failure so the next call reconnects.
class pg_session {
public:
    pg_session(std::string dsn, std::chrono::milliseconds timeout)
        : _dsn(std::move(dsn)), _timeout(timeout) {}

    template <class Fn>
    auto with(Fn&& fn) -> decltype(fn(std::declval<pqxx::connection&>())) {
        try {
            if (!_conn || !_conn->is_open()) {
                internal::session_settings s;
                s.connect_timeout = _timeout;
                s.statement_timeout = _timeout;
                s.application_name = "ferry-consumer-http";
                _conn = internal::connect_unique(_dsn, s, "consumer");
            }
            return fn(*_conn);
        } catch (...) {
            _conn.reset();
            throw;
        }
    }

private:
    std::string _dsn;
    std::chrono::milliseconds _timeout;
    std::unique_ptr<pqxx::connection> _conn;
};

std::string json_escaped(const std::string& text) { return internal::json_string_body(text); }

// The value of "Authorization: Bearer <token>" (scheme case-insensitive), or nullopt.
std::optional<std::string> bearer_of(const httplib::Request& req) {
    if (!req.has_header("Authorization")) return std::nullopt;
    return internal::bearer_token(req.get_header_value("Authorization"));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// readiness_probe

struct readiness_probe::impl {
    const consumer& c;
    std::chrono::milliseconds timeout;
    std::mutex mutex;
    std::optional<pg_session> pg;
    std::unique_ptr<dedup::redis_store> redis;

    impl(const consumer& cons, std::chrono::milliseconds t) : c(cons), timeout(t) {}
};

readiness_probe::readiness_probe(const consumer& c, std::chrono::milliseconds timeout)
    : _impl(std::make_unique<impl>(c, timeout)) {}
readiness_probe::~readiness_probe() = default;

readiness readiness_probe::check() {
    std::lock_guard lock(_impl->mutex);
    const auto& o = _impl->c.options();
    readiness r;
    r.group = o.group;
    r.running = _impl->c.running();
    r.assigned_partitions = _impl->c.metrics().assigned_partitions;
    r.redis_used = uses_redis(o.dedup);
    if (!_impl->pg) _impl->pg.emplace(o.dsn, _impl->timeout);
    try {
        _impl->pg->with([](pqxx::connection& conn) {
            pqxx::nontransaction tx{conn};
            (void)tx.exec("SELECT 1");
        });
        r.postgres = true;
    } catch (const std::exception& e) {
        spdlog::warn("event=readiness_postgres_failed group={} error=\"{}\"", o.group,
                     redact_dsn(e.what()));
    }
    if (r.redis_used) {
        try {
            if (!_impl->redis) {
                dedup::redis_options ro;
                ro.url = o.redis_url;
                ro.url_field = "redis_url";
                ro.key_prefix = o.redis_key_prefix;
                ro.connect_timeout = _impl->timeout;
                ro.command_timeout = _impl->timeout;
                _impl->redis = std::make_unique<dedup::redis_store>(ro);
            }
            _impl->redis->ping();
            r.redis = true;
        } catch (const std::exception& e) {
            _impl->redis.reset();
            spdlog::warn("event=readiness_redis_failed group={} error=\"{}\"", o.group,
                         redact_url(e.what()));
        }
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// metrics_exporter

struct metrics_exporter::impl {
    struct counter_def {
        const char* name;
        const char* help;
        std::uint64_t metrics_snapshot::*field;
    };

    const consumer& c;
    ferry::metrics::registry& reg;
    std::chrono::milliseconds depth_interval;
    ferry::metrics::labels group_labels;
    std::vector<std::pair<ferry::metrics::counter, std::uint64_t metrics_snapshot::*>> counters;
    ferry::metrics::gauge batch_size, queued_bytes, lag, assigned, retry_depth, dead_depth;
    std::map<std::size_t, ferry::metrics::gauge> lanes;
    std::map<std::pair<std::string, std::int32_t>, ferry::metrics::gauge> partitions;
    std::optional<pg_session> pg;
    clock_type::time_point next_depth{};
    std::mutex refresh_mutex;  // two scrapes at once refresh one at a time
    ferry::metrics::collector_handle collector;

    static const std::vector<counter_def>& counter_defs() {
        static const std::vector<counter_def> defs = {
            {"ferry_consumer_consumed_total", "Records polled from Kafka.",
             &metrics_snapshot::consumed},
            {"ferry_consumer_processed_total", "Effects applied.", &metrics_snapshot::processed},
            {"ferry_consumer_duplicates_absorbed_total",
             "Duplicates absorbed by Redis or the inbox.", &metrics_snapshot::duplicates_absorbed},
            {"ferry_consumer_retries_total", "Failed attempts that will be tried again.",
             &metrics_snapshot::retries},
            {"ferry_consumer_retry_scheduled_total", "Messages written to the retry table.",
             &metrics_snapshot::retry_scheduled},
            {"ferry_consumer_retry_chained_total",
             "Retry rows claimed right after the previous row of their key was applied.",
             &metrics_snapshot::retry_chained},
            {"ferry_consumer_parked_behind_key_total",
             "Messages that waited behind an earlier one of their key.",
             &metrics_snapshot::parked_behind_key},
            {"ferry_consumer_dead_letters_total", "Messages moved to dead letters.",
             &metrics_snapshot::dead_letters},
            {"ferry_consumer_malformed_total", "Records without a valid ferry-message-id.",
             &metrics_snapshot::malformed},
            {"ferry_consumer_redis_errors_total", "Redis calls that failed.",
             &metrics_snapshot::redis_errors},
            {"ferry_consumer_commits_total", "Offset commits sent.", &metrics_snapshot::commits},
            {"ferry_consumer_rebalances_total", "Rebalance callbacks.",
             &metrics_snapshot::rebalances},
            {"ferry_consumer_fenced_writes_total",
             "Retry/dead-letter writes refused because the partition moved to another owner.",
             &metrics_snapshot::fenced_writes},
            {"ferry_consumer_header_limit_total",
             "Records dead-lettered for too many or too large headers.",
             &metrics_snapshot::header_limit},
            {"ferry_consumer_abandoned_total",
             "Failed attempts left unrouted because the partition moved or the consumer stopped.",
             &metrics_snapshot::abandoned},
            {"ferry_consumer_inbox_pruned_total", "Inbox rows deleted by the retention job.",
             &metrics_snapshot::inbox_pruned},
            {"ferry_consumer_pauses_total",
             "Times the partitions were paused because the lanes stayed behind.",
             &metrics_snapshot::pauses},
            {"ferry_consumer_batches_total", "Batched effect transactions committed.",
             &metrics_snapshot::batches},
            {"ferry_consumer_batched_messages_total",
             "Messages applied or absorbed in batched transactions.",
             &metrics_snapshot::batched_messages},
            {"ferry_consumer_batch_fallbacks_total",
             "Batches rolled back and run one transaction per message (a failure inside).",
             &metrics_snapshot::batch_fallbacks},
        };
        return defs;
    }

    impl(const consumer& cons, ferry::metrics::registry& r, std::chrono::milliseconds interval,
         std::chrono::milliseconds timeout)
        : c(cons),
          reg(r),
          depth_interval(interval),
          group_labels{{"group", cons.options().group}},
          batch_size(r.add_gauge("ferry_consumer_batch_size",
                                 "Messages in the last batched effect transaction.", group_labels)),
          queued_bytes(r.add_gauge("ferry_consumer_queued_bytes",
                                   "Bytes of polled records queued for the lanes.", group_labels)),
          lag(r.add_gauge("ferry_consumer_lag",
                          "High watermark minus commit position, summed over assigned partitions.",
                          group_labels)),
          assigned(r.add_gauge("ferry_consumer_assigned_partitions",
                               "Partitions assigned to this instance.", group_labels)),
          retry_depth(r.add_gauge("ferry_consumer_retry_depth",
                                  "Rows of this group in the retry table (waiting ones included).",
                                  group_labels)),
          dead_depth(r.add_gauge("ferry_consumer_dead_letter_depth",
                                 "Dead letters of this group not yet replayed.", group_labels)) {
        for (const auto& d : counter_defs()) {
            counters.emplace_back(reg.add_counter(d.name, d.help, group_labels), d.field);
        }
        pg.emplace(cons.options().dsn, timeout);
        collector = reg.add_collector([this] { refresh(); });
    }

    ~impl() {
        collector.reset();  // waits for a running refresh
        for (auto& [counter, field] : counters) reg.remove(counter);
        for (const auto* g :
             {&batch_size, &queued_bytes, &lag, &assigned, &retry_depth, &dead_depth}) {
            reg.remove(*g);
        }
        for (auto& [i, g] : lanes) reg.remove(g);
        for (auto& [p, g] : partitions) reg.remove(g);
    }

    void refresh() {
        std::lock_guard lock(refresh_mutex);
        const auto s = c.metrics();
        for (auto& [counter, field] : counters) {
            const auto now = static_cast<double>(s.*field);
            const auto before = counter.value();
            if (now > before) counter.inc(now - before);
        }
        batch_size.set(static_cast<double>(s.last_batch_size));
        queued_bytes.set(static_cast<double>(s.queued_bytes));
        lag.set(static_cast<double>(s.lag));
        assigned.set(static_cast<double>(s.assigned_partitions));
        for (std::size_t i = 0; i < s.lane_queue_depth.size(); ++i) {
            auto it = lanes.find(i);
            if (it == lanes.end()) {
                auto labels = group_labels;
                labels["lane"] = std::to_string(i);
                it = lanes
                         .emplace(i, reg.add_gauge("ferry_consumer_lane_queue_depth",
                                                   "Messages queued per lane.", labels))
                         .first;
            }
            it->second.set(static_cast<double>(s.lane_queue_depth[i]));
        }
        // Lag per assigned partition; series of partitions no longer assigned are removed.
        std::map<std::pair<std::string, std::int32_t>, std::int64_t> current;
        for (const auto& p : s.partition_lags) current[{p.topic, p.partition}] = p.lag;
        for (auto it = partitions.begin(); it != partitions.end();) {
            if (current.count(it->first) == 0) {
                reg.remove(it->second);
                it = partitions.erase(it);
            } else {
                ++it;
            }
        }
        for (const auto& [key, value] : current) {
            auto it = partitions.find(key);
            if (it == partitions.end()) {
                auto labels = group_labels;
                labels["topic"] = key.first;
                labels["partition"] = std::to_string(key.second);
                it = partitions
                         .emplace(key, reg.add_gauge(
                                           "ferry_consumer_partition_lag",
                                           "High watermark minus commit position of one assigned "
                                           "partition.",
                                           labels))
                         .first;
            }
            it->second.set(static_cast<double>(value));
        }
        refresh_depths();
    }

    // Counting the tables is a query: at most every depth_interval, and a failure keeps the last
    // values (logged) instead of failing the scrape.
    void refresh_depths() {
        const auto now = clock_type::now();
        if (now < next_depth) return;
        next_depth = now + depth_interval;
        const auto& o = c.options();
        try {
            const auto [in_retry, dead] = pg->with([&](pqxx::connection& conn) {
                pqxx::read_transaction tx{conn};
                const auto r = retry::retry_table(o.schema, o.group).count(tx);
                retry::dead_letter_filter f;
                f.group = o.group;
                f.include_replayed = false;
                const auto d = retry::dead_letters(o.schema).count(tx, f);
                return std::make_pair(r, d);
            });
            retry_depth.set(static_cast<double>(in_retry));
            dead_depth.set(static_cast<double>(dead));
        } catch (const std::exception& e) {
            spdlog::warn("event=metrics_depth_failed group={} error=\"{}\"", o.group,
                         redact_dsn(e.what()));
        }
    }
};

metrics_exporter::metrics_exporter(const consumer& c, ferry::metrics::registry& registry,
                                   std::chrono::milliseconds depth_interval,
                                   std::chrono::milliseconds timeout)
    : _impl(std::make_unique<impl>(c, registry, depth_interval, timeout)) {}
metrics_exporter::~metrics_exporter() = default;

// ---------------------------------------------------------------------------------------------
// http_server

class http_server::impl {
public:
    impl(http_options options, std::vector<const consumer*> consumers)
        : _o(std::move(options)), _registry(ferry::metrics::or_process(_o.metrics)) {
        for (const auto* c : consumers) {
            _exporters.push_back(std::make_unique<metrics_exporter>(
                *c, _registry, _o.depth_interval, _o.probe_timeout));
            _probes.push_back(std::make_unique<readiness_probe>(*c, _o.probe_timeout));
        }
        const auto colon = _o.listen.rfind(':');
        if (colon == std::string::npos || colon == 0) bad_listen();
        _host = _o.listen.substr(0, colon);
        if (_host.size() >= 2 && _host.front() == '[' && _host.back() == ']') {
            _host = _host.substr(1, _host.size() - 2);
        }
        int requested = -1;
        try {
            requested = std::stoi(_o.listen.substr(colon + 1));
        } catch (const std::exception&) {
            bad_listen();
        }
        _server.set_payload_max_length(_o.max_body_bytes);
        _server.set_pre_routing_handler([this](const httplib::Request& req,
                                               httplib::Response& res) {
            if (req.target.size() > _o.max_uri_bytes) {
                res.status = 414;
                res.set_content(
                    "{\"error\":\"request target too long\",\"code\":\"http.uri_too_long\"}",
                    "application/json");
                return httplib::Server::HandlerResponse::Handled;
            }
            if (req.path == "/metrics" && _o.token_for_metrics && !_o.token.empty()) {
                const auto given = bearer_of(req);
                if (!given || !internal::constant_time_equal(*given, _o.token)) {
                    res.status = 401;
                    res.set_header("WWW-Authenticate",
                                   given ? R"(Bearer realm="ferry", error="invalid_token")"
                                         : R"(Bearer realm="ferry")");
                    res.set_content(
                        "{\"error\":\"a valid bearer token is required\",\"code\":\"http."
                        "unauthorized\"}",
                        "application/json");
                    spdlog::warn("event=http_unauthorized path={} remote={} reason={}", req.path,
                                 req.remote_addr, given ? "invalid_token" : "missing_token");
                    return httplib::Server::HandlerResponse::Handled;
                }
            }
            return httplib::Server::HandlerResponse::Unhandled;
        });
        _server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
            res.set_content(_registry.serialize(), ferry::metrics::text_content_type);
        });
        _server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
            res.set_content("ok\n", "text/plain");
        });
        _server.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
            bool all = !_probes.empty();
            std::string body = "{\"consumers\":[";
            for (std::size_t i = 0; i < _probes.size(); ++i) {
                const auto r = _probes[i]->check();
                all = all && r.ready();
                if (i > 0) body += ',';
                body += "{\"group\":\"" + json_escaped(r.group) +
                        "\",\"ready\":" + (r.ready() ? "true" : "false") +
                        ",\"running\":" + (r.running ? "true" : "false") +
                        ",\"assigned_partitions\":" + std::to_string(r.assigned_partitions) +
                        ",\"postgres\":\"" + (r.postgres ? "ok" : "unreachable") + "\"" +
                        ",\"redis\":\"" +
                        (!r.redis_used ? "unused" : (r.redis ? "ok" : "unreachable")) + "\"}";
            }
            body += std::string("],\"ready\":") + (all ? "true" : "false") + "}\n";
            res.status = all ? 200 : 503;
            res.set_content(body, "application/json");
        });
        _port = requested == 0 ? _server.bind_to_any_port(_host)
                               : (_server.bind_to_port(_host, requested) ? requested : -1);
        if (_port <= 0) {
            throw ferry::error(error_kind::permanent, "consumer.http_listen",
                               "cannot listen on " + _o.listen, "http.listen");
        }
        _thread = std::thread([this] { _server.listen_after_bind(); });
    }

    ~impl() { stop(); }

    void stop() {
        if (_thread.joinable()) {
            _server.stop();
            _thread.join();
        }
    }

    [[noreturn]] void bad_listen() const {
        throw ferry::error(error_kind::permanent, "consumer.http_listen",
                           "http.listen must be host:port, got \"" + _o.listen + "\"",
                           "http.listen");
    }

    http_options _o;
    ferry::metrics::registry& _registry;
    std::vector<std::unique_ptr<metrics_exporter>> _exporters;
    std::vector<std::unique_ptr<readiness_probe>> _probes;
    httplib::Server _server;
    std::string _host;
    int _port = -1;
    std::thread _thread;
};

http_server::http_server(http_options options, std::vector<const consumer*> consumers)
    : _impl(std::make_unique<impl>(std::move(options), std::move(consumers))) {}
http_server::~http_server() = default;
const std::string& http_server::host() const { return _impl->_host; }
int http_server::port() const { return _impl->_port; }
void http_server::stop() { _impl->stop(); }

}  // namespace ferry::consumer
