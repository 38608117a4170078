// A tiny consumer service for fault tests: consumes one topic with the witness handler and runs
// until SIGTERM/SIGINT. With FERRY_FAULT=after_effect_before_offset (test builds) the runtime
// SIGKILLs itself right after the first effect commits, before its offset is committed.
//
//   consumer_test_app --brokers B --dsn D --schema S --group G --topic T --mode
//   none|redis|inbox|both
//                     [--redis URL] [--prefix P] [--name N] [--lease-ms L]
//                     [--static-id ID] (librdkafka group.instance.id: static membership)
//                     [--delay-ms D] (each handler call first waits D ms)
//                     [--session-ms S] (session timeout, default 6000)
// Other fault points: FERRY_FAULT=redis_after_effect_before_done (SIGKILL with effects applied
// and their Redis "done" marks not yet written).
// stdout: "READY", then "STATS processed=N duplicates=M" on exit.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "ferry/consumer/consumer.hpp"

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

int seq_of(const std::string& payload) {
    const auto pos = payload.rfind(':');
    return pos == std::string::npos ? 0 : std::atoi(payload.c_str() + pos + 1);
}

}  // namespace

int main(int argc, char** argv) {
    std::map<std::string, std::string> a;
    for (int i = 1; i + 1 < argc; i += 2) a[argv[i]] = argv[i + 1];
    const std::string schema = a["--schema"];
    const std::string name = a.count("--name") ? a["--name"] : "app";
    ferry::consumer::consumer_options o;
    o.brokers = a["--brokers"];
    o.dsn = a["--dsn"];
    o.schema = schema;
    o.group = a["--group"];
    o.redis_url = a.count("--redis") ? a["--redis"] : "redis://127.0.0.1:6379/0";
    o.redis_key_prefix = a.count("--prefix") ? a["--prefix"] : "ferry:test";
    o.session_timeout =
        std::chrono::milliseconds(a.count("--session-ms") ? std::stoll(a["--session-ms"]) : 6000);
    o.commit_interval = std::chrono::milliseconds(100);
    if (a.count("--lease-ms")) o.lease = std::chrono::milliseconds(std::stoll(a["--lease-ms"]));
    if (a.count("--static-id")) o.kafka_properties["group.instance.id"] = a["--static-id"];
    const auto mode = a["--mode"];
    o.dedup = mode == "none"    ? ferry::consumer::dedup_mode::none
              : mode == "redis" ? ferry::consumer::dedup_mode::redis
              : mode == "both"  ? ferry::consumer::dedup_mode::redis_and_inbox
                                : ferry::consumer::dedup_mode::inbox;
    const auto delay =
        std::chrono::milliseconds(a.count("--delay-ms") ? std::stoll(a["--delay-ms"]) : 0);
    const bool tx_mode = o.dedup == ferry::consumer::dedup_mode::inbox ||
                         o.dedup == ferry::consumer::dedup_mode::redis_and_inbox;
    const std::string insert =
        "INSERT INTO \"" + schema +
        "\".witness (message_id, key, seq, consumer) VALUES ($1::uuid, $2, $3, $4)";
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    try {
        ferry::consumer::consumer c(o);
        if (tx_mode) {
            c.subscribe(
                a["--topic"],
                ferry::consumer::tx_handler([&](const ferry::consumer::message& m, pqxx::work& tx) {
                    if (delay.count() > 0) std::this_thread::sleep_for(delay);
                    tx.exec_params(insert, m.message_id, m.key.value_or(""), seq_of(m.payload),
                                   name);
                }));
        } else {
            // Plain handler: its own autocommit write per message, one connection per lane.
            c.subscribe(a["--topic"],
                        ferry::consumer::handler([&](const ferry::consumer::message& m) {
                            thread_local std::unique_ptr<pqxx::connection> conn;
                            if (!conn) conn = std::make_unique<pqxx::connection>(o.dsn);
                            pqxx::work tx{*conn};
                            tx.exec_params(insert, m.message_id, m.key.value_or(""),
                                           seq_of(m.payload), name);
                            tx.commit();
                        }));
        }
        c.start();
        std::printf("READY\n");
        std::fflush(stdout);
        while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        c.stop();
        const auto s = c.metrics();
        std::printf("STATS processed=%llu duplicates=%llu\n",
                    static_cast<unsigned long long>(s.processed),
                    static_cast<unsigned long long>(s.duplicates_absorbed));
        std::fflush(stdout);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "consumer_test_app: %s\n", e.what());
        return 1;
    }
    return 0;
}
