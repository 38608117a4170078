// scripts/bench half: half-message throughput against plain enqueue, interleaved in rounds on
// the same server so both see the same noise.
//
//   enqueue          one transaction: INSERT outbox row, COMMIT
//   prepare+commit   prepare (own transaction), then commit (own transaction): the usual
//                    two-step pattern when the local transaction lives elsewhere
//
// Reports pairs/s, per-operation latency and the ratio. Needs FERRY_TEST_PG_DSN.
#include <cstdlib>
#include <pqxx/pqxx>

#include "bench_util.hpp"
#include "ferry/outbox/half.hpp"
#include "ferry/outbox/migrate.hpp"
#include "ferry/outbox/writer.hpp"

using namespace ferry;
using clock_type = std::chrono::steady_clock;

int main(int argc, char** argv) {
    const auto a = bench::args::parse(argc, argv);
    const char* dsn = std::getenv("FERRY_TEST_PG_DSN");
    if (!dsn || !*dsn) {
        std::cerr << "bench_half: FERRY_TEST_PG_DSN is not set (run through scripts/bench)\n";
        return 2;
    }
    const std::string schema = "bench_half";
    pqxx::connection conn{dsn};
    {
        pqxx::work tx{conn};
        tx.exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE");
        tx.commit();
    }
    (void)outbox::migrate(conn, schema);
    outbox::writer_options o;
    o.schema = schema;
    const outbox::writer w{o};
    outbox::message m;
    m.topic = "payments";
    m.payload = std::string(200, 'p');

    const int rounds = 8, per_round = a.scaled(250);
    bench::samples enqueue_us, pair_us;
    double enqueue_s = 0, pair_s = 0;
    int n = 0;
    for (int r = 0; r < rounds; ++r) {
        for (int i = 0; i < per_round; ++i, ++n) {
            m.key = "pay-" + std::to_string(n);
            auto t0 = clock_type::now();
            {
                pqxx::work tx{conn};
                (void)w.enqueue(tx, m);
                tx.commit();
            }
            const double e = bench::elapsed_us(t0);
            enqueue_us.add(e);
            enqueue_s += e / 1e6;

            t0 = clock_type::now();
            const auto id = outbox::prepare(w, conn, m, "tx-" + std::to_string(n));
            (void)outbox::commit(w, conn, id);
            const double p = bench::elapsed_us(t0);
            pair_us.add(p);
            pair_s += p / 1e6;
        }
    }
    const double enqueue_rate = n / enqueue_s, pair_rate = n / pair_s;
    bench::print_table(
        "half-message benchmark (" + std::to_string(n) + " of each, 200-byte payload)",
        {{"plain enqueue, msgs/s", enqueue_rate, "msg/s"},
         {"plain enqueue p50", enqueue_us.percentile(50), "us"},
         {"prepare+commit, pairs/s", pair_rate, "pairs/s"},
         {"prepare+commit p50", pair_us.percentile(50), "us"},
         {"throughput ratio (pairs / enqueues)", pair_rate / enqueue_rate, "x"}});
    bench::write_json(a,
                      {{"bench", "half"},
                       {"messages", n},
                       {"enqueue", {{"per_s", enqueue_rate}, {"latency", enqueue_us.summary()}}},
                       {"prepare_commit", {{"per_s", pair_rate}, {"latency", pair_us.summary()}}},
                       {"ratio", pair_rate / enqueue_rate}});
    pqxx::work tx{conn};
    tx.exec("DROP SCHEMA " + schema + " CASCADE");
    tx.commit();
    return 0;
}
