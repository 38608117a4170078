// chaos-producer: one of the campaign's producer processes (scripts/chaos).
//
//   chaos-producer --config FILE --producer P --seed S --messages N --keys K --topic T
//                  [--rate R] [--half-share F] [--undecided-share F] [--rollback-share F]
//                  [--sql-share F] [--history FILE]
//   chaos-producer --config FILE --hold SECONDS --producer P --topic T --history FILE
//
// Each message: key = k<n> drawn from the seed; the next per-key seq is taken under the row lock
// of chaos.key_seq in the enqueue's transaction (so the commit order per key is the seq order),
// enqueued with the C++ writer or with SELECT ferry.enqueue(...) (--sql-share), and recorded in
// chaos.sent in the same transaction. A share of transactions rolls back. A share are half
// messages: prepare -> local transaction (chaos.half_local records the decision) -> commit or
// rollback, except an undecided share that is left for the relay's check-back (sql resolver).
// When the prepare or the local transaction fails (a database fault, perhaps during COMMIT),
// the producer recovers the outcome as an application must: it inserts a 'rollback' tombstone
// under the same tx_ref unless a row exists (the insert waits for an in-flight local
// transaction), reads the row back and acts on it; check-back reads the same row.
// --hold: one transaction holds its enqueue open for SECONDS, then commits (a late commit with a
// low outbox id, the case an id > last_id cursor loses).
//
// History file lines (Jepsen style: what this client saw): `ok ID` after COMMIT returned,
// `rb ID` after a rollback, `info ID` when the outcome is unknown (an error during COMMIT).
// Database faults are survived: reconnect with backoff, carry on with the next message.
// stdout: "chaos-producer[P]: done ok=.. rb=.. info=.. errors=.." at the end.
#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <ferry/config/config.hpp>
#include <ferry/outbox/half.hpp>
#include <ferry/outbox/writer.hpp>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <thread>

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct outcome_log {
    std::ofstream out;
    void line(const char* what, const std::string& id) {
        if (!out.is_open()) return;
        out << what << ' ' << id << '\n';
        out.flush();
    }
};

std::string payload_of(const std::string& key, long long seq, int producer, int i) {
    return R"({"key":")" + key + R"(","seq":)" + std::to_string(seq) + R"(,"p":)" +
           std::to_string(producer) + R"(,"i":)" + std::to_string(i) + "}";
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Ferry chaos campaign producer"};
    std::string config_path, topic = "chaos", history_path;
    int producer = 0, messages = 100, keys = 16, hold_s = 0;
    unsigned long long seed = 1;
    double rate = 0, half_share = 0.1, undecided_share = 0.3, rollback_share = 0.1, sql_share = 0.5;
    app.add_option("--config", config_path, "Ferry YAML configuration")->required();
    app.add_option("--producer", producer, "producer number (names the history)");
    app.add_option("--seed", seed, "the run's seed");
    app.add_option("--messages", messages, "transactions to attempt");
    app.add_option("--keys", keys, "keys k0..k(K-1)");
    app.add_option("--topic", topic, "outbox topic");
    app.add_option("--rate", rate, "transactions per second (0: as fast as possible)");
    app.add_option("--half-share", half_share, "share of half messages");
    app.add_option("--undecided-share", undecided_share,
                   "share of half messages left for check-back");
    app.add_option("--rollback-share", rollback_share, "share of transactions rolled back");
    app.add_option("--sql-share", sql_share, "share enqueued with SELECT ferry.enqueue()");
    app.add_option("--history", history_path, "append what this client saw to FILE");
    app.add_option("--hold", hold_s, "hold one transaction open this long, then commit");
    CLI11_PARSE(app, argc, argv);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);

    auto loaded = ferry::config::load_file(config_path);
    if (!loaded.ok()) {
        for (const auto& d : loaded.errors) std::cerr << d.to_string() << "\n";
        return 2;
    }
    const auto& cfg = loaded.config;
    const std::string schema = cfg.postgres.schema;
    const ferry::outbox::writer writer{cfg.outbox};
    outcome_log log;
    if (!history_path.empty()) log.out.open(history_path, std::ios::app);
    const std::string me = "chaos-producer[" + std::to_string(producer) + "]";

    std::unique_ptr<pqxx::connection> conn;
    auto connection = [&]() -> pqxx::connection& {
        while (!conn || !conn->is_open()) {
            try {
                conn = std::make_unique<pqxx::connection>(cfg.postgres.dsn);
            } catch (const std::exception& e) {
                conn.reset();
                if (g_stop) throw;
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
            }
        }
        return *conn;
    };

    // The final decision of the local transaction `tx_ref`: inserts a 'rollback' tombstone
    // unless a row exists (waiting for an in-flight local transaction to finish), then reads
    // the row. Retries until the database answers.
    auto recover_decision = [&](const std::string& tx_ref, const std::string& id) -> std::string {
        const std::string mid = id.empty() ? "00000000-0000-0000-0000-000000000000" : id;
        for (;;) {
            try {
                auto& c = connection();
                pqxx::work tx{c};
                tx.exec_params(
                    "INSERT INTO chaos.half_local (tx_ref, message_id, decision) "
                    "VALUES ($1, $2::uuid, 'rollback') ON CONFLICT (tx_ref) DO NOTHING",
                    tx_ref, mid);
                const auto d =
                    tx.exec_params1("SELECT decision FROM chaos.half_local WHERE tx_ref = $1",
                                    tx_ref)[0]
                        .as<std::string>();
                tx.commit();
                return d;
            } catch (const std::exception&) {
                conn.reset();
                if (g_stop) throw;
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
            }
        }
    };

    if (hold_s > 0) {
        // The long transaction: its outbox row gets a low id and commits late.
        for (int attempt = 0; attempt < 50 && g_stop == 0; ++attempt) {
            std::string id;
            try {
                auto& c = connection();
                pqxx::work tx{c};
                const std::string key = "hold-" + std::to_string(producer);
                tx.exec_params("INSERT INTO chaos.key_seq (key) VALUES ($1) ON CONFLICT DO NOTHING",
                               key);
                const auto seq = tx.exec_params1(
                                       "UPDATE chaos.key_seq SET seq = seq + 1 WHERE key = $1 "
                                       "RETURNING seq",
                                       key)[0]
                                     .as<long long>();
                ferry::outbox::message m;
                m.topic = topic;
                m.key = key;
                m.payload = payload_of(key, seq, producer, -1);
                id = writer.enqueue(tx, m).to_string();
                tx.exec_params(
                    "INSERT INTO chaos.sent (message_id, key, seq, producer, via) "
                    "VALUES ($1::uuid, $2, $3, $4, 'hold')",
                    id, key, seq, producer);
                std::cout << me << ": holding " << id << " open for " << hold_s << " s"
                          << std::endl;
                for (int s = 0; s < hold_s * 10 && g_stop == 0; ++s) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(100));
                }
                try {
                    tx.commit();
                } catch (const std::exception&) {
                    log.line("info", id);
                    throw;
                }
                log.line("ok", id);
                std::cout << me << ": done held=" << id << std::endl;
                return 0;
            } catch (const std::exception& e) {
                std::cerr << me << ": hold attempt failed: " << e.what() << "\n";
                conn.reset();
                std::this_thread::sleep_for(std::chrono::milliseconds(500));
            }
        }
        return 1;
    }

    std::mt19937_64 rng(seed * 1000003ULL + static_cast<unsigned long long>(producer));
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::uniform_int_distribution<int> pick_key(0, keys - 1);
    ferry::outbox::half_options half;
    half.producer_group = "chaos";

    long ok = 0, rb = 0, info = 0, errors = 0, left = 0;
    const auto started = std::chrono::steady_clock::now();
    for (int i = 0; i < messages && g_stop == 0; ++i) {
        if (rate > 0) {
            std::this_thread::sleep_until(started +
                                          std::chrono::duration_cast<std::chrono::nanoseconds>(
                                              std::chrono::duration<double>(i / rate)));
        }
        // Every draw happens up front, so the workload is the seed's whatever the faults do.
        const std::string key = "k" + std::to_string(pick_key(rng));
        const bool is_half = u(rng) < half_share;
        const bool roll_back = u(rng) < rollback_share;
        const bool via_sql = u(rng) < sql_share;
        const bool undecided = u(rng) < undecided_share;
        std::string id;
        bool committing = false;
        try {
            auto& c = connection();
            if (!is_half) {
                pqxx::work tx{c};
                const auto seq = tx.exec_params1(
                                       "UPDATE chaos.key_seq SET seq = seq + 1 WHERE key = $1 "
                                       "RETURNING seq",
                                       key)[0]
                                     .as<long long>();
                const auto payload = payload_of(key, seq, producer, i);
                if (via_sql) {
                    id = tx.exec_params1("SELECT " + c.quote_name(schema) +
                                             ".enqueue($1, $2, convert_to($3, 'UTF8'))",
                                         topic, key, payload)[0]
                             .as<std::string>();
                } else {
                    ferry::outbox::message m;
                    m.topic = topic;
                    m.key = key;
                    m.payload = payload;
                    id = writer.enqueue(tx, m).to_string();
                }
                tx.exec_params(
                    "INSERT INTO chaos.sent (message_id, key, seq, producer, via) "
                    "VALUES ($1::uuid, $2, $3, $4, $5)",
                    id, key, seq, producer, via_sql ? "sql" : "writer");
                if (roll_back) {
                    tx.abort();
                    log.line("rb", id);
                    ++rb;
                } else {
                    committing = true;
                    tx.commit();
                    log.line("ok", id);
                    ++ok;
                }
            } else {
                // Half message: no seq claim (it enters the outbox when decided).
                ferry::outbox::message m;
                m.topic = topic;
                m.key = key;
                m.payload = payload_of(key, -1, producer, i);
                const std::string tx_ref = "s" + std::to_string(seed) + "-p" +
                                           std::to_string(producer) + "-" + std::to_string(i);
                std::optional<ferry::outbox::message_id> hid;
                std::string decision = roll_back ? "rollback" : "commit";
                try {
                    hid = ferry::outbox::prepare(writer, c, m, tx_ref, half);
                    id = hid->to_string();
                    pqxx::work tx{c};
                    tx.exec_params(
                        "INSERT INTO chaos.half_local (tx_ref, message_id, decision) "
                        "VALUES ($1, $2::uuid, $3)",
                        tx_ref, id, decision);
                    tx.commit();
                } catch (const std::exception& e) {
                    // The prepare or the local transaction failed, perhaps during COMMIT: the
                    // outcome is unknown. Recover it as an application must: a tombstone
                    // insert under the same tx_ref waits for an in-flight local transaction and
                    // loses to a committed one, so the decision read back is final, and the
                    // check-back reads the same row.
                    std::cerr << me << ": message " << i << ": " << e.what()
                              << " (recovering the local transaction's outcome)\n";
                    ++errors;
                    conn.reset();
                    decision = recover_decision(tx_ref, id);
                    if (!hid && !id.empty()) hid = ferry::outbox::message_id::parse(id);
                }
                if (undecided || !hid) {
                    // Check-back decides it from chaos.half_local (a prepare whose outcome was
                    // lost has no id here; the tombstone makes check-back roll it back).
                    if (undecided) ++left;
                    if (!id.empty()) log.line(decision == "rollback" ? "rb" : "info", id);
                } else if (decision == "rollback") {
                    (void)ferry::outbox::rollback(writer, connection(), *hid);
                    log.line("rb", id);
                    ++rb;
                } else {
                    committing = true;
                    (void)ferry::outbox::commit(writer, connection(), *hid);
                    log.line("ok", id);
                    ++ok;
                }
            }
        } catch (const std::exception& e) {
            ++errors;
            if (committing && !id.empty()) {
                log.line("info", id);  // COMMIT may or may not have happened
                ++info;
            }
            std::cerr << me << ": message " << i << ": " << e.what() << "\n";
            conn.reset();
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        if ((i + 1) % 1000 == 0) {
            std::cout << me << ": " << (i + 1) << "/" << messages << std::endl;
        }
    }
    std::cout << me << ": done ok=" << ok << " rb=" << rb << " info=" << info
              << " undecided=" << left << " errors=" << errors << std::endl;
    return 0;
}
