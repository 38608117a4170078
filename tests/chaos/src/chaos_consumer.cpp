// chaos-consumer: one process of a campaign consumer group (scripts/chaos).
//
//   chaos-consumer --config FILE --group G --dedup inbox|redis_and_inbox|redis|none --topic T
//                  [--lease S] [--session-timeout S] [--fail-every N] [--effect-ms MS]
//
// The effect appends a row to chaos.witness (no unique constraint): in the inbox modes inside
// the runtime's transaction (tx_handler: effect + inbox row commit together), otherwise in a
// transaction of its own (the negative controls). --fail-every N: a message whose id hashes to
// 0 mod N fails its first two attempts (retryable), so retries are pending in the retry table
// when faults strike. --effect-ms slows each effect (work in flight at a rebalance).
// FERRY_FAULT (test builds) arms the runtime's named fault point. stdout: "...: ready" once
// started, a progress line every 2 s.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <ferry/config/config.hpp>
#include <ferry/consumer/consumer.hpp>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <string>
#include <thread>

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct parsed {
    std::string key;
    long long seq = -1;
};

parsed parse(const ferry::consumer::message& m) {
    try {
        const auto j = nlohmann::json::parse(m.payload);
        return {j.at("key").get<std::string>(), j.at("seq").get<long long>()};
    } catch (const std::exception& e) {
        throw ferry::error(ferry::error_kind::permanent, "chaos.bad_payload",
                           std::string("unreadable chaos payload: ") + e.what());
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Ferry chaos campaign consumer"};
    std::string config_path, group, dedup = "inbox", topic = "chaos";
    int lease_s = 5, session_timeout_s = 6, fail_every = 0, effect_ms = 0;
    std::size_t lanes = 4;
    app.add_option("--config", config_path, "Ferry YAML configuration")->required();
    app.add_option("--group", group, "consumer group")->required();
    app.add_option("--dedup", dedup, "dedup mode")
        ->check(CLI::IsMember({"inbox", "redis_and_inbox", "redis", "none"}));
    app.add_option("--topic", topic, "outbox topic (kafka.topic_prefix applies)");
    app.add_option("--lease", lease_s, "Redis processing lease, seconds");
    app.add_option("--session-timeout", session_timeout_s, "Kafka session timeout, seconds");
    app.add_option("--fail-every", fail_every, "fail 1 in N messages twice (0: never)");
    app.add_option("--effect-ms", effect_ms, "sleep in each effect");
    app.add_option("--lanes", lanes, "lanes");
    CLI11_PARSE(app, argc, argv);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);

    auto loaded = ferry::config::load_file(config_path);
    if (!loaded.ok()) {
        for (const auto& d : loaded.errors) std::cerr << d.to_string() << "\n";
        return 2;
    }
    const auto& cfg = loaded.config;
    const std::string kafka_topic = cfg.kafka.topic_prefix + topic;
    const std::string me = "chaos-consumer[" + group + "/" + std::to_string(::getpid()) + "]";
    try {
        ferry::consumer::consumer_options o;
        o.brokers = cfg.kafka.brokers;
        o.kafka_properties = cfg.kafka.properties;
        o.group = group;
        o.instance_id = me;
        o.dsn = cfg.postgres.dsn;
        o.schema = cfg.postgres.schema;
        o.connect_timeout = cfg.postgres.connect_timeout;
        o.redis_url = cfg.redis.url;
        o.lanes = lanes;
        o.lease = std::chrono::seconds(lease_s);
        o.session_timeout = std::chrono::seconds(session_timeout_s);
        o.revoke_timeout = std::chrono::seconds(3);
        o.shutdown_timeout = std::chrono::seconds(5);
        o.retry.immediate_tries = 1;
        o.retry.base_delay = std::chrono::milliseconds(300);
        o.retry.max_delay = std::chrono::seconds(2);
        o.retry.max_attempts = 50;
        o.retry_claim_ttl = std::chrono::seconds(10);
        o.dedup = dedup == "redis_and_inbox" ? ferry::consumer::dedup_mode::redis_and_inbox
                  : dedup == "inbox"         ? ferry::consumer::dedup_mode::inbox
                  : dedup == "redis"         ? ferry::consumer::dedup_mode::redis
                                             : ferry::consumer::dedup_mode::none;
        auto apply = [=](const ferry::consumer::message& m, pqxx::work& tx) {
            const auto p = parse(m);
            if (fail_every > 0 && m.attempt <= 2 &&
                std::hash<std::string>{}(m.message_id) % static_cast<std::size_t>(fail_every) ==
                    0) {
                throw ferry::error(
                    ferry::error_kind::retryable, "chaos.injected",
                    "injected transient failure, attempt " + std::to_string(m.attempt));
            }
            if (effect_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(effect_ms));
            tx.exec_params(
                "INSERT INTO chaos.witness (consumer_group, message_id, key, seq, instance) "
                "VALUES ($1, $2::uuid, $3, $4, $5)",
                group, m.message_id, p.key, p.seq, me);
        };
        ferry::consumer::consumer c{o};
        if (o.dedup == ferry::consumer::dedup_mode::inbox ||
            o.dedup == ferry::consumer::dedup_mode::redis_and_inbox) {
            c.subscribe(kafka_topic, ferry::consumer::tx_handler(apply));
        } else {
            const std::string dsn = o.dsn;
            c.subscribe(kafka_topic,
                        ferry::consumer::handler([apply, dsn](const ferry::consumer::message& m) {
                            thread_local std::unique_ptr<pqxx::connection> conn;
                            try {
                                if (!conn || !conn->is_open()) {
                                    conn = std::make_unique<pqxx::connection>(dsn);
                                }
                                pqxx::work tx{*conn};
                                apply(m, tx);
                                tx.commit();
                            } catch (const pqxx::broken_connection&) {
                                conn.reset();
                                throw;
                            }
                        }));
        }
        // start() throws while a server is unreachable at start-up (a fault may be active):
        // the campaign restarts us, so just retry here for a while.
        for (int attempt = 1;; ++attempt) {
            try {
                c.start();
                break;
            } catch (const std::exception& e) {
                if (attempt >= 60 || g_stop) throw;
                std::cerr << me << ": start failed (" << e.what() << "), retrying\n";
                std::this_thread::sleep_for(std::chrono::seconds(1));
            }
        }
        std::cout << me << ": ready topic=" << kafka_topic << " dedup=" << dedup << std::endl;
        auto next_report = std::chrono::steady_clock::now();
        while (g_stop == 0) {
            if (std::chrono::steady_clock::now() >= next_report) {
                const auto s = c.metrics();
                std::cout << me << ": processed=" << s.processed
                          << " duplicates_absorbed=" << s.duplicates_absorbed
                          << " retries=" << s.retries << " lag=" << s.lag
                          << " dead_letters=" << s.dead_letters << std::endl;
                next_report += std::chrono::seconds(2);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        c.stop();
    } catch (const std::exception& e) {
        std::cerr << me << ": " << e.what() << "\n";
        return 1;
    }
    return 0;
}
