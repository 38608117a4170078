// scripts/bench consumer: messages/s through the consumer runtime (ferry::consumer) with
//   none            - no dedup (the baseline),
//   redis           - Redis dedup with claims pipelined per polled batch,
//   inbox           - the PostgreSQL inbox row in each message's transaction,
//   redis_and_inbox - both tiers,
// and the cost of each against no dedup (target: Redis costs at most 15%).
//
// One topic of N records (200-byte payloads, 1000 keys) is produced once; every measurement is
// a fresh consumer group reading all of it with 4 lanes and a no-op handler (a no-op
// transaction for the inbox modes), timed from the first record polled to the last applied, so
// the group join is not measured. Modes are interleaved in rounds so they share machine noise.
//
// Needs FERRY_TEST_PG_DSN, FERRY_TEST_REDIS_URL, FERRY_TEST_KAFKA_BROKERS (scripts/bench).
#include <arpa/inet.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <pqxx/pqxx>
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

void produce(const std::string& brokers, const std::string& topic, int n) {
    char err[512];
    auto* conf = rd_kafka_conf_new();
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
}

struct run_result {
    double msgs_per_s = 0;
    double seconds = 0;
    std::uint64_t duplicates = 0;
};

// `work`: simulated per-message handler time (an I/O wait, like a downstream call), or zero.
run_result run_once(consumer::dedup_mode mode, const std::string& topic, int n, int round,
                    const std::string& dsn, const std::string& schema,
                    std::chrono::microseconds work = std::chrono::microseconds(0)) {
    consumer::consumer_options o;
    o.brokers = env_or_die("FERRY_TEST_KAFKA_BROKERS");
    o.group = "bench_" + std::to_string(::getpid()) + "_" + std::string(consumer::to_string(mode)) +
              "_" + std::to_string(round) + "_" + std::to_string(work.count());
    o.dsn = dsn;
    o.schema = schema;
    o.dedup = mode;
    o.redis_url = env_or_die("FERRY_TEST_REDIS_URL");
    o.redis_key_prefix = o.group;
    o.done_window = 10min;
    o.lanes = 4;
    o.max_batch = 500;
    o.kafka_properties["fetch.wait.max.ms"] = "10";
    consumer::consumer c(o);
    if (mode == consumer::dedup_mode::inbox || mode == consumer::dedup_mode::redis_and_inbox) {
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
    while (clock_type::now() < deadline) {
        const auto m = c.metrics();
        if (m.processed + m.duplicates_absorbed >= static_cast<std::uint64_t>(n)) break;
        std::this_thread::sleep_for(1ms);
    }
    const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    const auto m = c.metrics();
    c.stop();
    if (m.processed + m.duplicates_absorbed < static_cast<std::uint64_t>(n)) {
        std::cerr << "bench_consumer: " << consumer::to_string(mode) << " did not finish\n";
        std::exit(1);
    }
    return {n / secs, secs, m.duplicates_absorbed};
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
    }
    const int n = a.scaled(60000);
    const int rounds = 3;
    const std::string topic = "bench_consumer_" + std::to_string(::getpid());
    create_topic(topic, 16);
    produce(brokers, topic, n);

    const std::vector<consumer::dedup_mode> modes{
        consumer::dedup_mode::none, consumer::dedup_mode::redis, consumer::dedup_mode::inbox,
        consumer::dedup_mode::redis_and_inbox};
    std::map<consumer::dedup_mode, std::vector<double>> rates;
    for (int r = 0; r < rounds; ++r) {
        for (auto mode : modes) {
            const auto res = run_once(mode, topic, n, r, dsn, schema);
            rates[mode].push_back(res.msgs_per_s);
            std::printf("round %d %-16s %10.0f msg/s (%.2f s)\n", r,
                        std::string(consumer::to_string(mode)).c_str(), res.msgs_per_s,
                        res.seconds);
            std::fflush(stdout);
        }
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    const double base = median(rates[consumer::dedup_mode::none]);
    nlohmann::json j;
    j["benchmark"] = "consumer";
    j["messages"] = n;
    j["rounds"] = rounds;
    j["lanes"] = 4;
    j["payload_bytes"] = 200;
    j["keys"] = 1000;
    std::vector<std::tuple<std::string, double, std::string>> rows;
    for (auto mode : modes) {
        const auto name = std::string(consumer::to_string(mode));
        const double med = median(rates[mode]);
        const double cost = base > 0 ? (1.0 - med / base) * 100.0 : 0;
        j["modes"][name] = {{"msgs_per_s_median", med},
                            {"msgs_per_s_rounds", rates[mode]},
                            {"cost_vs_none_pct", cost}};
        rows.emplace_back(name + " throughput (median)", med, "msg/s");
        if (mode != consumer::dedup_mode::none)
            rows.emplace_back(name + " cost vs none", cost, "%");
    }
    const double redis_cost = j["modes"]["redis"]["cost_vs_none_pct"].get<double>();
    j["target"] = {{"redis_cost_max_pct", 15}, {"met_with_noop_handler", redis_cost <= 15.0}};

    // Second profile: a handler that waits 100 us per message (a fast downstream call), none
    // vs redis only. This is where the dedup cost matters to a real service.
    const int n2 = std::min(n, a.scaled(20000));
    const auto work = std::chrono::microseconds(100);
    std::map<consumer::dedup_mode, std::vector<double>> rates2;
    for (int r = 0; r < rounds; ++r) {
        for (auto mode : {consumer::dedup_mode::none, consumer::dedup_mode::redis}) {
            const auto res = run_once(mode, topic, n2, r, dsn, schema, work);
            rates2[mode].push_back(res.msgs_per_s);
            std::printf("round %d %-16s %10.0f msg/s (%.2f s, handler 100us)\n", r,
                        std::string(consumer::to_string(mode)).c_str(), res.msgs_per_s,
                        res.seconds);
            std::fflush(stdout);
        }
    }
    const double base2 = median(rates2[consumer::dedup_mode::none]);
    const double redis2 = median(rates2[consumer::dedup_mode::redis]);
    const double cost2 = base2 > 0 ? (1.0 - redis2 / base2) * 100.0 : 0;
    j["handler_100us"] = {{"messages", n2},
                          {"none_msgs_per_s_median", base2},
                          {"redis_msgs_per_s_median", redis2},
                          {"none_rounds", rates2[consumer::dedup_mode::none]},
                          {"redis_rounds", rates2[consumer::dedup_mode::redis]},
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
