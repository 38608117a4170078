// scripts/bench enqueue: what the outbox adds to a service's transaction.
//
// 1. A 1-row business transaction (INSERT an order, COMMIT) with and without the outbox insert
//    of a 200-byte message, interleaved in rounds on one connection. Reports p50/p99 latency
//    and the ratio with/without (target: at most 1.3x).
// 2. Batch enqueue throughput (rows/s) for batches of 1, 100 and 1000 messages, against a
//    baseline of a plain multi-row INSERT of the same data into a bare table.
//
// Needs FERRY_TEST_PG_DSN (scripts/bench starts a throw-away PostgreSQL with fsync on).
#include <cstdlib>
#include <pqxx/pqxx>

#include "bench_util.hpp"
#include "ferry/outbox/migrate.hpp"
#include "ferry/outbox/writer.hpp"

using namespace ferry;
using clock_type = std::chrono::steady_clock;

namespace {

std::string env_or_die(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) {
        std::cerr << "bench_enqueue: " << name << " is not set (run through scripts/bench)\n";
        std::exit(2);
    }
    return v;
}

outbox::message sample_message(int i) {
    outbox::message m;
    m.topic = "orders";
    m.key = "order-" + std::to_string(i);
    m.payload = std::string(200, 'p');
    m.headers = {{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}};
    return m;
}

}  // namespace

int main(int argc, char** argv) {
    const auto a = bench::args::parse(argc, argv);
    const auto dsn = env_or_die("FERRY_TEST_PG_DSN");
    const std::string schema = "bench_enqueue";
    pqxx::connection conn{dsn};
    {
        pqxx::work tx{conn};
        tx.exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE");
        tx.commit();
    }
    (void)outbox::migrate(conn, schema);
    {
        pqxx::work tx{conn};
        tx.exec("CREATE TABLE " + schema +
                ".orders (id bigint PRIMARY KEY, customer text NOT NULL, "
                "total numeric NOT NULL, created_at timestamptz NOT NULL DEFAULT now())");
        tx.exec("CREATE TABLE " + schema + ".plain_copy (LIKE " + schema +
                ".outbox INCLUDING ALL)");
        tx.commit();
    }
    outbox::writer_options o;
    o.schema = schema;
    const outbox::writer w{o};
    const std::string insert_order =
        "INSERT INTO " + schema + ".orders (id, customer, total) VALUES ($1, $2, $3)";

    // --- 1. single-row business transaction, interleaved rounds ---
    const int rounds = 10, per_round = a.scaled(300);
    bench::samples plain, with_outbox;
    long long next_id = 1;
    auto run_tx = [&](bool outbox_too) {
        const auto t0 = clock_type::now();
        pqxx::work tx{conn};
        const auto id = next_id++;
        tx.exec_params(insert_order, id, "customer-" + std::to_string(id % 100), "19.90");
        if (outbox_too) (void)w.enqueue(tx, sample_message(static_cast<int>(id)));
        tx.commit();
        return bench::elapsed_us(t0);
    };
    for (int i = 0; i < 50; ++i) (void)run_tx(i % 2 == 0);  // warm-up
    for (int r = 0; r < rounds; ++r) {
        for (int i = 0; i < per_round; ++i) {
            // Alternate inside the round too, so drift in the machine hits both equally.
            plain.add(run_tx(false));
            with_outbox.add(run_tx(true));
        }
    }
    const double ratio_p50 = with_outbox.percentile(50) / plain.percentile(50);
    const double ratio_mean = with_outbox.mean() / plain.mean();

    // --- 2. batch enqueue throughput vs a plain multi-row insert ---
    nlohmann::json batches = nlohmann::json::array();
    std::vector<std::tuple<std::string, double, std::string>> rows = {
        {"1-row tx without outbox, p50", plain.percentile(50), "us"},
        {"1-row tx without outbox, p99", plain.percentile(99), "us"},
        {"1-row tx with outbox enqueue, p50", with_outbox.percentile(50), "us"},
        {"1-row tx with outbox enqueue, p99", with_outbox.percentile(99), "us"},
        {"overhead ratio (p50, target <= 1.3)", ratio_p50, "x"},
        {"overhead ratio (mean)", ratio_mean, "x"},
    };
    for (int batch_size : {1, 100, 1000}) {
        std::vector<outbox::message> batch;
        for (int i = 0; i < batch_size; ++i) batch.push_back(sample_message(i));
        const int total_rows = a.scaled(batch_size == 1 ? 3000 : 60000);
        const int iterations = std::max(1, total_rows / batch_size);
        double ferry_s = 0, baseline_s = 0;
        for (int it = 0; it < iterations; ++it) {
            auto t0 = clock_type::now();
            {
                pqxx::work tx{conn};
                (void)w.enqueue_batch(tx, batch);
                tx.commit();
            }
            ferry_s += bench::elapsed_us(t0) / 1e6;
            // Baseline: the same rows through one INSERT ... SELECT generate_series of the same
            // payload size, no validation, no ids from the client.
            t0 = clock_type::now();
            {
                pqxx::work tx{conn};
                tx.exec_params("INSERT INTO " + schema +
                                   ".plain_copy (message_id, topic, key, payload, headers) "
                                   "SELECT gen_random_uuid(), 'orders', 'order-' || g, "
                                   "convert_to(repeat('p', 200), 'UTF8'), "
                                   "'{\"traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-"
                                   "b7ad6b7169203331-01\"}'::jsonb "
                                   "FROM generate_series(1, $1) g",
                               batch_size);
                tx.commit();
            }
            baseline_s += bench::elapsed_us(t0) / 1e6;
        }
        const double n = static_cast<double>(iterations) * batch_size;
        batches.push_back({{"batch_size", batch_size},
                           {"rows", n},
                           {"ferry_rows_per_s", n / ferry_s},
                           {"server_side_insert_rows_per_s", n / baseline_s},
                           {"ratio_vs_server_side_insert", (n / ferry_s) / (n / baseline_s)}});
        rows.emplace_back("enqueue_batch(" + std::to_string(batch_size) + ") rows/s", n / ferry_s,
                          "rows/s");
        rows.emplace_back("  server-side INSERT of same rows, rows/s", n / baseline_s, "rows/s");
        pqxx::work tx{conn};
        tx.exec("TRUNCATE " + schema + ".outbox, " + schema + ".plain_copy");
        tx.commit();
    }

    bench::print_table(
        "enqueue benchmark (PostgreSQL " + std::to_string(conn.server_version()) + ")", rows);
    nlohmann::json j = {
        {"bench", "enqueue"},
        {"single_row_tx",
         {{"without_outbox", plain.summary()},
          {"with_outbox", with_outbox.summary()},
          {"ratio_p50", ratio_p50},
          {"ratio_mean", ratio_mean},
          {"target_ratio", 1.3},
          {"meets_target", ratio_p50 <= 1.3}}},
        {"batch_enqueue", batches},
    };
    bench::write_json(a, j);
    {
        pqxx::work tx{conn};
        tx.exec("DROP SCHEMA " + schema + " CASCADE");
        tx.commit();
    }
    return 0;
}
