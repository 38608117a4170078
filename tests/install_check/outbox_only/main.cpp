// The smallest outbox-only service: migrates only the outbox module's tables
// (migrate_options{.only = {"outbox"}}) and enqueues one message.
//
//   outbox_only DSN SCHEMA   prints "enqueued <id>"
#include <ferry/outbox/migrate.hpp>
#include <ferry/outbox/writer.hpp>
#include <iostream>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::cerr << "usage: outbox_only DSN SCHEMA\n";
        return 2;
    }
    try {
        pqxx::connection conn{argv[1]};
        ferry::outbox::migrate_options only;
        only.only = {"outbox"};
        (void)ferry::outbox::migrate(conn, argv[2], only);
        ferry::outbox::writer_options o;
        o.schema = argv[2];
        const ferry::outbox::writer writer{o};
        ferry::outbox::message m;
        m.topic = "orders";
        m.key = "order-7";
        m.payload = "{}";
        pqxx::work tx{conn};
        const auto id = writer.enqueue(tx, m);
        tx.commit();
        std::cout << "enqueued " << id.to_string() << "\n";
    } catch (const std::exception& e) {
        std::cerr << "outbox_only: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
