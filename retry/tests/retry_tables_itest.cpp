// The retry and dead-letter tables on a real PostgreSQL: ordered head-of-key claims,
// multi-instance claims, dead letters that block their key, replay and purge.
#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include "ferry/outbox/migrate.hpp"
#include "ferry/retry/tables.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/scoped_schema.hpp"

using namespace std::chrono_literals;

namespace {

std::string uuid(int n) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "0190a000-0000-7000-8000-%012d", n);
    return buf;
}

ferry::retry::stored_message msg(int n, std::string key, long long offset) {
    ferry::retry::stored_message m;
    m.topic = "t";
    m.partition = 0;
    m.offset = offset;
    m.key = std::move(key);
    m.message_id = uuid(n);
    m.payload = std::string("p\0q", 3);
    m.headers = {{"traceparent", "00-abc"}, {"nullh", std::nullopt}};
    return m;
}

class RetryTablesTest : public ::testing::Test {
protected:
    void SetUp() override {
        pqxx::connection c{ferry::test::pg_dsn()};
        (void)ferry::outbox::migrate(c, schema.name());
    }
    ferry::test::scoped_schema schema{"retry"};
    pqxx::connection conn{ferry::test::pg_dsn()};
};

TEST_F(RetryTablesTest, OrderedKeyHandsOutHeadOnlyAndParksLaterMessages) {
    ferry::retry::retry_table rt(schema.name(), "g");
    {
        pqxx::work tx{conn};
        EXPECT_FALSE(rt.park_if_blocked(tx, msg(1, "k", 10)));  // key free: nothing written
        EXPECT_TRUE(rt.schedule(tx, msg(1, "k", 10), 3, 0ms, "boom"));
        EXPECT_FALSE(rt.schedule(tx, msg(1, "k", 10), 3, 0ms, "boom"));  // duplicate absorbed
        EXPECT_TRUE(rt.park_if_blocked(tx, msg(2, "k", 11)));
        EXPECT_TRUE(rt.park_if_blocked(tx, msg(2, "k", 11)));  // still blocked, not doubled
        EXPECT_FALSE(rt.park_if_blocked(tx, msg(3, "other", 12)));
        EXPECT_EQ(rt.count(tx), 2);
        tx.commit();
    }
    pqxx::work tx{conn};
    auto rows = rt.claim_due(tx, "me", 10, 10s);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].message.offset, 10);
    EXPECT_EQ(rows[0].attempts, 3);
    EXPECT_EQ(rows[0].message.payload, std::string("p\0q", 3));
    ASSERT_EQ(rows[0].message.headers.size(), 2u);
    EXPECT_EQ(rows[0].message.headers[0].value, "00-abc");
    EXPECT_FALSE(rows[0].message.headers[1].value.has_value());
    EXPECT_FALSE(rt.remove(tx, rows[0].id, "someone-else"));
    EXPECT_TRUE(rt.remove(tx, rows[0].id, "me"));
    rows = rt.claim_due(tx, "me", 10, 10s);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].message.offset, 11);
    EXPECT_EQ(rows[0].attempts, 0);
}

TEST_F(RetryTablesTest, ClaimKeyHeadTakesOnlyTheDueUnclaimedHeadOfThatKey) {
    ferry::retry::retry_table rt(schema.name(), "g");
    {
        pqxx::work tx{conn};
        EXPECT_TRUE(rt.schedule(tx, msg(1, "k", 10), 1, 0ms, "boom"));
        EXPECT_TRUE(rt.park_if_blocked(tx, msg(2, "k", 11)));
        EXPECT_TRUE(rt.park_if_blocked(tx, msg(3, "k", 12)));
        EXPECT_TRUE(rt.schedule(tx, msg(4, "other", 13), 1, 0ms, "boom"));
        tx.commit();
    }
    pqxx::work tx{conn};
    auto head = rt.claim_key_head(tx, "me", "t", "k", 10s);
    ASSERT_TRUE(head.has_value());
    EXPECT_EQ(head->message.offset, 10);
    // Claimed (by me): offset 11 is not the head yet, and 10 is not handed out twice.
    EXPECT_FALSE(rt.claim_key_head(tx, "me", "t", "k", 10s).has_value());
    EXPECT_TRUE(rt.remove(tx, head->id, "me"));
    head = rt.claim_key_head(tx, "me", "t", "k", 10s);
    ASSERT_TRUE(head.has_value());
    EXPECT_EQ(head->message.offset, 11);
    EXPECT_EQ(head->attempts, 0);
    // Another key's row is never returned for this key.
    EXPECT_FALSE(rt.claim_key_head(tx, "me", "t", "none", 10s).has_value());
    const auto other = rt.claim_key_head(tx, "me", "t", "other", 10s);
    ASSERT_TRUE(other.has_value());
    EXPECT_EQ(other->message.offset, 13);
}

TEST_F(RetryTablesTest, ClaimsAreExclusiveAcrossInstances) {
    ferry::retry::retry_table rt(schema.name(), "g");
    {
        pqxx::work tx{conn};
        for (int i = 0; i < 4; ++i)
            (void)rt.schedule(tx, msg(i, "k" + std::to_string(i), i), 1, 0ms, "e");
        tx.commit();
    }
    pqxx::connection other{ferry::test::pg_dsn()};
    pqxx::work a{conn};
    pqxx::work b{other};
    const auto ra = rt.claim_due(a, "a", 2, 10s);
    const auto rb = rt.claim_due(b, "b", 10, 10s);  // skips a's locked rows
    EXPECT_EQ(ra.size(), 2u);
    EXPECT_EQ(rb.size(), 2u);
    for (const auto& x : ra) {
        for (const auto& y : rb) EXPECT_NE(x.id, y.id);
    }
}

TEST_F(RetryTablesTest, DeadLetterBlocksKeyUntilReplayedThenRunsFirst) {
    ferry::retry::retry_table rt(schema.name(), "g");
    ferry::retry::dead_letters dl(schema.name());
    {
        pqxx::work tx{conn};
        (void)rt.schedule(tx, msg(1, "k", 10), 5, 0ms, "boom");
        EXPECT_TRUE(rt.park_if_blocked(tx, msg(2, "k", 11)));
        tx.commit();
    }
    {
        pqxx::work tx{conn};
        auto rows = rt.claim_due(tx, "me", 10, 10s);
        ASSERT_EQ(rows.size(), 1u);
        EXPECT_TRUE(rt.move_to_dead_letter(tx, rows[0].id, "me", 10, "max attempts", "x", true));
        tx.commit();
    }
    {
        pqxx::work tx{conn};
        EXPECT_TRUE(rt.claim_due(tx, "me", 10, 10s).empty());  // offset 11 waits behind the DL
        const auto keys = rt.blocked_keys(tx);
        ASSERT_EQ(keys.size(), 1u);
        EXPECT_EQ(keys[0].second, "k");
        ferry::retry::dead_letter_filter f;
        f.group = "g";
        f.key = "k";
        const auto rows = dl.list(tx, f);
        ASSERT_EQ(rows.size(), 1u);
        EXPECT_EQ(rows[0].reason, "max attempts");
        EXPECT_EQ(rows[0].attempts, 10);
        EXPECT_TRUE(rows[0].blocks_key);
        f.topic = "nope";
        EXPECT_EQ(dl.count(tx, f), 0);
        f.topic.clear();
        EXPECT_EQ(dl.replay(tx, f), 1);
        EXPECT_EQ(dl.replay(tx, f), 0);  // replayed once
        tx.commit();
    }
    pqxx::work tx{conn};
    auto rows = rt.claim_due(tx, "me", 10, 10s);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].message.offset, 10);
    EXPECT_EQ(rows[0].attempts, 0);
}

TEST_F(RetryTablesTest, PoisonIsNotReplayableAndPurgeReleasesKey) {
    ferry::retry::retry_table rt(schema.name(), "g");
    ferry::retry::dead_letters dl(schema.name());
    pqxx::work tx{conn};
    auto bad = msg(0, "k", 1);
    bad.message_id.clear();
    dl.add(tx, "g", bad, "malformed envelope: no ferry-message-id", "consumer.malformed", 0, true,
           false);
    dl.add(tx, "g", msg(5, "k", 2), "handler: permanent", "x", 1, true, true);
    EXPECT_TRUE(rt.park_if_blocked(tx, msg(6, "k", 3)));
    ferry::retry::dead_letter_filter f;
    const auto rows = dl.list(tx, f);
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_FALSE(rows[0].replayable);
    EXPECT_TRUE(rows[0].message.message_id.empty());
    f.id = rows[1].id;
    EXPECT_EQ(dl.purge(tx, f), 1);
    EXPECT_TRUE(rt.blocked_keys(tx).size() == 1u);  // the waiting row itself still holds it
    auto due = rt.claim_due(tx, "me", 10, 10s);
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(due[0].message.offset, 3);
}

}  // namespace
