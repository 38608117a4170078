// inventory-service: the consumer side of Ferry's demo, written to be copied.
//
//   inventory-service --config ferry.yaml [--group inventory] [--effect stock|notify]
//                     [--dedup both|inbox|redis|none] [--lease S] [--session-timeout S]
//
// Everything about the consumer comes from the `consumers:` entry of the YAML file whose group
// is --group (docs/configuration.md): topics, dedup mode, lanes, batch bounds, retry policy,
// Kafka properties, inbox retention. ferry::consumer::to_options turns that entry into
// consumer_options; nothing is assembled by hand here. Without an entry for the group the
// defaults apply (topic order-placed, dedup inbox). --dedup, --lease and --session-timeout
// override the entry (the demo script uses them to run its variants from one file).
//
// --effect stock (group "inventory"): each `order-placed` decrements the SKU's stock. The
//   effect is in PostgreSQL, so it runs as a tx_handler: Ferry inserts the inbox row
//   (group, message_id) in the SAME transaction as the UPDATE. A redelivered message (relay
//   crash between Kafka's ack and its mark, a consumer killed before its offset commit, a replay)
//   hits the inbox's primary key and is dropped: the stock moves exactly once. Redis, in front,
//   only saves the database round trip for most duplicates.
//   Every applied effect is also appended to `stock_witness`, a table WITHOUT a unique
//   constraint, so that a duplicate effect would stay visible; the demo counts from it.
//
// --effect notify (group "notifications"): a second consumer group on the same topic gets its own
//   copy of every message (pub/sub fan-out). Its effect is idempotent (INSERT ... ON CONFLICT DO
//   NOTHING), which is the case where Redis-only dedup is enough.
//
// HTTP (the `http:` section, as ferry-relay's): /metrics, /healthz and /readyz (partitions
// assigned, PostgreSQL and Redis reachable), from ferry/consumer/http.hpp. FERRY_HTTP_LISTEN
// overrides http.listen, so a relay and consumers can share one file on one host.
//
// Runs until SIGTERM/SIGINT, then stops gracefully (drains, commits offsets, leaves the group).
// stdout: "http.listen=HOST:PORT", "inventory-service[GROUP]: ready", then a progress line every
// 2 s.
#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ferry/config/config.hpp>
#include <ferry/consumer/consumer.hpp>
#include <ferry/consumer/from_config.hpp>
#include <ferry/consumer/http.hpp>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <string>
#include <thread>

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct order_placed {
    std::string order_id;
    std::string sku;
    int quantity = 0;
};

// A payload we cannot read will never become readable: say `permanent`, and Ferry dead-letters
// it (queryable, replayable) instead of retrying it forever.
order_placed parse(const ferry::consumer::message& m) {
    try {
        const auto j = nlohmann::json::parse(m.payload);
        return {j.at("order_id").get<std::string>(), j.at("sku").get<std::string>(),
                j.at("quantity").get<int>()};
    } catch (const std::exception& e) {
        throw ferry::error(ferry::error_kind::permanent, "inventory.bad_payload",
                           std::string("unreadable order-placed payload: ") + e.what());
    }
}

// The stock effect, through the caller's transaction.
void decrement_stock(pqxx::work& tx, const ferry::consumer::message& m, const std::string& group) {
    const auto o = parse(m);
    const auto r =
        tx.exec_params("UPDATE stock SET on_hand = on_hand - $2 WHERE sku = $1", o.sku, o.quantity);
    if (r.affected_rows() != 1) {
        throw ferry::error(ferry::error_kind::permanent, "inventory.unknown_sku",
                           "unknown SKU " + o.sku);
    }
    tx.exec_params(
        "INSERT INTO stock_witness (message_id, order_id, sku, quantity, consumer_group) "
        "VALUES ($1::uuid, $2, $3, $4, $5)",
        m.message_id, o.order_id, o.sku, o.quantity, group);
}

void notify(pqxx::work& tx, const ferry::consumer::message& m, const std::string& group) {
    const auto o = parse(m);
    tx.exec_params(
        "INSERT INTO notifications (message_id, consumer_group, order_id) "
        "VALUES ($1::uuid, $2, $3) ON CONFLICT DO NOTHING",
        m.message_id, group, o.order_id);
}

void create_tables(pqxx::connection& conn, int skus, long initial_stock) {
    pqxx::work tx{conn};
    tx.exec(R"(
        CREATE TABLE IF NOT EXISTS stock (
            sku      text PRIMARY KEY,
            initial  bigint NOT NULL,
            on_hand  bigint NOT NULL
        ))");
    // Append-only, deliberately no unique constraint: one row per applied effect.
    tx.exec(R"(
        CREATE TABLE IF NOT EXISTS stock_witness (
            message_id     uuid NOT NULL,
            order_id       text NOT NULL,
            sku            text NOT NULL,
            quantity       int  NOT NULL,
            consumer_group text NOT NULL,
            applied_at     timestamptz NOT NULL DEFAULT clock_timestamp()
        ))");
    tx.exec(R"(
        CREATE TABLE IF NOT EXISTS notifications (
            message_id     uuid NOT NULL,
            consumer_group text NOT NULL,
            order_id       text NOT NULL,
            sent_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (consumer_group, message_id)
        ))");
    tx.exec_params(
        "INSERT INTO stock (sku, initial, on_hand) "
        "SELECT format('sku-%s', lpad(i::text, 3, '0')), $2, $2 FROM generate_series(0, $1 - 1) i "
        "ON CONFLICT (sku) DO NOTHING",
        skus, initial_stock);
    tx.commit();
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Ferry example: applies order-placed to stock exactly once"};
    std::string config_path;
    std::string group = "inventory";
    std::string effect = "stock";
    std::string dedup;
    int skus = 100;
    long initial_stock = 1000000;
    int lease_s = 0;
    int session_timeout_s = 0;
    app.add_option("--config", config_path, "Ferry YAML configuration")->required();
    app.add_option("--group", group, "the consumers: entry (Kafka consumer group) to run");
    app.add_option("--effect", effect, "stock: decrement stock; notify: record a notification")
        ->check(CLI::IsMember({"stock", "notify"}));
    app.add_option("--dedup", dedup, "override the entry's dedup (both = redis_and_inbox)")
        ->check(CLI::IsMember({"both", "inbox", "redis", "none"}));
    app.add_option("--lease", lease_s, "override the entry's Redis lease, seconds")
        ->check(CLI::Range(1, 3600));
    app.add_option("--session-timeout", session_timeout_s,
                   "override the entry's Kafka session timeout, seconds")
        ->check(CLI::Range(1, 3600));
    app.add_option("--skus", skus, "SKUs to seed in the stock table");
    app.add_option("--initial-stock", initial_stock, "units per SKU when seeding");
    CLI11_PARSE(app, argc, argv);

    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);

    auto loaded = ferry::config::load_file(config_path);
    if (!loaded.ok()) {
        for (const auto& d : loaded.errors) std::cerr << d.to_string() << "\n";
        return 2;
    }
    const auto& cfg = loaded.config;

    // The group's consumers: entry, or the defaults for it.
    ferry::config::consumer_config entry;
    if (const auto* found = ferry::config::find_consumer(cfg, group)) {
        entry = *found;
    } else {
        entry.group = group;
        entry.topics = {"order-placed"};
        std::cerr << "inventory-service: no consumers: entry for group " << group << " in "
                  << config_path << "; using the defaults\n";
    }
    if (!dedup.empty()) entry.dedup = dedup == "both" ? "redis_and_inbox" : dedup;
    if (lease_s > 0) entry.lease = std::chrono::seconds(lease_s);
    if (session_timeout_s > 0) entry.session_timeout = std::chrono::seconds(session_timeout_s);

    try {
        const auto o = ferry::consumer::to_options(cfg, entry);
        {
            pqxx::connection conn{o.dsn};
            create_tables(conn, skus, initial_stock);
        }
        const bool inbox = o.dedup == ferry::consumer::dedup_mode::inbox ||
                           o.dedup == ferry::consumer::dedup_mode::redis_and_inbox;
        const auto apply = effect == "stock" ? decrement_stock : notify;

        ferry::consumer::consumer c{o};
        // The Kafka topics the relay publishes to: topic_prefix + topic_map(topic).
        const auto topics = ferry::consumer::kafka_topics(cfg, entry);
        const ferry::consumer::topic_options topts{entry.ordered_retry};
        for (const auto& topic : topics) {
            if (inbox) {
                // The effect and the inbox row commit together: exactly-once effect.
                c.subscribe(
                    topic,
                    ferry::consumer::tx_handler([&](const ferry::consumer::message& m,
                                                    pqxx::work& tx) { apply(tx, m, group); }),
                    topts);
            } else {
                // No inbox: the handler commits its own transaction. Exactly-once only as far as
                // Redis remembers (and for idempotent effects such as notify).
                const std::string dsn = o.dsn;
                c.subscribe(topic,
                            ferry::consumer::handler([&, dsn](const ferry::consumer::message& m) {
                                // One connection per lane thread; calls for one key never
                                // overlap.
                                thread_local std::unique_ptr<pqxx::connection> conn;
                                if (!conn || !conn->is_open()) {
                                    conn = std::make_unique<pqxx::connection>(dsn);
                                }
                                pqxx::work tx{*conn};
                                apply(tx, m, group);
                                tx.commit();
                            }),
                            topts);
            }
        }
        // /metrics, /healthz, /readyz: bound before start(), so /readyz says 503 until the
        // group has assigned partitions.
        ferry::consumer::http_server http(ferry::consumer::to_http_options(cfg.http), {&c});
        std::cout << "http.listen=" << http.host() << ":" << http.port() << std::endl;
        c.start();
        const std::string me = "inventory-service[" + group + "]";
        std::string topic_list;
        for (const auto& t : topics) topic_list += (topic_list.empty() ? "" : ",") + t;
        std::cout << me << ": ready topic=" << topic_list
                  << " dedup=" << ferry::consumer::to_string(o.dedup) << std::endl;

        auto next_report = std::chrono::steady_clock::now();
        while (g_stop == 0) {
            if (std::chrono::steady_clock::now() >= next_report) {
                const auto s = c.metrics();
                std::cout << me << ": processed=" << s.processed
                          << " duplicates_absorbed=" << s.duplicates_absorbed << " lag=" << s.lag
                          << " dead_letters=" << s.dead_letters << std::endl;
                next_report += std::chrono::seconds(2);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        c.stop();
        http.stop();
        const auto s = c.metrics();
        std::cout << me << ": stopped processed=" << s.processed
                  << " duplicates_absorbed=" << s.duplicates_absorbed << std::endl;
    } catch (const ferry::error& e) {
        std::cerr << "inventory-service: " << e.what() << " [" << e.code() << "]\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "inventory-service: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
