// chaos-naive-relay: the classic broken relay, as a negative control for the campaign.
//
//   chaos-naive-relay --dsn DSN --schema ferry --brokers B --topic-prefix P
//
// It polls `SELECT ... FROM outbox WHERE id > $last_id ORDER BY id`, publishes what it finds
// (key, payload, ferry-message-id header), waits for the acknowledgements, and moves the cursor
// to the highest id seen. A transaction that commits late with a lower id than rows already
// read is never published: DESIGN.md §5's first trap. scripts/chaos runs it instead of
// ferry-relay and requires the checker to report the loss. Rows are never deleted.
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <pqxx/pqxx>
#include <string>
#include <thread>

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
    std::string dsn, schema = "ferry", brokers, prefix;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--dsn")
            dsn = argv[i + 1];
        else if (a == "--schema")
            schema = argv[i + 1];
        else if (a == "--brokers")
            brokers = argv[i + 1];
        else if (a == "--topic-prefix")
            prefix = argv[i + 1];
        else {
            std::cerr << "chaos-naive-relay: unknown argument " << a << "\n";
            return 2;
        }
    }
    if (dsn.empty() || brokers.empty()) {
        std::cerr << "usage: chaos-naive-relay --dsn DSN --brokers B [--schema S] "
                     "[--topic-prefix P]\n";
        return 2;
    }
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err) !=
            RD_KAFKA_CONF_OK) {
        std::cerr << "chaos-naive-relay: " << err << "\n";
        return 2;
    }
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (rk == nullptr) {
        std::cerr << "chaos-naive-relay: " << err << "\n";
        return 1;
    }
    long long last_id = 0, published = 0;
    std::unique_ptr<pqxx::connection> conn;
    std::cout << "chaos-naive-relay: ready" << std::endl;
    while (g_stop == 0) {
        try {
            if (!conn || !conn->is_open()) conn = std::make_unique<pqxx::connection>(dsn);
            pqxx::read_transaction tx{*conn};
            const auto rows = tx.exec_params(
                "SELECT id, message_id::text, topic, key, payload FROM " +
                    conn->quote_name(schema) + ".outbox WHERE id > $1 ORDER BY id LIMIT 500",
                last_id);
            tx.commit();
            if (rows.empty()) {
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
                continue;
            }
            long long max_id = last_id;
            for (const auto& r : rows) {
                const auto id = r[1].as<std::string>();
                const auto topic = prefix + r[2].as<std::string>();
                const auto key = r[3].as<std::string>();
                const pqxx::binarystring payload(r[4]);
                rd_kafka_headers_t* h = rd_kafka_headers_new(1);
                rd_kafka_header_add(h, "ferry-message-id", -1, id.data(),
                                    static_cast<ssize_t>(id.size()));
                for (;;) {
                    const auto e = rd_kafka_producev(
                        rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
                        RD_KAFKA_V_VALUE(const_cast<unsigned char*>(payload.data()),
                                         payload.size()),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                        RD_KAFKA_V_END);
                    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
                    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        rd_kafka_headers_destroy(h);
                        break;
                    }
                    rd_kafka_poll(rk, 50);
                }
                max_id = std::max(max_id, r[0].as<long long>());
            }
            while (rd_kafka_flush(rk, 1000) == RD_KAFKA_RESP_ERR__TIMED_OUT && g_stop == 0) {
            }
            published += static_cast<long long>(rows.size());
            last_id = max_id;  // the cursor: everything below is considered done
        } catch (const std::exception& e) {
            std::cerr << "chaos-naive-relay: " << e.what() << "\n";
            conn.reset();
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
    }
    rd_kafka_flush(rk, 5000);
    rd_kafka_destroy(rk);
    std::cout << "chaos-naive-relay: stopped published=" << published << " last_id=" << last_id
              << std::endl;
    return 0;
}
