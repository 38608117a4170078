// Half messages, producer side: prepare is invisible, commit/rollback are idempotent
// compare-and-sets, contradictions are refused, and a race has exactly one winner.
#include <atomic>
#include <barrier>
#include <thread>

#include "ferry/common/error.hpp"
#include "ferry/outbox/half.hpp"
#include "outbox_fixture.hpp"

using namespace ferry::outbox;

class HalfTest : public OutboxFixture {
protected:
    message_id prepare_one(const std::string& key = "pay-1", const half_options& o = {}) {
        auto m = make(key, R"({"amount":10})");
        m.headers = {{"traceparent", "00-abc-def-01"}};
        return prepare(writer(), conn(), m, "tx-" + key, o);
    }
    std::string half_state_of(const message_id& id) {
        pqxx::nontransaction tx{conn()};
        return tx
            .exec("SELECT state FROM \"" + schema() + "\".half_message WHERE message_id = '" +
                  id.to_string() + "'")[0][0]
            .as<std::string>();
    }
};

TEST_F(HalfTest, PreparedMessageIsInvisibleUntilCommitted) {
    const auto id = prepare_one();
    EXPECT_EQ(count_rows(), 0) << "a half message must not reach the outbox before commit";
    const auto info = find_half(writer(), conn(), id);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->state, half_state::pending);
    EXPECT_EQ(info->tx_ref, "tx-pay-1");
    EXPECT_EQ(info->producer_group, "default");
    EXPECT_EQ(info->max_checks, 15);

    EXPECT_EQ(commit(writer(), conn(), id), half_state::committed);
    EXPECT_EQ(count_rows("message_id = '" + id.to_string() +
                         "' AND key = 'pay-1' AND headers->>'traceparent' = '00-abc-def-01'"),
              1);
    EXPECT_EQ(find_half(writer(), conn(), id)->decided_by, "producer");
}

TEST_F(HalfTest, RollbackIsNeverPublished) {
    const auto id = prepare_one();
    EXPECT_EQ(rollback(writer(), conn(), id), half_state::rolled_back);
    EXPECT_EQ(count_rows(), 0);
    EXPECT_EQ(half_state_of(id), "rolled_back");
}

TEST_F(HalfTest, RepeatedDecisionsAreIdempotent) {
    const auto a = prepare_one("a"), b = prepare_one("b");
    EXPECT_EQ(commit(writer(), conn(), a), half_state::committed);
    EXPECT_EQ(commit(writer(), conn(), a), half_state::committed);
    EXPECT_EQ(rollback(writer(), conn(), b), half_state::rolled_back);
    EXPECT_EQ(rollback(writer(), conn(), b), half_state::rolled_back);
    EXPECT_EQ(count_rows(), 1) << "a repeated commit must not enqueue twice";
}

TEST_F(HalfTest, ContradictingDecisionIsRefusedClearly) {
    const auto a = prepare_one("a"), b = prepare_one("b");
    (void)rollback(writer(), conn(), a);
    try {
        (void)commit(writer(), conn(), a);
        FAIL() << "commit after rollback accepted";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "outbox.half_conflict");
        EXPECT_EQ(e.kind(), ferry::error_kind::permanent);
        EXPECT_NE(std::string(e.what()).find("already rolled back"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(a.to_string()), std::string::npos) << e.what();
    }
    (void)commit(writer(), conn(), b);
    EXPECT_THROW((void)rollback(writer(), conn(), b), ferry::error);
    EXPECT_EQ(half_state_of(a), "rolled_back");
    EXPECT_EQ(half_state_of(b), "committed");
    EXPECT_EQ(count_rows(), 1);
}

TEST_F(HalfTest, UnknownIdIsReported) {
    try {
        (void)commit(writer(), conn(), message_id::generate());
        FAIL();
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "outbox.half_unknown") << e.what();
    }
}

TEST_F(HalfTest, PrepareValidatesLikeEnqueue) {
    auto m = make("k");
    m.topic = "bad topic";
    EXPECT_THROW((void)prepare(writer(), conn(), m, "tx"), ferry::error);
    try {
        (void)prepare(writer(), conn(), make("k"), "");
        FAIL();
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.field(), "tx_ref");
    }
    half_options o;
    o.max_checks = -1;
    EXPECT_THROW((void)prepare(writer(), conn(), make("k"), "tx", o), ferry::error);
    pqxx::nontransaction tx{conn()};
    EXPECT_EQ(tx.exec("SELECT count(*) FROM \"" + schema() + "\".half_message")[0][0].as<int>(), 0);
}

TEST_F(HalfTest, PerMessageCheckbackSettingsAreStored) {
    half_options o;
    o.producer_group = "payments";
    o.producer_instance = "payments-7";
    o.check_first_after = std::chrono::seconds(2);
    o.check_interval = std::chrono::seconds(5);
    o.max_checks = 3;
    const auto id = prepare_one("k", o);
    pqxx::nontransaction tx{conn()};
    const auto r = tx.exec(
        "SELECT producer_group, producer_instance, extract(epoch FROM check_first_after), "
        "extract(epoch FROM check_interval), max_checks, "
        "extract(epoch FROM next_check_at - prepared_at) FROM \"" +
        schema() + "\".half_message WHERE message_id = '" + id.to_string() + "'")[0];
    EXPECT_EQ(r[0].as<std::string>(), "payments");
    EXPECT_EQ(r[1].as<std::string>(), "payments-7");
    EXPECT_DOUBLE_EQ(r[2].as<double>(), 2.0);
    EXPECT_DOUBLE_EQ(r[3].as<double>(), 5.0);
    EXPECT_EQ(r[4].as<int>(), 3);
    EXPECT_NEAR(r[5].as<double>(), 2.0, 0.01);
}

// A producer's commit races a check-back's rollback (and vice versa), many times: each message
// ends in exactly one terminal state, and it is in the outbox iff that state is committed.
TEST_F(HalfTest, RacingDecisionsHaveExactlyOneWinner) {
    constexpr int trials = 150;
    std::vector<message_id> ids;
    for (int i = 0; i < trials; ++i) ids.push_back(prepare_one("race-" + std::to_string(i)));
    std::barrier sync(2);
    std::atomic<int> producer_conflicts{0}, errors{0};
    std::thread producer([&] {
        try {
            pqxx::connection c{ferry::test::pg_dsn()};
            for (int i = 0; i < trials; ++i) {
                sync.arrive_and_wait();
                try {
                    (void)(i % 2 ? commit(writer(), c, ids[i]) : rollback(writer(), c, ids[i]));
                } catch (const ferry::error& e) {
                    if (e.code() == "outbox.half_conflict") {
                        ++producer_conflicts;
                    } else {
                        ADD_FAILURE() << e.what();
                        ++errors;
                    }
                }
            }
        } catch (const std::exception& e) {
            ADD_FAILURE() << e.what();
            ++errors;
        }
    });
    std::thread checkback([&] {
        try {
            pqxx::connection c{ferry::test::pg_dsn()};
            for (int i = 0; i < trials; ++i) {
                sync.arrive_and_wait();
                pqxx::work tx{c};
                // The opposite decision, as the check-back records it (never throws).
                tx.exec("SELECT \"" + schema() + "\".decide_half('" + ids[i].to_string() + "', '" +
                        (i % 2 ? "rollback" : "commit") + "', 'checkback')");
                tx.commit();
            }
        } catch (const std::exception& e) {
            ADD_FAILURE() << e.what();
            ++errors;
        }
    });
    producer.join();
    checkback.join();
    ASSERT_EQ(errors.load(), 0);
    int committed = 0;
    {
        pqxx::nontransaction tx{conn()};
        for (int i = 0; i < trials; ++i) {
            const auto r =
                tx.exec("SELECT h.state, (SELECT count(*) FROM \"" + schema() +
                        "\".outbox o WHERE o.message_id = h.message_id) FROM \"" + schema() +
                        "\".half_message h WHERE h.message_id = '" + ids[i].to_string() + "'")[0];
            const auto state = r[0].as<std::string>();
            ASSERT_TRUE(state == "committed" || state == "rolled_back") << state;
            EXPECT_EQ(r[1].as<int>(), state == "committed" ? 1 : 0) << ids[i].to_string();
            committed += state == "committed";
        }
    }
    // The producer's decision lost exactly when the check-back got there first.
    const int producer_wins = trials - producer_conflicts.load();
    EXPECT_GT(producer_wins, 0);
    EXPECT_EQ(count_rows(), committed);
}

TEST_F(HalfTest, ParkedMessageCanStillBeResolvedByTheProducerButNotByCheckback) {
    const auto id = prepare_one();
    {
        pqxx::work tx{conn()};
        tx.exec("UPDATE \"" + schema() +
                "\".half_message SET state = 'parked' WHERE message_id = '" + id.to_string() + "'");
        tx.exec("SELECT \"" + schema() + "\".decide_half('" + id.to_string() +
                "', 'rollback', 'checkback')");
        tx.commit();
    }
    EXPECT_EQ(half_state_of(id), "parked");
    EXPECT_EQ(commit(writer(), conn(), id), half_state::committed);
    EXPECT_EQ(count_rows(), 1);
}

TEST_F(HalfTest, SqlApiHasTheSameRules) {
    pqxx::work tx{conn()};
    const auto s = "\"" + schema() + "\"";
    const auto id =
        tx.exec("SELECT " + s + ".prepare('orders', 'k', 'x'::bytea, '{}', 'tx-9')::text")[0][0]
            .as<std::string>();
    EXPECT_EQ(tx.exec("SELECT " + s + ".commit_half('" + id + "')")[0][0].as<std::string>(),
              "committed");
    EXPECT_EQ(tx.exec("SELECT " + s + ".commit_half('" + id + "')")[0][0].as<std::string>(),
              "committed");
    tx.commit();
    pqxx::work tx2{conn()};
    try {
        tx2.exec("SELECT " + s + ".rollback_half('" + id + "')");
        FAIL();
    } catch (const pqxx::sql_error& e) {
        EXPECT_EQ(e.sqlstate(), "FH001");
        EXPECT_NE(std::string(e.what()).find("already committed"), std::string::npos) << e.what();
    }
}

// ferryctl half list reads through this API (no SQL of its own).
TEST_F(HalfTest, ListFiltersByStateAndGroupInPrepareOrder) {
    half_options pay;
    pay.producer_group = "payments";
    pay.producer_instance = "payments-1";
    const auto a = prepare_one("list-a", pay);
    const auto b = prepare_one("list-b");
    const auto c = prepare_one("list-c", pay);
    (void)commit(writer(), conn(), c);

    auto all = list_half(writer(), conn());
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all[0].id, a);
    EXPECT_EQ(all[0].producer_instance.value_or(""), "payments-1");
    EXPECT_EQ(all[0].prepared_at.size(), 20u) << all[0].prepared_at;  // 2026-01-01T00:00:00Z
    EXPECT_EQ(all[0].prepared_at.back(), 'Z');

    half_filter pending_payments;
    pending_payments.state = half_state::pending;
    pending_payments.producer_group = "payments";
    const auto p = list_half(writer(), conn(), pending_payments);
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].id, a);

    half_filter committed;
    committed.state = half_state::committed;
    const auto cm = list_half(writer(), conn(), committed);
    ASSERT_EQ(cm.size(), 1u);
    EXPECT_EQ(cm[0].id, c);
    EXPECT_EQ(cm[0].decided_by.value_or(""), "producer");

    half_filter one;
    one.limit = 1;
    EXPECT_EQ(list_half(writer(), conn(), one).size(), 1u);
    one.limit = 0;
    try {
        (void)list_half(writer(), conn(), one);
        FAIL() << "limit 0 accepted";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.field(), "limit");
    }
    EXPECT_EQ(b, all[1].id);
    EXPECT_EQ(parse_half_state("rolled_back"), half_state::rolled_back);
    EXPECT_FALSE(parse_half_state("rolledback").has_value());
}

// ferryctl half commit|rollback: recorded as the operator's decision, conflicts refused.
TEST_F(HalfTest, OperatorDecisionIsRecordedAsTheOperators) {
    const auto a = prepare_one("op-a");
    EXPECT_EQ(decide_as_operator(writer(), conn(), a, half_decision::rollback),
              half_state::rolled_back);
    const auto info = find_half(writer(), conn(), a);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->decided_by.value_or(""), "operator");
    try {
        (void)decide_as_operator(writer(), conn(), a, half_decision::commit);
        FAIL() << "commit after rollback accepted";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "outbox.half_conflict");
    }
    try {
        (void)decide_as_operator(writer(), conn(), message_id::generate(), half_decision::commit);
        FAIL();
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "outbox.half_unknown");
    }
    EXPECT_EQ(count_rows(), 0);
}
