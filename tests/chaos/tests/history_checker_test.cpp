// The campaign's history checker on synthetic histories: a clean history passes, and each
// anomaly the campaign claims to detect is detected, counted and named by id.
#include <gtest/gtest.h>

#include "history.hpp"

using namespace ferry::chaos;

namespace {

// Three keys, four messages each, all committed, published once in order and applied once by
// both groups in order.
history clean_history() {
    history h;
    h.groups = {"g1", "g2"};
    std::int64_t order = 0;
    std::int64_t offset[3] = {0, 0, 0};
    for (int k = 0; k < 3; ++k) {
        for (int s = 1; s <= 4; ++s) {
            const std::string id = "m" + std::to_string(k) + "-" + std::to_string(s);
            const std::string key = "k" + std::to_string(k);
            h.committed.push_back({id, key, s, "writer"});
            h.acked.insert(id);
            h.kafka.push_back({id, key, k, offset[k]++});
            for (const auto* g : {"g1", "g2"}) h.effects.push_back({g, id, key, s, ++order});
        }
    }
    return h;
}

}  // namespace

TEST(HistoryCheckerTest, CleanHistoryPasses) {
    const auto r = check(clean_history());
    EXPECT_TRUE(r.n.clean()) << r.summary();
    EXPECT_EQ(r.n.committed, 12u);
    EXPECT_EQ(r.n.effects, 24u);
    EXPECT_TRUE(r.examples.empty()) << r.to_json().dump();
    EXPECT_EQ(r.to_json()["clean"], true);
}

TEST(HistoryCheckerTest, DuplicateDeliveriesAndDeadLettersAreNotAnomalies) {
    auto h = clean_history();
    // At-least-once transport: the relay republished m0-1 after m0-4 (crash before the mark).
    h.kafka.push_back({"m0-1", "k0", 0, 4});
    // g2 dead-lettered m1-2 instead of applying it: accounted for, not lost.
    std::erase_if(h.effects, [](const effect& e) { return e.group == "g2" && e.id == "m1-2"; });
    h.dead_letters["g2"].insert("m1-2");
    const auto r = check(h);
    EXPECT_TRUE(r.n.clean()) << r.summary();
    EXPECT_EQ(r.n.duplicate_deliveries, 1u);
    EXPECT_EQ(r.n.dead_lettered, 1u);
}

TEST(HistoryCheckerTest, LostMessageInOneGroupIsCountedOnce) {
    auto h = clean_history();
    std::erase_if(h.effects, [](const effect& e) { return e.id == "m2-3"; });  // both groups
    const auto r = check(h);
    EXPECT_EQ(r.n.lost, 1u);
    ASSERT_FALSE(r.examples.at("lost").empty());
    EXPECT_NE(r.examples.at("lost")[0].find("m2-3"), std::string::npos);
}

TEST(HistoryCheckerTest, NeverPublishedMessageIsLost) {
    auto h = clean_history();
    h.committed.push_back({"late", "k9", 1, "hold"});  // committed late; a cursor skipped it
    const auto r = check(h);
    EXPECT_EQ(r.n.lost, 1u);
    EXPECT_EQ(r.n.unpublished, 1u);
    EXPECT_NE(r.examples.at("lost")[0].find("never reached Kafka"), std::string::npos);
}

TEST(HistoryCheckerTest, AcknowledgedCommitMissingFromTheDatabaseIsLost) {
    auto h = clean_history();
    // synchronous_commit=off and an immediate stop: the producer saw COMMIT succeed, the
    // database came back without it, and the relay had already published it.
    h.acked.insert("gone");
    h.kafka.push_back({"gone", "k0", 0, 4});
    const auto r = check(h);
    EXPECT_EQ(r.n.acked_not_committed, 1u);
    EXPECT_EQ(r.n.lost, 1u);
    EXPECT_EQ(r.n.phantoms, 0u) << "an acknowledged commit is not a phantom";
}

TEST(HistoryCheckerTest, DuplicateEffectIsCountedPerExtraRow) {
    auto h = clean_history();
    h.effects.push_back({"g1", "m0-2", "k0", 2, 100});
    h.effects.push_back({"g1", "m0-2", "k0", 2, 101});
    const auto r = check(h);
    EXPECT_EQ(r.n.duplicate_effects, 2u);
    EXPECT_EQ(r.n.order_violations, 0u) << "only first effects count for order";
    EXPECT_NE(r.examples.at("duplicate_effects")[0].find("applied 3 times"), std::string::npos);
}

TEST(HistoryCheckerTest, EffectOrderViolationPerKey) {
    auto h = clean_history();
    // g1 applied k1's seq 3 before seq 2.
    for (auto& e : h.effects) {
        if (e.group == "g1" && e.id == "m1-2") e.order = 1000;
    }
    const auto r = check(h);
    EXPECT_EQ(r.n.order_violations_effect, 1u);
    EXPECT_EQ(r.n.order_violations_delivery, 0u);
    EXPECT_NE(r.examples.at("order_violations")[0].find("id=m1-2"), std::string::npos);
}

TEST(HistoryCheckerTest, DeliveryOrderViolationUsesFirstCopiesOnly) {
    auto h = clean_history();
    // k2's seq 2 first reached Kafka after seq 3 and 4 (a failed delivery overtaken).
    for (auto& d : h.kafka) {
        if (d.id == "m2-2") d.offset = 10;
    }
    auto r = check(h);
    EXPECT_EQ(r.n.order_violations_delivery, 1u);
    // A later duplicate copy of an early message is not a violation.
    auto h2 = clean_history();
    h2.kafka.push_back({"m2-1", "k2", 2, 20});
    EXPECT_EQ(check(h2).n.order_violations, 0u);
}

TEST(HistoryCheckerTest, MessagesWithoutSeqMakeNoOrderClaim) {
    auto h = clean_history();
    // A half message committed by check-back enters the outbox when decided: no seq claim.
    h.committed.push_back({"half", "k0", -1, "half"});
    h.kafka.insert(h.kafka.begin(), {"half", "k0", 0, -1});
    h.effects.push_back({"g1", "half", "k0", -1, 500});
    h.effects.push_back({"g2", "half", "k0", -1, 501});
    EXPECT_TRUE(check(h).n.clean()) << check(h).summary();
}

TEST(HistoryCheckerTest, PhantomsFromRolledBackTransactions) {
    auto h = clean_history();
    h.rolled_back.insert("rb1");
    h.kafka.push_back({"rb1", "k0", 0, 7});
    h.effects.push_back({"g1", "rb2", "k0", 5, 900});
    h.dead_letters["g2"].insert("rb3");
    const auto r = check(h);
    EXPECT_EQ(r.n.phantoms, 3u);
    bool named = false;
    for (const auto& e : r.examples.at("phantoms")) {
        named = named || e.find("rb1 in kafka (its transaction rolled back)") != std::string::npos;
    }
    EXPECT_TRUE(named) << r.to_json().dump();
}

TEST(HistoryCheckerTest, UnsettledRunIsFlagged) {
    auto h = clean_history();
    h.settled = false;
    h.unsettled_detail = "outbox=3 after 120 s";
    const auto r = check(h);
    EXPECT_EQ(r.n.unsettled, 1u);
    EXPECT_FALSE(r.n.clean());
    EXPECT_EQ(r.examples.at("unsettled")[0], "outbox=3 after 120 s");
}

TEST(HistoryCheckerTest, ExamplesAreCapped) {
    auto h = clean_history();
    h.effects.clear();
    const auto r = check(h, 3);
    EXPECT_EQ(r.n.lost, 12u);
    EXPECT_EQ(r.examples.at("lost").size(), 3u);
    const auto j = r.to_json();
    EXPECT_EQ(j["lost"], 12);
    EXPECT_EQ(j["examples"]["lost"].size(), 3u);
}
