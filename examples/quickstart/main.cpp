// The smallest Ferry producer: one business row and its message in one transaction.
//
//   quickstart DSN [N]   migrates schema "ferry", places N orders (default 1), and prints
//                        "enqueued <id>" per order.
#include <ferry/outbox/migrate.hpp>
#include <ferry/outbox/writer.hpp>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: quickstart DSN [N]\n";
        return 2;
    }
    const int n = argc > 2 ? std::stoi(argv[2]) : 1;
    try {
        pqxx::connection conn{argv[1]};
        (void)ferry::outbox::migrate(conn, "ferry");
        {
            pqxx::work tx{conn};
            tx.exec(
                "CREATE TABLE IF NOT EXISTS quickstart_orders (id text PRIMARY KEY, total "
                "numeric)");
            tx.commit();
        }

        ferry::outbox::writer writer{ferry::outbox::writer_options{}};
        for (int i = 0; i < n; ++i) {
            const std::string order_id = "order-" + std::to_string(i + 42);
            pqxx::work tx{conn};
            tx.exec_params(
                "INSERT INTO quickstart_orders (id, total) VALUES ($1, 19.90) "
                "ON CONFLICT (id) DO UPDATE SET total = excluded.total",
                order_id);
            ferry::outbox::message m;
            m.topic = "orders";
            m.key = order_id;
            m.payload = R"({"total":19.90})";
            auto id = writer.enqueue(tx, m);  // the message commits or rolls back with tx
            tx.commit();
            std::cout << "enqueued " << id.to_string() << "\n";
        }
    } catch (const ferry::error& e) {
        std::cerr << "quickstart: " << e.what() << " [" << e.code() << "]\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "quickstart: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
