// order-service: the producer side of Ferry's demo, written to be copied.
//
//   order-service --config ferry.yaml --orders 2000 [--rate 60] [--pay-every 10]
//                 [--leave-undecided] [--linger 60] [--migrate]
//
// Two ways of announcing an order:
//
// 1. Most orders (pay on delivery): the `orders` row and its `order-placed` message are written
//    in ONE PostgreSQL transaction with writer.enqueue(). Both commit or neither does, so a
//    consumer can never see an order that does not exist, nor miss one that does.
//
// 2. Every K-th order pays up front through an external payment provider. A database
//    transaction cannot stay open across a remote call, so the message is a HALF message:
//      prepare (invisible to consumers) -> call the provider -> record the outcome and the order
//      -> commit (the message is published) or roll back (it never is).
//    If the service dies between the call and the decision, ferry-relay asks the service back
//    ("check-back"): the checkback_responder below answers from the `payments` table.
//    --leave-undecided simulates exactly that crash for one approved payment.
//
// Key choice: the Kafka key is the SKU, not the order id. Ferry keeps per-key order, so the
// inventory service sees the orders of one SKU in the order they committed. That is what a
// stock-keeping consumer needs when stock runs low (first committed, first served). Orders of
// different SKUs still flow in parallel (100 SKUs here).
//
// stdout: progress lines "order-service: ..." and a final "order-service: done ..." line.
#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ferry/config/config.hpp>
#include <ferry/outbox/half.hpp>
#include <ferry/outbox/migrate.hpp>
#include <ferry/outbox/responder.hpp>
#include <ferry/outbox/writer.hpp>
#include <iostream>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

constexpr int sku_count = 100;

struct order {
    std::string id;
    std::string sku;
    int quantity = 1;
    bool pays_up_front = false;
};

order make_order(int i, int pay_every) {
    char id[32];
    char sku[16];
    std::snprintf(id, sizeof id, "order-%07d", i);
    std::snprintf(sku, sizeof sku, "sku-%03d", (i * 37) % sku_count);
    return order{id, sku, 1 + i % 3, pay_every > 0 && i % pay_every == 0};
}

// The message consumers receive. JSON, small, self-describing.
ferry::outbox::message order_placed(const order& o) {
    ferry::outbox::message m;
    m.topic = "order-placed";
    m.key = o.sku;  // per-SKU order, see the header comment
    m.payload = R"({"order_id":")" + o.id + R"(","sku":")" + o.sku + R"(","quantity":)" +
                std::to_string(o.quantity) + "}";
    return m;
}

// The simulated payment provider: declines one paid order in four. A real service would call
// the provider over HTTP here, with tx_ref as the idempotency key.
bool call_payment_provider(int order_number, int pay_every) {
    return (order_number / pay_every) % 4 != 3;
}

void create_tables(pqxx::connection& conn) {
    pqxx::work tx{conn};
    tx.exec(R"(
        CREATE TABLE IF NOT EXISTS orders (
            order_id   text PRIMARY KEY,
            sku        text NOT NULL,
            quantity   int  NOT NULL,
            paid       boolean NOT NULL DEFAULT false,
            message_id uuid NOT NULL UNIQUE,   -- the order-placed message announcing it
            placed_at  timestamptz NOT NULL DEFAULT now()
        ))");
    // The payment provider's answers, by tx_ref: what the check-back responder consults.
    tx.exec(R"(
        CREATE TABLE IF NOT EXISTS payments (
            tx_ref     text PRIMARY KEY,
            order_id   text NOT NULL,
            status     text NOT NULL CHECK (status IN ('approved', 'declined')),
            decided_at timestamptz NOT NULL DEFAULT now()
        ))");
    tx.commit();
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Ferry example: places orders through the transactional outbox"};
    std::string config_path;
    int orders = 100;
    double rate = 0;
    int pay_every = 10;
    bool leave_undecided = false;
    int linger_s = 60;
    bool migrate = false;
    app.add_option("--config", config_path, "Ferry YAML configuration")->required();
    app.add_option("--orders", orders, "orders to place")->check(CLI::NonNegativeNumber);
    app.add_option("--rate", rate, "orders per second (0: as fast as possible)");
    app.add_option("--pay-every", pay_every, "every K-th order pays up front (0: none)");
    app.add_flag("--leave-undecided", leave_undecided,
                 "leave the first approved payment undecided (a crash before commit); "
                 "check-back resolves it");
    app.add_option("--linger", linger_s,
                   "after placing, keep answering check-backs until no payment is pending, "
                   "for at most this many seconds");
    app.add_flag("--migrate", migrate, "apply Ferry's schema migrations first");
    CLI11_PARSE(app, argc, argv);

    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);

    // Configuration comes from the same YAML file the relay reads; every problem at once.
    auto loaded = ferry::config::load_file(config_path);
    if (!loaded.ok()) {
        for (const auto& d : loaded.errors) std::cerr << d.to_string() << "\n";
        return 2;
    }
    const auto& cfg = loaded.config;

    try {
        pqxx::connection conn{cfg.postgres.dsn};
        if (migrate) (void)ferry::outbox::migrate(conn, cfg.postgres.schema);
        create_tables(conn);

        // One writer per process; cfg.outbox carries the schema, limits and the check-back
        // schedule for half messages (checkback.first_after / interval / max_checks).
        const ferry::outbox::writer writer{cfg.outbox};

        // Answers the relay's check-backs for producer group "payments". The check function
        // runs on the responder's own thread, so it uses its own connection.
        ferry::outbox::responder_options ro;
        ro.dsn = cfg.postgres.dsn;
        ro.schema = cfg.postgres.schema;
        ro.producer_group = "payments";
        auto check_conn = std::make_shared<std::unique_ptr<pqxx::connection>>();
        ferry::outbox::checkback_responder responder{
            ro, [check_conn, dsn = cfg.postgres.dsn](const ferry::outbox::half_message_info& h) {
                auto& c = *check_conn;
                if (!c || !c->is_open()) c = std::make_unique<pqxx::connection>(dsn);
                pqxx::read_transaction tx{*c};
                const auto r =
                    tx.exec_params("SELECT status FROM payments WHERE tx_ref = $1", h.tx_ref);
                const auto decision =
                    r.empty() ? ferry::outbox::check_decision::unknown  // call not finished yet
                    : r[0][0].as<std::string>() == "approved"
                        ? ferry::outbox::check_decision::commit
                        : ferry::outbox::check_decision::rollback;
                std::cout << "order-service: check-back tx_ref=" << h.tx_ref << " -> "
                          << ferry::outbox::to_string(decision) << std::endl;
                return decision;
            }};
        responder.start();

        ferry::outbox::half_options payment_half;
        payment_half.producer_group = "payments";
        payment_half.producer_instance = responder.instance_id();  // check-backs come here first

        int placed = 0, paid = 0, declined = 0;
        bool undecided_left = false;
        const auto started = std::chrono::steady_clock::now();
        for (int i = 1; i <= orders && g_stop == 0; ++i) {
            if (rate > 0) {  // pace the stream so the demo can inject faults mid-way
                const auto due = started + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                               std::chrono::duration<double>((i - 1) / rate));
                std::this_thread::sleep_until(due);
            }
            const order o = make_order(i, pay_every);
            const auto msg = order_placed(o);

            if (!o.pays_up_front) {
                // The outbox pattern: business row + message, one transaction.
                pqxx::work tx{conn};
                const auto id = writer.enqueue(tx, msg);
                tx.exec_params(
                    "INSERT INTO orders (order_id, sku, quantity, message_id) "
                    "VALUES ($1, $2, $3, $4::uuid)",
                    o.id, o.sku, o.quantity, id.to_string());
                tx.commit();
                ++placed;
            } else {
                // Half message: durable intent first, then the remote call, then the decision.
                const std::string tx_ref = "pay-" + o.id;
                const auto id = ferry::outbox::prepare(writer, conn, msg, tx_ref, payment_half);
                const bool approved = call_payment_provider(i, pay_every);
                {
                    // The local transaction: the provider's answer, and the order if approved.
                    pqxx::work tx{conn};
                    tx.exec_params(
                        "INSERT INTO payments (tx_ref, order_id, status) "
                        "VALUES ($1, $2, $3)",
                        tx_ref, o.id, approved ? "approved" : "declined");
                    if (approved) {
                        tx.exec_params(
                            "INSERT INTO orders (order_id, sku, quantity, paid, message_id) "
                            "VALUES ($1, $2, $3, true, $4::uuid)",
                            o.id, o.sku, o.quantity, id.to_string());
                    }
                    tx.commit();
                }
                if (approved)
                    ++placed, ++paid;
                else
                    ++declined;
                if (leave_undecided && approved && !undecided_left) {
                    // Simulated crash between the payment and the decision: nothing decides
                    // this message except the relay's check-back, answered by the responder.
                    undecided_left = true;
                    std::cout << "order-service: payment " << tx_ref
                              << " left undecided (check-back will resolve it)" << std::endl;
                    continue;
                }
                (void)(approved ? ferry::outbox::commit(writer, conn, id)
                                : ferry::outbox::rollback(writer, conn, id));
            }
            if (i % 250 == 0) {
                std::cout << "order-service: " << i << "/" << orders
                          << " orders handled (placed=" << placed << " paid=" << paid
                          << " declined=" << declined << ")" << std::endl;
            }
        }

        // Keep answering check-backs until every payment of ours is decided (or time is up).
        const auto linger_until = std::chrono::steady_clock::now() + std::chrono::seconds(linger_s);
        long pending = 0;
        while (g_stop == 0) {
            pqxx::read_transaction tx{conn};
            pending = tx.exec1("SELECT count(*) FROM " + conn.quote_name(cfg.postgres.schema) +
                               ".half_message WHERE producer_group = 'payments' "
                               "AND state IN ('pending', 'parked')")[0]
                          .as<long>();
            tx.commit();
            if (pending == 0 || std::chrono::steady_clock::now() >= linger_until) break;
            std::cout << "order-service: waiting for check-back: " << pending
                      << " payment(s) undecided" << std::endl;
            std::this_thread::sleep_for(std::chrono::seconds(1));
        }
        responder.stop();
        std::cout << "order-service: done placed=" << placed << " paid=" << paid
                  << " declined=" << declined << " undecided_after_linger=" << pending
                  << " checkbacks_answered=" << responder.answered() << std::endl;
        return pending == 0 ? 0 : 3;
    } catch (const ferry::error& e) {
        std::cerr << "order-service: " << e.what() << " [" << e.code() << "]\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "order-service: " << e.what() << "\n";
        return 1;
    }
}
