// scripts/bench reconcile: time and peak memory of one reconciliation run over a synthetic
// window of 100k and 1M published messages (FERRY_BENCH_SCALE scales both).
//
// The ledger and the consumer's inbox are generated with SQL (generate_series), no Kafka: the
// job only reads tables. A sprinkling of anomalies is mixed in: 0.1% missing (re-driven, up to
// the cap), 0.02% dead-lettered, 0.01% published twice (duplicate_absorbed), and a few stuck
// outbox rows. Peak RSS is the process's ru_maxrss: the job's memory is bounded by chunk_size,
// so it must not grow with the window. Needs FERRY_TEST_PG_DSN.
#include <sys/resource.h>

#include <cstdlib>
#include <pqxx/pqxx>

#include "bench_util.hpp"
#include "ferry/outbox/migrate.hpp"
#include "ferry/reconcile/reconcile.hpp"

using namespace ferry;
using clock_type = std::chrono::steady_clock;

namespace {

long max_rss_kb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

void populate(pqxx::connection& conn, const std::string& s, long n, bool batch_rows) {
    pqxx::work tx{conn};
    tx.exec("DROP SCHEMA IF EXISTS " + s + " CASCADE");
    tx.commit();
    (void)outbox::migrate(conn, s);
    pqxx::work w{conn};
    const auto N = std::to_string(n);
    // Published over the last 50 minutes, payload kept (as the relay writes it since 0006).
    w.exec("INSERT INTO " + s +
           ".published (message_id, topic, key, partition, \"offset\", "
           "created_at, published_at, relay_epoch, lease_group, payload, headers) SELECT "
           "gen_random_uuid(), 'orders', 'k' || (i % 1000), (i % 6)::int, i, now() - interval "
           "'51 min' + i * (interval '50 min' / " +
           N +
           "), now() - interval '51 min' + i * "
           "(interval '50 min' / " +
           N +
           "), 1, 0, '\\x7b7d'::bytea, '{}'::jsonb "
           "FROM generate_series(1, " +
           N + ") AS i");
    // Applied by the group, except every 1000th (missing) and every 5000th+1 (dead-lettered).
    w.exec("INSERT INTO " + s +
           ".inbox (group_id, message_id, processed_at) SELECT 'billing', "
           "message_id, published_at FROM " +
           s +
           ".published WHERE \"offset\" % 1000 <> 0 AND "
           "\"offset\" % 5000 <> 1");
    w.exec("INSERT INTO " + s +
           ".dead_letter (group_id, topic, partition, \"offset\", key, "
           "message_id, payload, reason) SELECT 'billing', topic, partition, \"offset\", key, "
           "message_id, payload, 'bench poison' FROM " +
           s + ".published WHERE \"offset\" % 5000 = 1");
    // Published twice (a relay crash between ack and mark), applied once.
    w.exec("INSERT INTO " + s +
           ".published (message_id, topic, key, partition, \"offset\", "
           "created_at, published_at, relay_epoch, lease_group, payload, headers) SELECT "
           "message_id, topic, key, partition, \"offset\" + 1, created_at, published_at + "
           "interval '1 ms', 1, 0, payload, headers FROM " +
           s +
           ".published WHERE \"offset\" % "
           "10000 = 7");
    w.exec("INSERT INTO " + s +
           ".outbox (message_id, topic, key, payload, created_at, "
           "available_at) SELECT gen_random_uuid(), 'orders', 'stuck', 'x'::bytea, now() - "
           "interval '1 hour', now() - interval '1 hour' FROM generate_series(1, 10)");
    // The ledger as the relay writes it since migration 0090 (ADR 0011): one published_batch
    // row per 1000 messages, stamped with the latest published_at of its rows. Without
    // batch_rows the rows stay per message, as before 0090 (the same-run comparison).
    const std::string ord = " ORDER BY published_at, message_id)";
    if (batch_rows)
        w.exec(
            "INSERT INTO " + s +
            ".published_batch (published_at, relay_epoch, lease_group, message_count, "
            "message_ids, topics, keys, partitions, offsets, created_ats, payload_lens, payloads, "
            "headers) SELECT max(published_at), 1, 0, count(*), array_agg(message_id" +
            ord + ", array_agg(topic" + ord + ", array_agg(key" + ord + ", array_agg(partition" +
            ord + ", array_agg(\"offset\"" + ord + ", array_agg(created_at" + ord +
            ", array_agg(octet_length(payload)" + ord + ", string_agg(payload, ''::bytea" + ord +
            ", array_agg(headers" + ord +
            " FROM (SELECT *, row_number() OVER (ORDER BY "
            "published_at, message_id) AS rn FROM " +
            s + ".published) AS t GROUP BY (rn - 1) / 1000");
    if (batch_rows) w.exec("TRUNCATE " + s + ".published");
    w.commit();
    pqxx::nontransaction nt{conn};
    nt.exec("ANALYZE " + s + ".published");
    nt.exec("ANALYZE " + s + ".published_batch");
    nt.exec("ANALYZE " + s + ".inbox");
}

}  // namespace

int main(int argc, char** argv) {
    const auto a = bench::args::parse(argc, argv);
    const char* dsn = std::getenv("FERRY_TEST_PG_DSN");
    if (!dsn || !*dsn) {
        std::cerr << "bench_reconcile: FERRY_TEST_PG_DSN is not set (run through scripts/bench)\n";
        return 2;
    }
    const std::string schema = "bench_reconcile";
    pqxx::connection conn{dsn};
    nlohmann::json out = nlohmann::json::array();
    std::vector<std::tuple<std::string, double, std::string>> rows;
    for (const auto& [base, batch_rows] : std::vector<std::pair<long, bool>>{
             {100000L, true}, {100000L, false}, {1000000L, true}, {1000000L, false}}) {
        const long n = std::max(1000L, static_cast<long>(static_cast<double>(base) * a.scale));
        auto t0 = clock_type::now();
        populate(conn, schema, n, batch_rows);
        const double setup_s = bench::elapsed_us(t0) / 1e6;
        reconcile::reconcile_options o;
        o.dsn = dsn;
        o.schema = schema;
        o.window = std::chrono::hours(1);
        o.grace = std::chrono::seconds(30);
        o.stuck_unpublished = std::chrono::minutes(5);
        o.chunk_size = 10000;
        o.redrive_cap = 10000;
        reconcile::group_options g;
        g.group = "billing";
        g.topics = {"orders"};
        g.dsn = dsn;
        g.schema = schema;
        o.groups.push_back(g);
        const long rss_before = max_rss_kb();
        t0 = clock_type::now();
        const auto r = reconcile::run(o);
        const double run_s = bench::elapsed_us(t0) / 1e6;
        const long rss_after = max_rss_kb();
        const std::string label =
            std::to_string(n / 1000) + "k " + (batch_rows ? "batch rows" : "per-message rows");
        nlohmann::json j{{"messages", n},
                         {"ledger", batch_rows ? "published_batch" : "published"},
                         {"ledger_rows", r.scanned},
                         {"setup_s", setup_s},
                         {"run_s", run_s},
                         {"rows_per_s", static_cast<double>(r.scanned) / run_s},
                         {"peak_rss_kb", rss_after},
                         {"rss_before_run_kb", rss_before},
                         {"chunk_size", o.chunk_size},
                         {"counts", r.counts},
                         {"redriven", r.redriven}};
        out.push_back(j);
        rows.emplace_back(label + " run time", run_s, "s");
        rows.emplace_back(label + " ledger rows/s", static_cast<double>(r.scanned) / run_s,
                          "rows/s");
        rows.emplace_back(label + " peak RSS", static_cast<double>(rss_after) / 1024.0, "MiB");
        rows.emplace_back(label + " missing found", static_cast<double>(r.counts.at("missing")),
                          "");
        std::cerr << "bench_reconcile: " << j.dump() << "\n";
    }
    {
        pqxx::work tx{conn};
        tx.exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE");
        tx.commit();
    }
    bench::print_table("reconciliation (one group, inbox, chunk 10k)", rows);
    bench::write_json(a, nlohmann::json{{"bench", "reconcile"}, {"results", out}});
    return 0;
}
