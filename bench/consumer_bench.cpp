// scripts/bench consumer: messages/s through the consumer runtime (ferry::consumer) with
//   none            - no dedup, no-op plain handler (the baseline),
//   redis           - Redis dedup with claims and done marks pipelined per batch,
//   inbox           - the PostgreSQL inbox, batched effect transactions (tx_batch_max 100),
//                     no-op tx_handler,
//   redis_and_inbox - both tiers,
//   tx_effect       - no dedup, a tx_handler doing one UPDATE per message (a prepared statement,
//                     as a service would write it), batched the same way (the baseline for the
//                     inbox's own cost),
//   inbox_tx_effect - the inbox with that same UPDATE handler,
// and the ratios of issue 12: inbox vs none (target >= 25%), Redis cost vs none (<= 15%), and
// the inbox's cost vs the same transactional effect without it (<= 20%).
//
// One topic of N records (200-byte payloads, 1000 keys, 16 partitions) is produced once. Every
// pass is a fresh consumer group with 4 lanes, timed from its first record polled until all N
// are applied or 5 s have passed (the group join is not measured); a mode's round runs passes
// until at least 5 s are measured and reports their total messages / total time. Modes are
// interleaved in rounds so they share machine noise; the medians of the rounds are reported.
//
// Needs FERRY_TEST_PG_DSN, FERRY_TEST_REDIS_URL, FERRY_TEST_KAFKA_BROKERS (scripts/bench).
// Trial runs (profiling one mode): --modes a,b (only those modes, no 100 us profile),
// --rounds N, --seconds S (minimum measured per mode round); FERRY_BENCH_TX_BATCH_MAX overrides
// tx_batch_max. The committed JSON comes from a run with the defaults.
#include <arpa/inet.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <sstream>
#include <thread>

#include "bench_util.hpp"
#include "ferry/consumer/consumer.hpp"
#include "ferry/outbox/migrate.hpp"

using namespace ferry;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

std::string env_or_die(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) {
        std::cerr << "bench_consumer: " << name << " is not set (run through scripts/bench)\n";
        std::exit(2);
    }
    return v;
}

// Creates the topic through ferry-dev-kafka's control port when there is one (more partitions
// than the mock's auto-created 4); otherwise the first produce auto-creates it.
void create_topic(const std::string& topic, int partitions) {
    const char* ctl = std::getenv("FERRY_TEST_KAFKA_CONTROL");
    if (ctl == nullptr || *ctl == 0) return;
    std::string s = ctl;
    const auto colon = s.rfind(':');
    const int port = std::atoi(s.substr(colon == std::string::npos ? 0 : colon + 1).c_str());
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        const auto line = "create-topic " + topic + " " + std::to_string(partitions) + "\n";
        (void)!::write(fd, line.data(), line.size());
        char buf[256];
        (void)!::read(fd, buf, sizeof buf);
    }
    ::close(fd);
}

std::string message_id(long long n) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "01900000-0000-7000-8000-%012lld", n);
    return buf;
}

// Delivery reports: only acknowledged records count (the mock can refuse some under load).
void count_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* counts = static_cast<std::pair<long, long>*>(opaque);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ++counts->first;
    } else {
        ++counts->second;
    }
}

// Produces `n` records; returns how many were acknowledged (the number to consume).
int produce(const std::string& brokers, const std::string& topic, int n) {
    char err[512];
    std::pair<long, long> counts{0, 0};
    auto* conf = rd_kafka_conf_new();
    rd_kafka_conf_set_dr_msg_cb(conf, &count_delivery);
    rd_kafka_conf_set_opaque(conf, &counts);
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err);
    rd_kafka_conf_set(conf, "linger.ms", "20", err, sizeof err);
    rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err);
    auto* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    const std::string payload(200, 'p');
    for (int i = 0; i < n; ++i) {
        const auto key = "key-" + std::to_string(i % 1000);
        const auto id = message_id(i);
        auto* h = rd_kafka_headers_new(2);
        rd_kafka_header_add(h, "ferry-message-id", -1, id.data(), static_cast<ssize_t>(id.size()));
        rd_kafka_header_add(h, "ferry-created-at", -1, "2026-01-01T00:00:00Z", -1);
        while (
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()),
                              RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
                              RD_KAFKA_V_VALUE(const_cast<char*>(payload.data()), payload.size()),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                              RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rk, 10);
        }
        rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        std::cerr << "bench_consumer: produce did not complete\n";
        std::exit(1);
    }
    rd_kafka_destroy(rk);
    if (counts.second > 0) {
        std::cerr << "bench_consumer: " << counts.second << " of " << n
                  << " records were not acknowledged; measuring the " << counts.first
                  << " that were\n";
    }
    return static_cast<int>(counts.first);
}

struct run_result {
    double msgs_per_s = 0;
    double seconds = 0;
    std::uint64_t messages = 0;
    std::uint64_t batches = 0;
    std::uint64_t batched = 0;
};

enum class handler_kind { noop, update };

struct bench_mode {
    std::string name;
    consumer::dedup_mode dedup;
    handler_kind handler;
};

// One pass: a fresh group reads the topic until all `n` are applied or `window` has passed.
// `work`: simulated per-message handler time (an I/O wait, like a downstream call), or zero.
run_result run_once(const bench_mode& bm, const std::string& topic, int n, const std::string& tag,
                    const std::string& dsn, const std::string& schema,
                    std::chrono::microseconds work = std::chrono::microseconds(0),
                    std::chrono::milliseconds window = std::chrono::milliseconds(5000)) {
    const auto mode = bm.dedup;
    consumer::consumer_options o;
    o.brokers = env_or_die("FERRY_TEST_KAFKA_BROKERS");
    o.group = "bench_" + std::to_string(::getpid()) + "_" + bm.name + "_" + tag + "_" +
              std::to_string(work.count());
    o.dsn = dsn;
    o.schema = schema;
    o.dedup = mode;
    o.redis_url = env_or_die("FERRY_TEST_REDIS_URL");
    o.redis_key_prefix = o.group;
    o.done_window = 10min;
    o.lanes = 4;
    o.max_batch = 500;
    o.kafka_properties["fetch.wait.max.ms"] = "10";
    if (const char* b = std::getenv("FERRY_BENCH_TX_BATCH_MAX")) {
        o.tx_batch_max = static_cast<std::size_t>(std::max(1, std::atoi(b)));
    }
    consumer::consumer c(o);
    const std::string update = "UPDATE " + schema + ".bench_effect SET n = n + 1 WHERE key = $1";
    if (bm.handler == handler_kind::update) {
        c.subscribe(topic,
                    consumer::tx_handler([update](const consumer::message& m, pqxx::work& tx) {
                        // Prepared once per connection (libpqxx 6 prepares lazily and accepts
                        // the same definition again): no parse and plan per message.
                        tx.conn().prepare("bench_effect_update", update);
                        tx.exec_prepared("bench_effect_update", m.key.value_or(""));
                    }));
    } else if (mode == consumer::dedup_mode::inbox ||
               mode == consumer::dedup_mode::redis_and_inbox) {
        c.subscribe(topic, consumer::tx_handler([work](const consumer::message&, pqxx::work&) {
                        if (work.count() > 0) std::this_thread::sleep_for(work);
                    }));
    } else {
        c.subscribe(topic, consumer::handler([work](const consumer::message&) {
                        if (work.count() > 0) std::this_thread::sleep_for(work);
                    }));
    }
    c.start();
    const auto deadline = clock_type::now() + 300s;
    while (c.metrics().consumed == 0 && clock_type::now() < deadline)
        std::this_thread::sleep_for(1ms);
    const auto t0 = clock_type::now();
    const auto end = std::min(deadline, t0 + window);
    while (clock_type::now() < end) {
        const auto m = c.metrics();
        if (m.processed + m.duplicates_absorbed >= static_cast<std::uint64_t>(n)) break;
        std::this_thread::sleep_for(1ms);
    }
    const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    const auto m = c.metrics();
    c.stop();
    const auto done = m.processed + m.duplicates_absorbed;
    if (done == 0) {
        std::cerr << "bench_consumer: " << bm.name << " applied nothing\n";
        std::exit(1);
    }
    return {static_cast<double>(done) / secs, secs, done, m.batches, m.batched_messages};
}

// One round of a mode: passes until at least `min_measured` seconds were measured.
run_result run_round(const bench_mode& bm, const std::string& topic, int n, int round,
                     const std::string& dsn, const std::string& schema,
                     std::chrono::microseconds work = std::chrono::microseconds(0),
                     double min_measured = 5.0) {
    run_result total;
    int pass = 0;
    do {
        const auto r = run_once(bm, topic, n, std::to_string(round) + "_" + std::to_string(pass),
                                dsn, schema, work);
        total.seconds += r.seconds;
        total.messages += r.messages;
        total.batches += r.batches;
        total.batched += r.batched;
        ++pass;
    } while (total.seconds < min_measured);
    total.msgs_per_s = static_cast<double>(total.messages) / total.seconds;
    return total;
}

}  // namespace

int main(int argc, char** argv) {
    const auto a = bench::args::parse(argc, argv);
    const auto dsn = env_or_die("FERRY_TEST_PG_DSN");
    const auto brokers = env_or_die("FERRY_TEST_KAFKA_BROKERS");
    (void)env_or_die("FERRY_TEST_REDIS_URL");
    const std::string schema = "bench_consumer";
    {
        pqxx::connection conn{dsn};
        {
            pqxx::work tx{conn};
            tx.exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE");
            tx.commit();
        }
        (void)outbox::migrate(conn, schema);
        // The transactional effect: one counter row per key, one UPDATE per message.
        pqxx::work tx{conn};
        tx.exec("CREATE TABLE " + schema +
                ".bench_effect (key text PRIMARY KEY, n bigint NOT NULL DEFAULT 0)");
        tx.exec("INSERT INTO " + schema +
                ".bench_effect (key) SELECT 'key-' || g FROM generate_series(0, 999) g");
        tx.commit();
    }
    // 200k x ~330 B over 16 partitions stays below the mock cluster's per-partition log limit
    // (~5 MB; beyond it the mock drops its oldest segments).
    const int produced = a.scaled(200000);
    int rounds = 3;
    double min_seconds = 5.0;
    std::set<std::string> only;
    for (int i = 1; i + 1 < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--rounds") rounds = std::max(1, std::atoi(argv[i + 1]));
        if (arg == "--seconds") min_seconds = std::max(0.1, std::atof(argv[i + 1]));
        if (arg == "--modes") {
            std::stringstream ss(argv[i + 1]);
            for (std::string m; std::getline(ss, m, ',');) only.insert(m);
        }
    }
    const std::string topic = "bench_consumer_" + std::to_string(::getpid());
    create_topic(topic, 16);
    const int n = produce(brokers, topic, produced);

    std::vector<bench_mode> modes{
        {"none", consumer::dedup_mode::none, handler_kind::noop},
        {"redis", consumer::dedup_mode::redis, handler_kind::noop},
        {"inbox", consumer::dedup_mode::inbox, handler_kind::noop},
        {"redis_and_inbox", consumer::dedup_mode::redis_and_inbox, handler_kind::noop},
        {"tx_effect", consumer::dedup_mode::none, handler_kind::update},
        {"inbox_tx_effect", consumer::dedup_mode::inbox, handler_kind::update},
    };
    if (!only.empty()) {
        std::erase_if(modes, [&](const bench_mode& m) { return only.count(m.name) == 0; });
        if (modes.empty()) {
            std::cerr << "bench_consumer: --modes names no known mode\n";
            return 2;
        }
    }
    std::map<std::string, std::vector<double>> rates;
    std::map<std::string, double> avg_batch;
    for (int r = 0; r < rounds; ++r) {
        for (const auto& mode : modes) {
            const auto res = run_round(mode, topic, n, r, dsn, schema, {}, min_seconds);
            rates[mode.name].push_back(res.msgs_per_s);
            if (res.batches > 0) {
                avg_batch[mode.name] =
                    static_cast<double>(res.batched) / static_cast<double>(res.batches);
            }
            std::printf(
                "round %d %-16s %10.0f msg/s (%llu messages in %.2f s measured, avg batch %.1f)\n",
                r, mode.name.c_str(), res.msgs_per_s, static_cast<unsigned long long>(res.messages),
                res.seconds,
                res.batches > 0
                    ? static_cast<double>(res.batched) / static_cast<double>(res.batches)
                    : 0.0);
            std::fflush(stdout);
        }
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    if (!only.empty()) return 0;  // a trial run: the rounds above are its output
    const double base = median(rates["none"]);
    nlohmann::json j;
    j["benchmark"] = "consumer";
    j["messages_produced"] = produced;
    j["messages_in_topic"] = n;
    j["rounds"] = rounds;
    j["min_measured_seconds_per_mode_round"] = 5;
    j["lanes"] = 4;
    j["tx_batch_max"] = 100;
    j["payload_bytes"] = 200;
    j["keys"] = 1000;
    std::vector<std::tuple<std::string, double, std::string>> rows;
    for (const auto& mode : modes) {
        const double med = median(rates[mode.name]);
        const double cost = base > 0 ? (1.0 - med / base) * 100.0 : 0;
        j["modes"][mode.name] = {{"msgs_per_s_median", med},
                                 {"msgs_per_s_rounds", rates[mode.name]},
                                 {"cost_vs_none_pct", cost},
                                 {"avg_batch_size", avg_batch[mode.name]}};
        rows.emplace_back(mode.name + " throughput (median)", med, "msg/s");
    }
    const double inbox = median(rates["inbox"]);
    const double redis = median(rates["redis"]);
    const double tx_effect = median(rates["tx_effect"]);
    const double inbox_tx = median(rates["inbox_tx_effect"]);
    const double inbox_vs_none = base > 0 ? inbox / base : 0;
    const double redis_cost = base > 0 ? (1.0 - redis / base) * 100.0 : 0;
    const double inbox_cost_tx = tx_effect > 0 ? (1.0 - inbox_tx / tx_effect) * 100.0 : 0;
    j["ratios"] = {{"inbox_vs_none", inbox_vs_none},
                   {"redis_cost_pct", redis_cost},
                   {"inbox_cost_vs_tx_effect_pct", inbox_cost_tx}};
    j["targets"] = {{"inbox_vs_none_min", 0.25},
                    {"redis_cost_pct_max", 15},
                    {"inbox_cost_vs_tx_effect_pct_max", 20},
                    {"inbox_vs_none_met", inbox_vs_none >= 0.25},
                    {"redis_cost_met", redis_cost <= 15.0},
                    {"inbox_cost_vs_tx_effect_met", inbox_cost_tx <= 20.0}};
    rows.emplace_back("ratio inbox / none", inbox_vs_none * 100.0, "%");
    rows.emplace_back("redis cost vs none", redis_cost, "%");
    rows.emplace_back("inbox cost vs tx_effect", inbox_cost_tx, "%");

    // Second profile: a handler that waits 100 us per message (a fast downstream call), none
    // vs redis only. This is where the dedup cost matters to a real service.
    const int n2 = std::min(n, a.scaled(20000));
    const auto work = std::chrono::microseconds(100);
    std::map<std::string, std::vector<double>> rates2;
    for (int r = 0; r < rounds; ++r) {
        for (const auto& mode : {modes[0], modes[1]}) {
            const auto res = run_round(mode, topic, n2, r, dsn, schema, work, 0.0);
            rates2[mode.name].push_back(res.msgs_per_s);
            std::printf("round %d %-16s %10.0f msg/s (%.2f s, handler 100us)\n", r,
                        mode.name.c_str(), res.msgs_per_s, res.seconds);
            std::fflush(stdout);
        }
    }
    const double base2 = median(rates2["none"]);
    const double redis2 = median(rates2["redis"]);
    const double cost2 = base2 > 0 ? (1.0 - redis2 / base2) * 100.0 : 0;
    j["handler_100us"] = {{"messages", n2},
                          {"none_msgs_per_s_median", base2},
                          {"redis_msgs_per_s_median", redis2},
                          {"none_rounds", rates2["none"]},
                          {"redis_rounds", rates2["redis"]},
                          {"redis_cost_vs_none_pct", cost2},
                          {"met", cost2 <= 15.0}};
    rows.emplace_back("handler 100us: none (median)", base2, "msg/s");
    rows.emplace_back("handler 100us: redis (median)", redis2, "msg/s");
    rows.emplace_back("handler 100us: redis cost vs none", cost2, "%");
    bench::print_table("consumer runtime throughput (" + std::to_string(n) + " messages, 4 lanes)",
                       rows);
    bench::write_json(a, j);
    return 0;
}
