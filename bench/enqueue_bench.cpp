// scripts/bench enqueue: what the outbox adds to a service's work (issue 15).
//
// Every figure is measured against a baseline in the same run, on the same connection and
// session settings, in interleaved rounds; the reported value is the median over the rounds.
//
// 1. A 1-row business transaction (INSERT an order, COMMIT) with and without the outbox insert
//    of a 200-byte message, with synchronous_commit on and off. Three modes alternate
//    transaction by transaction: `plain` (no outbox), `enqueue` (writer::enqueue, a prepared
//    INSERT as a second statement) and `enqueue_with` (writer::enqueue_with: the INSERT and the
//    order INSERT in one query, one round trip). The order INSERT is the same literal SQL in
//    every mode. Target: with outbox / plain <= 1.3 (median over rounds of the p50 ratio).
// 2. C++ batch enqueue (writer::enqueue_batch) of 100 and 1000 messages per transaction, rows/s,
//    against a plain INSERT ... SELECT FROM unnest of the same rows sent as the same kind of
//    array parameters into a table of the same shape without Ferry's checks.
// 3. SQL bulk: 200k rows through ferry.enqueue() called per row and through
//    ferry.enqueue_batch(arrays), against a plain INSERT ... SELECT of the same rows (from the
//    same input table, resp. from unnest of the same arrays) into that plain table. Targets:
//    per-row <= 2x, set-based <= 1.3x. A fourth mode measures the floor of any per-row SQL
//    API: a plpgsql function whose whole body is one INSERT ... VALUES of its arguments into
//    the plain table (no validation, no message id of its own), called per row the same way.
//
// The plain table is `LIKE outbox` with its defaults, identity, generated shard column and all
// its indexes, but without its CHECK constraints (those are part of Ferry's validation).
//
// Needs FERRY_TEST_PG_DSN (scripts/bench starts a throw-away PostgreSQL with fsync on).
// FERRY_BENCH_SCALE scales the time per mode and the bulk row count (trial runs).
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>
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

const std::string k_traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

outbox::message sample_message(long long i) {
    outbox::message m;
    m.topic = "orders";
    m.key = "order-" + std::to_string(i);
    m.payload = std::string(200, 'p');
    m.headers = {{"traceparent", k_traceparent}};
    return m;
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const auto n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double load_average() {
    double l[1] = {0};
    return getloadavg(l, 1) == 1 ? l[0] : -1;
}

void exec_commit(pqxx::connection& conn, const std::string& sql) {
    pqxx::work tx{conn};
    tx.exec(sql);
    tx.commit();
}

double timed_s(const std::function<void()>& f) {
    const auto t0 = clock_type::now();
    f();
    return bench::elapsed_us(t0) / 1e6;
}

// The arrays a client sends for a batch, in PostgreSQL's text array format.
struct batch_arrays {
    std::string ids = "{", topics = "{", keys = "{", payloads = "{", headers = "{";
};

void append_element(std::string& out, const std::string& s) {
    out += '"';
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    out += '"';
}

batch_arrays to_arrays(const std::vector<outbox::message>& batch) {
    static constexpr char hex[] = "0123456789abcdef";
    batch_arrays a;
    for (std::size_t i = 0; i < batch.size(); ++i) {
        const auto& m = batch[i];
        if (i > 0) {
            for (auto* s : {&a.ids, &a.topics, &a.keys, &a.payloads, &a.headers}) *s += ',';
        }
        a.ids += outbox::message_id::generate().to_string();
        append_element(a.topics, m.topic);
        append_element(a.keys, m.key);
        a.payloads += "\"\\\\x";
        for (unsigned char c : m.payload) {
            a.payloads += hex[c >> 4];
            a.payloads += hex[c & 15];
        }
        a.payloads += '"';
        append_element(a.headers, "{\"traceparent\":\"" + m.headers.at("traceparent") + "\"}");
    }
    for (auto* s : {&a.ids, &a.topics, &a.keys, &a.payloads, &a.headers}) *s += '}';
    return a;
}

}  // namespace

int main(int argc, char** argv) {
    const auto a = bench::args::parse(argc, argv);
    const auto dsn = env_or_die("FERRY_TEST_PG_DSN");
    const std::string schema = "bench_enqueue";
    const std::string s = "\"" + schema + "\"";
    pqxx::connection conn{dsn};
    exec_commit(conn, "DROP SCHEMA IF EXISTS " + s + " CASCADE");
    (void)outbox::migrate(conn, schema);
    exec_commit(conn, "CREATE TABLE " + s +
                          ".orders (id bigint PRIMARY KEY, customer text NOT NULL, "
                          "total numeric NOT NULL, created_at timestamptz NOT NULL DEFAULT now())");
    exec_commit(conn, "CREATE TABLE " + s + ".plain_copy (LIKE " + s +
                          ".outbox INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING IDENTITY "
                          "INCLUDING INDEXES)");
    outbox::writer_options o;
    o.schema = schema;
    const outbox::writer w{o};
    const std::string run = bench::utc_now();
    const double load_before = load_average();
    std::vector<std::tuple<std::string, double, std::string>> table;
    nlohmann::json j = {{"bench", "enqueue"},
                        {"run", run},
                        {"postgres_server_version", conn.server_version()},
                        {"libpqxx", PQXX_VERSION},
                        {"load_average_1m_before", load_before}};

    // --- 1. single-row business transaction ---------------------------------------------------
    const int tx_rounds = 7;
    const double tx_seconds_per_round = 3.6 * a.scale;  // shared by the three modes
    long long next_id = 1;
    const std::vector<std::string> modes = {"plain", "enqueue", "enqueue_with"};
    auto order_sql = [&](pqxx::transaction_base& tx, long long id) {
        return "INSERT INTO " + s + ".orders (id, customer, total) VALUES (" + std::to_string(id) +
               ", " + tx.quote("customer-" + std::to_string(id % 100)) + ", 19.90)";
    };
    auto run_tx = [&](const std::string& mode) {
        const auto t0 = clock_type::now();
        pqxx::work tx{conn};
        const auto id = next_id++;
        if (mode == "enqueue_with") {
            (void)w.enqueue_with(tx, sample_message(id), order_sql(tx, id));
        } else {
            tx.exec(order_sql(tx, id));
            if (mode == "enqueue") (void)w.enqueue(tx, sample_message(id));
        }
        tx.commit();
        return bench::elapsed_us(t0);
    };
    nlohmann::json single = nlohmann::json::object();
    for (const std::string sync : {"on", "off"}) {
        {
            pqxx::nontransaction tx{conn};
            tx.exec("SET synchronous_commit = " + sync);
        }
        for (int i = 0; i < 60; ++i) (void)run_tx(modes[static_cast<std::size_t>(i) % 3]);
        std::map<std::string, std::vector<double>> p50s, means, ratio_p50, ratio_mean;
        std::map<std::string, bench::samples> all;
        for (int r = 0; r < tx_rounds; ++r) {
            std::map<std::string, bench::samples> round;
            const auto t0 = clock_type::now();
            while (bench::elapsed_us(t0) / 1e6 < tx_seconds_per_round) {
                // Alternate transaction by transaction, so drift hits every mode equally.
                for (const auto& m : modes) round[m].add(run_tx(m));
            }
            for (const auto& m : modes) {
                p50s[m].push_back(round[m].percentile(50));
                means[m].push_back(round[m].mean());
                ratio_p50[m].push_back(round[m].percentile(50) / round["plain"].percentile(50));
                ratio_mean[m].push_back(round[m].mean() / round["plain"].mean());
                all[m].add(round[m]);
            }
        }
        nlohmann::json out = {{"rounds", tx_rounds},
                              {"seconds_per_round_all_modes", tx_seconds_per_round}};
        for (const auto& m : modes) {
            out[m] = {{"median_p50_us", median(p50s[m])},
                      {"median_mean_us", median(means[m])},
                      {"round_p50_us", p50s[m]},
                      {"all", all[m].summary()}};
            if (m != "plain") {
                out[m]["ratio_p50_median"] = median(ratio_p50[m]);
                out[m]["ratio_mean_median"] = median(ratio_mean[m]);
                out[m]["round_ratios_p50"] = ratio_p50[m];
            }
        }
        out["target_ratio"] = 1.3;
        out["meets_target"] = {{"enqueue", median(ratio_p50["enqueue"]) <= 1.3},
                               {"enqueue_with", median(ratio_p50["enqueue_with"]) <= 1.3}};
        single["synchronous_commit_" + sync] = out;
        const std::string tag = " (sync commit " + sync + ")";
        table.emplace_back("1-row tx, plain p50" + tag, median(p50s["plain"]), "us");
        table.emplace_back("  + writer.enqueue p50", median(p50s["enqueue"]), "us");
        table.emplace_back("  + writer.enqueue_with p50", median(p50s["enqueue_with"]), "us");
        const std::string target = sync == "on" ? ", target <= 1.3" : "";
        table.emplace_back("  ratio enqueue/plain (p50" + target + ")",
                           median(ratio_p50["enqueue"]), "x");
        table.emplace_back("  ratio enqueue_with/plain (p50" + target + ")",
                           median(ratio_p50["enqueue_with"]), "x");
    }
    {
        pqxx::nontransaction tx{conn};
        tx.exec("SET synchronous_commit = on");
    }
    j["single_row_tx"] = single;

    // --- 2. C++ batch enqueue vs the same rows through a plain INSERT ... unnest --------------
    nlohmann::json batches = nlohmann::json::array();
    const std::string plain_unnest_params =
        "INSERT INTO " + s +
        ".plain_copy (message_id, topic, key, payload, headers) "
        "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::jsonb[])";
    for (int batch_size : {100, 1000}) {
        std::vector<outbox::message> batch;
        for (int i = 0; i < batch_size; ++i) batch.push_back(sample_message(i));
        std::vector<double> ferry_rps, plain_rps;
        for (int r = 0; r < 3; ++r) {
            double ferry_s = 0, plain_s = 0;
            long long rows = 0;
            const auto t0 = clock_type::now();
            while (bench::elapsed_us(t0) / 1e6 < 4.0 * a.scale) {
                ferry_s += timed_s([&] {
                    pqxx::work tx{conn};
                    (void)w.enqueue_batch(tx, batch);
                    tx.commit();
                });
                plain_s += timed_s([&] {
                    const auto arr = to_arrays(batch);
                    pqxx::work tx{conn};
                    tx.exec_params(plain_unnest_params, arr.ids, arr.topics, arr.keys, arr.payloads,
                                   arr.headers);
                    tx.commit();
                });
                rows += batch_size;
            }
            ferry_rps.push_back(static_cast<double>(rows) / ferry_s);
            plain_rps.push_back(static_cast<double>(rows) / plain_s);
            exec_commit(conn, "TRUNCATE " + s + ".outbox, " + s + ".plain_copy");
        }
        batches.push_back({{"batch_size", batch_size},
                           {"ferry_rows_per_s", median(ferry_rps)},
                           {"plain_unnest_rows_per_s", median(plain_rps)},
                           {"ratio_plain_over_ferry", median(plain_rps) / median(ferry_rps)},
                           {"round_ferry_rows_per_s", ferry_rps},
                           {"round_plain_rows_per_s", plain_rps}});
        table.emplace_back("enqueue_batch(" + std::to_string(batch_size) + ") rows/s",
                           median(ferry_rps), "rows/s");
        table.emplace_back("  plain INSERT ... unnest, same rows, rows/s", median(plain_rps),
                           "rows/s");
    }
    j["batch_enqueue"] = batches;

    // --- 3. SQL bulk: enqueue() per row and enqueue_batch() vs plain INSERT ... SELECT --------
    const int bulk_rows = a.scaled(200000);
    exec_commit(conn, "CREATE TABLE " + s +
                          ".bulk_input AS SELECT g AS n, 'orders'::text AS topic, "
                          "'order-' || g AS key, convert_to(repeat('p', 200), 'UTF8') AS payload, "
                          "jsonb_build_object('traceparent', '" +
                          k_traceparent + "') AS headers FROM generate_series(1, " +
                          std::to_string(bulk_rows) + ") g");
    exec_commit(conn, "CREATE TABLE " + s +
                          ".bulk_arrays AS SELECT array_agg(topic ORDER BY n) AS topics, "
                          "array_agg(key ORDER BY n) AS keys, array_agg(payload ORDER BY n) AS "
                          "payloads, array_agg(headers ORDER BY n) AS headers FROM " +
                          s + ".bulk_input");
    {
        pqxx::nontransaction tx{conn};
        tx.exec("VACUUM ANALYZE " + s + ".bulk_input");
    }
    // The floor of a per-row function API: one INSERT per call and nothing else. What separates
    // it from the plain INSERT ... SELECT is PostgreSQL's per-statement work (an executor start
    // and end per call), which no per-row function can avoid.
    exec_commit(conn, "CREATE FUNCTION " + s +
                          ".insert_one(topic text, key text, payload bytea, headers jsonb) "
                          "RETURNS boolean LANGUAGE plpgsql VOLATILE AS $fn$ BEGIN INSERT INTO " +
                          s +
                          ".plain_copy (message_id, topic, key, payload, headers) VALUES "
                          "(gen_random_uuid(), topic, key, payload, headers); RETURN true; END "
                          "$fn$");
    const std::map<std::string, std::string> bulk_sql = {
        {"plain_insert_select", "INSERT INTO " + s +
                                    ".plain_copy (message_id, topic, key, payload, headers) "
                                    "SELECT gen_random_uuid(), topic, key, payload, headers FROM " +
                                    s + ".bulk_input"},
        {"enqueue_per_row",
         "SELECT count(" + s + ".enqueue(topic, key, payload, headers)) FROM " + s + ".bulk_input"},
        {"plain_function_per_row", "SELECT count(" + s +
                                       ".insert_one(topic, key, payload, headers)) FROM " + s +
                                       ".bulk_input"},
        {"plain_insert_unnest",
         "INSERT INTO " + s +
             ".plain_copy (message_id, topic, key, payload, headers) "
             "SELECT gen_random_uuid(), u.* FROM " +
             s + ".bulk_arrays AS a, unnest(a.topics, a.keys, a.payloads, a.headers) AS u"},
        {"enqueue_batch", "SELECT cardinality(" + s +
                              ".enqueue_batch(topics, keys, payloads, headers)) FROM " + s +
                              ".bulk_arrays"},
    };
    const std::vector<std::string> bulk_order = {"plain_insert_select", "enqueue_per_row",
                                                 "plain_function_per_row", "plain_insert_unnest",
                                                 "enqueue_batch"};
    std::map<std::string, std::vector<double>> bulk_s;
    std::vector<double> ratio_per_row, ratio_set, ratio_set_vs_select, ratio_floor,
        ratio_per_row_vs_floor;
    // A warm-up pass of each statement on a tenth of the rows is not needed: round 1 is kept
    // and the median of 3 rounds absorbs a cold first round.
    for (int r = 0; r < 3; ++r) {
        std::map<std::string, double> t;
        for (const auto& name : bulk_order) {
            exec_commit(conn, "TRUNCATE " + s + ".outbox, " + s + ".plain_copy");
            {
                pqxx::nontransaction tx{conn};
                tx.exec("CHECKPOINT");  // every statement starts with the same WAL state
            }
            t[name] = timed_s([&] { exec_commit(conn, bulk_sql.at(name)); });
            bulk_s[name].push_back(t[name]);
        }
        ratio_per_row.push_back(t["enqueue_per_row"] / t["plain_insert_select"]);
        ratio_floor.push_back(t["plain_function_per_row"] / t["plain_insert_select"]);
        ratio_per_row_vs_floor.push_back(t["enqueue_per_row"] / t["plain_function_per_row"]);
        ratio_set.push_back(t["enqueue_batch"] / t["plain_insert_unnest"]);
        ratio_set_vs_select.push_back(t["enqueue_batch"] / t["plain_insert_select"]);
    }
    nlohmann::json bulk = {{"rows", bulk_rows}, {"rounds", 3}};
    for (const auto& name : bulk_order) {
        bulk[name] = {{"median_s", median(bulk_s[name])}, {"round_s", bulk_s[name]}};
    }
    bulk["ratio_per_row_vs_insert_select"] = median(ratio_per_row);
    bulk["ratio_per_row_round"] = ratio_per_row;
    bulk["ratio_plain_function_per_row_vs_insert_select"] = median(ratio_floor);
    bulk["ratio_plain_function_per_row_round"] = ratio_floor;
    bulk["ratio_per_row_vs_plain_function_per_row"] = median(ratio_per_row_vs_floor);
    bulk["ratio_per_row_vs_plain_function_per_row_round"] = ratio_per_row_vs_floor;
    bulk["ratio_set_based_vs_insert_unnest"] = median(ratio_set);
    bulk["ratio_set_based_round"] = ratio_set;
    bulk["ratio_set_based_vs_insert_select"] = median(ratio_set_vs_select);
    bulk["targets"] = {{"per_row", 2.0}, {"set_based", 1.3}};
    bulk["meets_targets"] = {{"per_row", median(ratio_per_row) <= 2.0},
                             {"set_based", median(ratio_set) <= 1.3}};
    j["sql_bulk"] = bulk;
    const std::string n = std::to_string(bulk_rows / 1000) + "k";
    table.emplace_back(n + " rows: plain INSERT ... SELECT", median(bulk_s["plain_insert_select"]),
                       "s");
    table.emplace_back("  enqueue() per row", median(bulk_s["enqueue_per_row"]), "s");
    table.emplace_back("  ratio per row (target <= 2)", median(ratio_per_row), "x");
    table.emplace_back("  floor: plpgsql INSERT per row, no checks",
                       median(bulk_s["plain_function_per_row"]), "s");
    table.emplace_back("  ratio floor / INSERT ... SELECT", median(ratio_floor), "x");
    table.emplace_back("  ratio enqueue() per row / floor", median(ratio_per_row_vs_floor), "x");
    table.emplace_back(n + " rows: plain INSERT ... unnest(arrays)",
                       median(bulk_s["plain_insert_unnest"]), "s");
    table.emplace_back("  enqueue_batch(arrays)", median(bulk_s["enqueue_batch"]), "s");
    table.emplace_back("  ratio set-based (target <= 1.3)", median(ratio_set), "x");

    j["load_average_1m_after"] = load_average();
    bench::print_table("enqueue benchmark, run " + run + " (PostgreSQL " +
                           std::to_string(conn.server_version()) + ", load " +
                           std::to_string(load_before) + ")",
                       table);
    bench::write_json(a, j);
    exec_commit(conn, "DROP SCHEMA " + s + " CASCADE");
    return 0;
}
