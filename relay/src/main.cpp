// ferry-relay: the relay daemon. Loads the configuration, optionally migrates the schema,
// starts the relay and the HTTP endpoints, and runs until SIGTERM or SIGINT, then stops
// gracefully (bounded by relay.shutdown_timeout) and exits 0.
//
// stdout carries exactly one line for tools and tests: `http.listen=HOST:PORT` once the HTTP
// endpoints are bound. Logs are one line per event on stderr. Exit codes: 0 clean stop,
// 1 start-up failure, 2 invalid configuration or arguments.

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <pqxx/pqxx>
#include <thread>

#include "ferry/checkback/scheduler.hpp"
#include "ferry/common/error.hpp"
#include "ferry/common/redact.hpp"
#include "ferry/config/config.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/outbox/migrate.hpp"
#include "ferry/reconcile/from_config.hpp"
#include "ferry/reconcile/periodic.hpp"
#include "ferry/reconcile/report.hpp"
#include "ferry/reconcile/retention_from_config.hpp"
#include "ferry/relay/relay.hpp"
#include "http_server.hpp"

namespace {

// The check-back scheduler ferry-relay runs for half messages (ADR 0004), built from the
// `checkback:` section, or nullptr when it is disabled.
std::unique_ptr<ferry::checkback::scheduler> make_checkback(const ferry::config::ferry_config& c) {
    if (!c.checkback.enabled) return nullptr;
    ferry::checkback::scheduler_options o;
    o.dsn = c.postgres.dsn;
    o.schema = c.postgres.schema;
    o.tick = c.checkback.tick;
    o.batch_size = static_cast<int>(c.checkback.batch_size);
    for (const auto& [name, g] : c.checkback.groups) {
        if (g.resolver == "callback") {
            ferry::checkback::callback_options co;
            co.dsn = c.postgres.dsn;
            co.schema = c.postgres.schema;
            co.timeout = g.timeout;
            co.liveness = g.liveness;
            o.groups[name] = ferry::checkback::make_callback_resolver(co);
        } else if (g.resolver == "http") {
            ferry::checkback::http_options ho;
            ho.url = g.url;
            ho.timeout = g.timeout;
            ho.headers = g.headers;
            ho.ca_file = g.ca_file;
            ho.client_cert = g.client_cert;
            ho.client_key = g.client_key;
            ho.verify_tls = g.verify_tls;
            o.groups[name] = ferry::checkback::make_http_resolver(ho);
        } else {
            ferry::checkback::sql_options so;
            so.dsn = g.dsn;
            so.query = g.query;
            so.timeout = g.timeout;
            o.groups[name] = ferry::checkback::make_sql_resolver(so);
        }
    }
    return std::make_unique<ferry::checkback::scheduler>(std::move(o));
}

// GET /reports and GET /reports/{id}, served from a bounded pool of report_store connections
// (http.report_connections, waiting at most http.report_pool_wait, then 503). Query parameters
// are checked strictly here: unknown names, an over-long value and a `limit` outside
// 1..http.reports_max_limit are 400s naming the parameter.
ferry::relay::report_routes make_report_routes(const ferry::config::ferry_config& c) {
    using store_pool = ferry::relay::bounded_pool<ferry::reconcile::report_store>;
    const auto dsn = c.postgres.dsn;
    const auto schema = c.postgres.schema;
    const long timeout = std::max<long>(1, c.postgres.connect_timeout.count() / 1000);
    const auto cap = static_cast<std::int64_t>(c.http.reports_max_limit);
    auto pool = std::make_shared<store_pool>(
        c.http.report_connections, c.http.report_pool_wait,
        [=] { return std::make_unique<ferry::reconcile::report_store>(dsn, schema, timeout); });
    auto filter = [cap](const ferry::relay::report_routes::query& q) {
        constexpr std::size_t k_max_value = 256;
        ferry::reconcile::report_filter f;
        f.limit = cap;
        for (const auto& [name, value] : q) {
            if (name != "kind" && name != "group" && name != "topic" && name != "since" &&
                name != "limit") {
                throw ferry::relay::http_bad_request(
                    "http.unknown_parameter",
                    "unknown query parameter (expected kind, group, topic, since, limit)");
            }
            if (value.size() > k_max_value) {
                throw ferry::relay::http_bad_request(
                    "http.bad_" + name,
                    name + " is longer than " + std::to_string(k_max_value) + " characters");
            }
        }
        auto get = [&](const char* k) -> std::optional<std::string> {
            const auto it = q.find(k);
            if (it == q.end() || it->second.empty()) return std::nullopt;
            return it->second;
        };
        f.kind = get("kind");
        f.group = get("group");
        f.topic = get("topic");
        f.since = get("since");
        if (const auto it = q.find("limit"); it != q.end()) {
            f.limit = ferry::relay::parse_limit("limit", it->second, cap);
        }
        return f;
    };
    // A report_store whose connection broke is dropped, not returned to the pool.
    auto with_store = [pool](auto&& fn) {
        auto store = pool->acquire();
        try {
            return fn(*store);
        } catch (const ferry::error& e) {
            if (e.kind() != ferry::error_kind::permanent) store.discard();
            throw;
        } catch (...) {
            store.discard();
            throw;
        }
    };
    ferry::relay::report_routes r;
    r.list = [=](const ferry::relay::report_routes::query& q) {
        const auto f = filter(q);
        return with_store([&](ferry::reconcile::report_store& store) {
            return std::pair<int, std::string>{200, ferry::reconcile::runs_json(store.list(f))};
        });
    };
    r.show = [=](std::int64_t id, const ferry::relay::report_routes::query& q) {
        const auto f = filter(q);
        return with_store([&](ferry::reconcile::report_store& store) {
            const auto run = store.get(id);
            if (!run) {
                return std::pair<int, std::string>{404, "{\"error\":\"no reconciliation run " +
                                                            std::to_string(id) +
                                                            "\",\"code\":\"http.not_found\"}"};
            }
            return std::pair<int, std::string>{
                200, ferry::reconcile::report_json(*run, store.items(id, f))};
        });
    };
    return r;
}

// The HTTP limits of the `http:` section; the bearer token comes from the environment variable
// http.token_env names (never from YAML). Throws ferry::error(permanent) when it is unset or
// too short to be a secret.
ferry::relay::http_limits make_http_limits(const ferry::config::ferry_config& c) {
    constexpr std::size_t k_min_token = 16;
    ferry::relay::http_limits l;
    l.token_for_metrics = c.http.token_for_metrics;
    l.max_body_bytes = c.http.max_body_bytes;
    l.max_uri_bytes = c.http.max_uri_bytes;
    if (c.http.token_env.empty()) return l;
    const char* value = std::getenv(c.http.token_env.c_str());
    if (value == nullptr || *value == '\0') {
        throw ferry::error(ferry::error_kind::permanent, "relay.http_token",
                           "http.token_env: environment variable " + c.http.token_env +
                               " is not set or empty (it holds the bearer token for /reports)",
                           "http.token_env");
    }
    l.token = value;
    if (l.token.size() < k_min_token) {
        throw ferry::error(ferry::error_kind::permanent, "relay.http_token",
                           "http.token_env: the token in " + c.http.token_env +
                               " is shorter than " + std::to_string(k_min_token) + " characters",
                           "http.token_env");
    }
    return l;
}

ferry::relay::relay_options to_options(const ferry::config::ferry_config& c) {
    ferry::relay::relay_options o;
    o.dsn = c.postgres.dsn;
    o.schema = c.postgres.schema;
    o.connect_timeout = c.postgres.connect_timeout;
    o.brokers = c.kafka.brokers;
    o.compression = c.kafka.compression;
    o.topic_prefix = c.kafka.topic_prefix;
    o.topic_map = c.kafka.topic_map;
    o.properties = c.kafka.properties;
    o.instance_id = c.relay.instance_id;
    o.source = c.relay.source;
    o.wal_slot = c.relay.wal_slot;
    o.wal_publication = c.relay.wal_publication;
    o.lease_groups = static_cast<int>(c.relay.lease_groups);
    o.lease_ttl = c.relay.lease_ttl;
    o.batch_size = c.relay.batch_size;
    o.poll_min = c.relay.poll_min;
    o.poll_max = c.relay.poll_max;
    o.delivery_timeout = c.relay.delivery_timeout;
    o.shutdown_timeout = c.relay.shutdown_timeout;
    o.published_retention = c.relay.published_retention;
    o.ledger_payloads = c.relay.ledger_payloads;
    o.mark_lanes = c.relay.mark_lanes;
    return o;
}

// %j: the message, escaped for a JSON string (log lines carry quoted values).
class json_message_flag : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm&,
                spdlog::memory_buf_t& dest) override {
        for (char c : msg.payload) {
            switch (c) {
                case '"':
                    dest.append(std::string_view("\\\""));
                    break;
                case '\\':
                    dest.append(std::string_view("\\\\"));
                    break;
                case '\n':
                    dest.append(std::string_view("\\n"));
                    break;
                default:
                    if (static_cast<unsigned char>(c) < 0x20) {
                        dest.push_back(' ');
                    } else {
                        dest.push_back(c);
                    }
            }
        }
    }
    [[nodiscard]] std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<json_message_flag>();
    }
};

void setup_logging(const ferry::config::log_config& log) {
    auto logger = spdlog::stderr_logger_mt("ferry-relay");
    if (log.format == "json") {
        auto formatter =
            std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
        formatter->add_flag<json_message_flag>('j').set_pattern(
            R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","logger":"%n","msg":"%j"})");
        logger->set_formatter(std::move(formatter));
    } else {
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ level=%l %v", spdlog::pattern_time_type::utc);
    }
    logger->set_level(spdlog::level::from_str(log.level));
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ferry-relay - publishes the transactional outbox to Kafka"};
    std::string config_path;
    bool migrate = false;
    app.add_option("-c,--config", config_path,
                   "YAML configuration file (default: defaults + FERRY_* environment)");
    app.add_flag("--migrate", migrate, "Apply pending schema migrations before starting");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }

    const auto loaded = config_path.empty() ? ferry::config::load_defaults()
                                            : ferry::config::load_file(config_path);
    if (!loaded.ok()) {
        for (const auto& d : loaded.errors) std::cerr << d.to_string() << '\n';
        return 2;
    }
    const auto& cfg = loaded.config;
    setup_logging(cfg.log);

    // Block the stop signals before any thread starts, so only sigwait() below sees them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    try {
        if (migrate || cfg.postgres.migrate_on_start) {
            auto conn = ferry::internal::connect(
                cfg.postgres.dsn, std::max<long>(1, cfg.postgres.connect_timeout.count() / 1000),
                "relay");
            const auto r = ferry::outbox::migrate(conn, cfg.postgres.schema);
            spdlog::info("event=migrated schema={} applied={} version={}", cfg.postgres.schema,
                         r.applied.size(), r.current_version);
        }

        // One registry for the process (ADR 0030): the relay, check-back and reconciliation all
        // register into it, and /metrics serializes it.
        auto& metrics = ferry::metrics::process_registry();
        auto limits = make_http_limits(cfg);  // before anything starts: a bad token is fatal
        ferry::relay::relay relay(to_options(cfg), &metrics);
        relay.start();
        auto checkback = make_checkback(cfg);
        if (checkback) {
            checkback->start();
            spdlog::info("event=checkback_started groups={} tick_ms={}",
                         cfg.checkback.groups.size(), cfg.checkback.tick.count());
        }
        std::unique_ptr<ferry::reconcile::periodic> reconciler;
        if (cfg.reconcile.enabled) {
            auto ro = ferry::reconcile::options_from_config(cfg);
            ro.owner = relay.instance_id();
            reconciler =
                std::make_unique<ferry::reconcile::periodic>(std::move(ro), cfg.reconcile.interval);
            reconciler->start();
            spdlog::info("event=reconcile_started groups={} interval_ms={}",
                         cfg.reconcile.groups.size(), cfg.reconcile.interval.count());
        }
        // Retention of the tables that keep rows after a message's life ended (issue 14).
        std::unique_ptr<ferry::outbox::retention_runner> retention;
        if (cfg.retention.interval.count() > 0) {
            auto o = ferry::reconcile::retention_options(cfg);
            o.metrics = &metrics;
            o.on_error = [](const std::string& e) {
                spdlog::warn("event=retention_failed error=\"{}\"", e);
            };
            retention = std::make_unique<ferry::outbox::retention_runner>(
                ferry::reconcile::retained_tables(cfg), std::move(o));
            retention->start(cfg.postgres.dsn, cfg.retention.interval,
                             cfg.postgres.connect_timeout);
        }
        ferry::relay::http_server http(
            cfg.http.listen, metrics, [&relay] { return relay.ready(); }, make_report_routes(cfg),
            std::move(limits));
        const std::string bound =
            (http.host().find(':') != std::string::npos ? "[" + http.host() + "]" : http.host()) +
            ":" + std::to_string(http.port());
        spdlog::info("event=http_listening address={} instance={}", bound, relay.instance_id());
        std::printf("http.listen=%s\n", bound.c_str());
        std::fflush(stdout);

        int sig = 0;
        while (sigwait(&stop_signals, &sig) != 0) {
        }
        spdlog::info("event=stopping signal={} shutdown_timeout_ms={}", strsignal(sig),
                     cfg.relay.shutdown_timeout.count());
        // The stop is bounded by shutdown_timeout plus one database round trip; should a
        // server hang beyond that, exit anyway (rows left unmarked are republished later).
        const auto hard_limit = cfg.relay.shutdown_timeout + std::chrono::seconds(5);
        std::thread([hard_limit] {
            std::this_thread::sleep_for(hard_limit);
            spdlog::error("event=forced_exit after_ms={}", hard_limit.count());
            std::_Exit(1);
        }).detach();
        if (checkback) checkback->stop();
        if (reconciler) reconciler->stop();
        if (retention) retention->stop();
        relay.stop();
        http.stop();
        const auto c = relay.counts();
        spdlog::info("event=stopped published={} parked={} expired={} fenced={}", c.published,
                     c.parked, c.expired, c.fenced);
        return 0;
    } catch (const ferry::error& e) {
        spdlog::error("event=startup_failed code={} error=\"{}\"", e.code(), e.what());
        return e.kind() == ferry::error_kind::permanent ? 2 : 1;
    } catch (const std::exception& e) {
        spdlog::error("event=startup_failed error=\"{}\"", e.what());
        return 1;
    }
}
