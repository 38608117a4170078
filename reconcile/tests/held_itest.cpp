// held_store's operator actions on parked messages (ferryctl parked retry|discard reach the
// parked table only through them): retry puts the message back with its original outbox id and
// message id, so it is published before the later messages of its key; discard deletes it.
#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include "ferry/outbox/migrate.hpp"
#include "ferry/reconcile/held.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/scoped_schema.hpp"

using namespace ferry;

namespace {

class HeldTest : public ::testing::Test {
protected:
    void SetUp() override { (void)outbox::migrate(_conn, _schema.name()); }
    std::string q() const { return "\"" + _schema.name() + "\""; }
    void sql(const std::string& s) {
        pqxx::work tx{_conn};
        tx.exec(s);
        tx.commit();
    }
    long count(const std::string& s) {
        pqxx::nontransaction tx{_conn};
        return tx.exec(s)[0][0].as<long>();
    }
    void park(long id, const std::string& message_id) {
        sql("INSERT INTO " + q() +
            ".parked (id, message_id, topic, key, payload, headers, created_at, available_at, "
            "reason, error_code) VALUES (" +
            std::to_string(id) + ", '" + message_id +
            "', 'orders', 'k', 'p', '{}', now(), now(), 'refused', 'MSG_SIZE_TOO_LARGE')");
    }

    test::scoped_schema _schema{"held"};
    pqxx::connection _conn{test::pg_dsn()};
};

}  // namespace

TEST_F(HeldTest, RetryPutsAParkedMessageBackWithItsOriginalIds) {
    const std::string mid = "01890a5d-ac96-774b-bcce-b302099a8057";
    park(7, mid);
    reconcile::held_store store(test::pg_dsn(), _schema.name());
    EXPECT_TRUE(store.retry_parked(7));
    EXPECT_EQ(count("SELECT count(*) FROM " + q() + ".parked"), 0);
    EXPECT_EQ(count("SELECT count(*) FROM " + q() + ".outbox WHERE id = 7 AND message_id = '" +
                    mid + "' AND key = 'k'"),
              1);
    EXPECT_FALSE(store.retry_parked(7));  // no longer parked
    EXPECT_FALSE(store.retry_parked(12345));
}

TEST_F(HeldTest, DiscardDeletesOnlyThatParkedMessage) {
    park(3, "01890a5d-ac96-774b-bcce-b302099a8001");
    park(4, "01890a5d-ac96-774b-bcce-b302099a8002");
    reconcile::held_store store(test::pg_dsn(), _schema.name());
    EXPECT_TRUE(store.discard_parked(3));
    EXPECT_FALSE(store.discard_parked(3));
    EXPECT_EQ(count("SELECT count(*) FROM " + q() + ".parked WHERE id = 4"), 1);
    EXPECT_EQ(count("SELECT count(*) FROM " + q() + ".parked"), 1);
    EXPECT_EQ(count("SELECT count(*) FROM " + q() + ".outbox"), 0);
}
