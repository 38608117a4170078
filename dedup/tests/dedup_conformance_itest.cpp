// One conformance suite that every dedup store passes (Redis lease store, PostgreSQL inbox):
// the claim / complete / release contract of ferry/dedup/store.hpp, against real servers.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <pqxx/pqxx>
#include <thread>
#include <vector>

#include "ferry/dedup/inbox.hpp"
#include "ferry/dedup/redis_store.hpp"
#include "ferry/outbox/migrate.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/scoped_schema.hpp"
#include "ferry/test/unique_name.hpp"

using namespace std::chrono_literals;
using ferry::dedup::claim_status;
using ferry::dedup::complete_status;

namespace {

std::string uuid(int n) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "0190a000-0000-7000-8000-%012d", n);
    return buf;
}

struct store_factory {
    virtual ~store_factory() = default;
    virtual std::unique_ptr<ferry::dedup::store> make() = 0;
};

struct redis_factory : store_factory {
    std::string prefix = ferry::test::unique_name("dedup");
    std::unique_ptr<ferry::dedup::store> make() override {
        ferry::dedup::redis_options o;
        o.url = ferry::test::redis_url();
        o.key_prefix = prefix;
        o.done_window = 60s;
        return std::make_unique<ferry::dedup::redis_store>(o);
    }
};

struct inbox_factory : store_factory {
    ferry::test::scoped_schema schema{"dedup"};
    inbox_factory() {
        pqxx::connection c{ferry::test::pg_dsn()};
        (void)ferry::outbox::migrate(c, schema.name());
    }
    std::unique_ptr<ferry::dedup::store> make() override {
        ferry::dedup::inbox_store_options o;
        o.dsn = ferry::test::pg_dsn();
        o.schema = schema.name();
        o.lock_wait = 100ms;
        return std::make_unique<ferry::dedup::inbox_store>(o);
    }
};

class DedupConformance : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        if (GetParam() == "redis") {
            _factory = std::make_unique<redis_factory>();
        } else {
            _factory = std::make_unique<inbox_factory>();
        }
        _store = _factory->make();
        _group = ferry::test::unique_name("g");
    }
    std::unique_ptr<store_factory> _factory;
    std::unique_ptr<ferry::dedup::store> _store;
    std::string _group;
};

TEST_P(DedupConformance, FirstClaimIsFresh) {
    const auto c = _store->try_claim(_group, uuid(1), 5s);
    EXPECT_EQ(c.status, claim_status::fresh);
    EXPECT_FALSE(c.token.empty());
    EXPECT_TRUE(_store->release(c));
}

TEST_P(DedupConformance, HeldClaimIsInProgressForAnotherOwner) {
    const auto a = _store->try_claim(_group, uuid(2), 5s);
    ASSERT_EQ(a.status, claim_status::fresh);
    auto other = _factory->make();
    const auto b = other->try_claim(_group, uuid(2), 5s);
    EXPECT_EQ(b.status, claim_status::in_progress);
    EXPECT_TRUE(b.token.empty());
    EXPECT_TRUE(_store->release(a));
}

TEST_P(DedupConformance, CompletedIsDone) {
    const auto a = _store->try_claim(_group, uuid(3), 5s);
    ASSERT_EQ(a.status, claim_status::fresh);
    EXPECT_EQ(_store->complete(a), complete_status::completed);
    EXPECT_EQ(_store->try_claim(_group, uuid(3), 5s).status, claim_status::done);
    auto other = _factory->make();
    EXPECT_EQ(other->try_claim(_group, uuid(3), 5s).status, claim_status::done);
}

TEST_P(DedupConformance, ReleasedCanBeClaimedAgain) {
    const auto a = _store->try_claim(_group, uuid(4), 5s);
    ASSERT_EQ(a.status, claim_status::fresh);
    EXPECT_TRUE(_store->release(a));
    const auto b = _store->try_claim(_group, uuid(4), 5s);
    EXPECT_EQ(b.status, claim_status::fresh);
    EXPECT_NE(a.token, b.token);
    EXPECT_EQ(_store->complete(b), complete_status::completed);
}

TEST_P(DedupConformance, StaleTokenCannotCompleteOrRelease) {
    const auto a = _store->try_claim(_group, uuid(5), 5s);
    ASSERT_EQ(a.status, claim_status::fresh);
    auto forged = a;
    forged.token = "not-the-owner";
    EXPECT_EQ(_store->complete(forged), complete_status::lease_lost);
    EXPECT_FALSE(_store->release(forged));
    // The real owner still holds it.
    auto other = _factory->make();
    EXPECT_EQ(other->try_claim(_group, uuid(5), 5s).status, claim_status::in_progress);
    EXPECT_TRUE(_store->release(a));
    EXPECT_FALSE(_store->release(a));  // released twice: the second is a no-op
}

TEST_P(DedupConformance, GroupsAreIsolated) {
    const auto a = _store->try_claim(_group, uuid(6), 5s);
    ASSERT_EQ(a.status, claim_status::fresh);
    ASSERT_EQ(_store->complete(a), complete_status::completed);
    const auto b = _store->try_claim(_group + "_other", uuid(6), 5s);
    EXPECT_EQ(b.status, claim_status::fresh);
    EXPECT_TRUE(_store->release(b));
}

TEST_P(DedupConformance, ConcurrentClaimStormHasOneWinner) {
    constexpr int threads = 5;
    std::vector<std::unique_ptr<ferry::dedup::store>> stores;
    for (int i = 0; i < threads; ++i) stores.push_back(_factory->make());
    std::atomic<int> fresh{0}, other{0};
    std::vector<ferry::dedup::claim> won(threads);
    std::vector<std::thread> ts;
    for (int i = 0; i < threads; ++i) {
        ts.emplace_back([&, i] {
            auto c = stores[i]->try_claim(_group, uuid(7), 5s);
            if (c.status == claim_status::fresh) {
                ++fresh;
                won[i] = c;
            } else {
                ++other;
            }
        });
    }
    for (auto& t : ts) t.join();
    EXPECT_EQ(fresh.load(), 1);
    EXPECT_EQ(other.load(), threads - 1);
    for (int i = 0; i < threads; ++i) {
        if (!won[i].token.empty()) {
            EXPECT_EQ(stores[i]->complete(won[i]), complete_status::completed);
        }
    }
    EXPECT_EQ(_store->try_claim(_group, uuid(7), 5s).status, claim_status::done);
}

TEST_P(DedupConformance, BatchClaimMatchesSingleClaims) {
    auto done = _store->try_claim(_group, uuid(10), 5s);
    ASSERT_EQ(_store->complete(done), complete_status::completed);
    auto other = _factory->make();
    auto held = other->try_claim(_group, uuid(11), 5s);
    ASSERT_EQ(held.status, claim_status::fresh);
    const auto batch = _store->try_claim_batch(_group, {uuid(10), uuid(11), uuid(12)}, 5s);
    ASSERT_EQ(batch.size(), 3u);
    EXPECT_EQ(batch[0].status, claim_status::done);
    EXPECT_EQ(batch[1].status, claim_status::in_progress);
    EXPECT_EQ(batch[2].status, claim_status::fresh);
    EXPECT_EQ(batch[2].message_id, uuid(12));
    EXPECT_TRUE(other->release(held));
    EXPECT_TRUE(_store->release(batch[2]));
}

TEST_P(DedupConformance, LeaseExpiryFreesOnlyExpiringStores) {
    const auto a = _store->try_claim(_group, uuid(20), 300ms);
    ASSERT_EQ(a.status, claim_status::fresh);
    std::this_thread::sleep_for(600ms);
    auto other = _factory->make();
    const auto b = other->try_claim(_group, uuid(20), 5s);
    if (_store->lease_expires()) {
        // Redis: the lease ran out, a second owner gets it: the reason Redis alone is not
        // exactly-once for effects outside Redis (docs/guarantees.md).
        EXPECT_EQ(b.status, claim_status::fresh);
        EXPECT_EQ(_store->complete(a), complete_status::lease_lost);
        EXPECT_EQ(other->complete(b), complete_status::completed);
    } else {
        // Inbox: the claim is a row lock of an open transaction; it lasts as long as its owner.
        EXPECT_EQ(b.status, claim_status::in_progress);
        EXPECT_EQ(_store->complete(a), complete_status::completed);
        EXPECT_EQ(other->try_claim(_group, uuid(20), 5s).status, claim_status::done);
    }
}

INSTANTIATE_TEST_SUITE_P(Stores, DedupConformance, ::testing::Values("redis", "inbox"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// Store-specific checks outside the shared contract.

TEST(RedisStoreTest, KeysUsePrefixGroupAndId) {
    ferry::dedup::redis_options o;
    o.url = ferry::test::redis_url();
    o.key_prefix = "pfx";
    ferry::dedup::redis_store s(o);
    EXPECT_EQ(s.key_of("grp", "id1"), "pfx:grp:id1");
}

TEST(RedisStoreTest, UnreachableRedisIsRetryable) {
    ferry::dedup::redis_options o;
    o.url = "redis://127.0.0.1:1/0";
    o.connect_timeout = 200ms;
    ferry::dedup::redis_store s(o);
    try {
        (void)s.try_claim("g", uuid(1), 1s);
        FAIL() << "expected ferry::error";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.kind(), ferry::error_kind::retryable);
        EXPECT_EQ(e.code(), "dedup.redis_unavailable");
    }
}

TEST(RedisStoreTest, DoneWindowExpires) {
    ferry::dedup::redis_options o;
    o.url = ferry::test::redis_url();
    o.key_prefix = ferry::test::unique_name("win");
    o.done_window = 300ms;
    ferry::dedup::redis_store s(o);
    auto c = s.try_claim("g", uuid(1), 5s);
    ASSERT_EQ(s.complete(c), complete_status::completed);
    EXPECT_EQ(s.try_claim("g", uuid(1), 5s).status, claim_status::done);
    std::this_thread::sleep_for(600ms);
    EXPECT_EQ(s.try_claim("g", uuid(1), 5s).status, claim_status::fresh);
}

// A lane marks the run it applied "done" and claims its next run in one round trip: the marks
// go first, so a duplicate of a just-applied message in the next run is seen as done; a claim
// held by another owner stays in progress and a new id is fresh.
TEST(RedisStoreTest, CompleteAndClaimMarksFirstThenClaimsInOneCall) {
    ferry::dedup::redis_options o;
    o.url = ferry::test::redis_url();
    o.key_prefix = ferry::test::unique_name("cac");
    ferry::dedup::redis_store s(o);
    const auto applied = s.try_claim_batch("g", {uuid(1), uuid(2)}, 5s);
    const auto other = s.try_claim("g", uuid(3), 5s);
    ASSERT_EQ(other.status, claim_status::fresh);
    const auto r = s.complete_and_claim(applied, "g", {uuid(1), uuid(3), uuid(4), uuid(2)}, 5s);
    ASSERT_EQ(r.completed.size(), 2u);
    EXPECT_EQ(r.completed[0], complete_status::completed);
    EXPECT_EQ(r.completed[1], complete_status::completed);
    ASSERT_EQ(r.claims.size(), 4u);
    EXPECT_EQ(r.claims[0].status, claim_status::done);
    EXPECT_EQ(r.claims[1].status, claim_status::in_progress);
    EXPECT_EQ(r.claims[2].status, claim_status::fresh);
    EXPECT_FALSE(r.claims[2].token.empty());
    EXPECT_EQ(r.claims[3].status, claim_status::done);
    // The fresh claim is a real lease: another owner cannot take it, its owner completes it.
    EXPECT_EQ(s.try_claim("g", uuid(4), 5s).status, claim_status::in_progress);
    EXPECT_EQ(s.complete(r.claims[2]), complete_status::completed);
    // Only marks, no claims: the marks are written.
    const auto later = s.try_claim("g", uuid(5), 5s);
    const auto only = s.complete_and_claim({later}, "g", {}, 5s);
    EXPECT_TRUE(only.claims.empty());
    ASSERT_EQ(only.completed.size(), 1u);
    EXPECT_EQ(only.completed[0], complete_status::completed);
    EXPECT_EQ(s.try_claim("g", uuid(5), 5s).status, claim_status::done);
}

// The "done" marks a lane writes (complete_and_claim, mark_done) are plain SETs, not the
// compare-and-set of complete() (ADR 0023): the lane applied those effects, so "done" is true
// whoever holds the key. A lease that expired and was claimed by another owner is overwritten;
// that owner's release cannot undo it, and every later claim sees "done".
TEST(RedisStoreTest, DoneMarkOfAnAppliedEffectReplacesALeaseAnotherOwnerTookOver) {
    ferry::dedup::redis_options o;
    o.url = ferry::test::redis_url();
    o.key_prefix = ferry::test::unique_name("mark");
    ferry::dedup::redis_store s(o);
    const auto first = s.try_claim("g", uuid(1), 100ms);
    ASSERT_EQ(first.status, claim_status::fresh);
    ferry::dedup::claim second;
    for (int i = 0; i < 200; ++i) {  // poll until the first lease has expired
        second = s.try_claim("g", uuid(1), 30s);
        if (second.status == claim_status::fresh) break;
        std::this_thread::sleep_for(20ms);
    }
    ASSERT_EQ(second.status, claim_status::fresh) << "the 100 ms lease never expired";
    const auto r = s.complete_and_claim({first}, "g", {uuid(2)}, 5s);
    ASSERT_EQ(r.completed.size(), 1u);
    EXPECT_EQ(r.completed[0], complete_status::completed);
    EXPECT_EQ(s.try_claim("g", uuid(1), 5s).status, claim_status::done);
    EXPECT_FALSE(s.release(second)) << "the other owner's release must not undo the mark";
    EXPECT_EQ(s.try_claim("g", uuid(1), 5s).status, claim_status::done);
    // mark_done alone: the same plain mark, over a lease of another owner.
    const auto third = s.try_claim("g", uuid(3), 30s);
    ferry::dedup::claim stale = third;
    stale.token = "not-the-owner";
    ASSERT_EQ(s.mark_done({stale}).front(), complete_status::completed);
    EXPECT_EQ(s.try_claim("g", uuid(3), 5s).status, claim_status::done);
    // complete() keeps the store contract's compare-and-set: a stale token changes nothing.
    const auto fourth = s.try_claim("g", uuid(4), 30s);
    stale = fourth;
    stale.token = "not-the-owner";
    EXPECT_EQ(s.complete(stale), complete_status::lease_lost);
    EXPECT_EQ(s.try_claim("g", uuid(4), 5s).status, claim_status::in_progress);
}

// What one "done" mark costs in Redis (docs/guarantees.md, "Redis memory: the done window"):
// MEMORY USAGE of 1000 done keys with a realistic prefix and group, UUID message ids. MEMORY
// USAGE counts the key, the value and the main dict entry; the expiry entry comes on top.
TEST(RedisStoreTest, OneDoneMarkCostsAboutOneHundredFortyBytesPlusItsExpiry) {
    ferry::dedup::redis_options o;
    o.url = ferry::test::redis_url();
    o.key_prefix = "ferry-" + ferry::test::unique_name("mem").substr(0, 8);
    ferry::dedup::redis_store s(o);
    std::vector<std::string> ids;
    for (int i = 0; i < 1000; ++i) ids.push_back(uuid(100000 + i));
    const auto claims = s.try_claim_batch("orders-service", ids, 5s);
    for (const auto st : s.complete_batch(claims)) ASSERT_EQ(st, complete_status::completed);
    const auto colon = o.url.rfind(':');
    const int port = std::stoi(o.url.substr(colon + 1, o.url.find('/', colon) - colon - 1));
    redisContext* rc = redisConnect("127.0.0.1", port);
    ASSERT_TRUE(rc != nullptr && rc->err == 0);
    long long total = 0;
    for (const auto& id : ids) {
        auto* r = static_cast<redisReply*>(
            redisCommand(rc, "MEMORY USAGE %s SAMPLES 0", s.key_of("orders-service", id).c_str()));
        ASSERT_TRUE(r != nullptr && r->type == REDIS_REPLY_INTEGER);
        total += r->integer;
        freeReplyObject(r);
    }
    redisFree(rc);
    const double per_key = static_cast<double>(total) / static_cast<double>(ids.size());
    std::fprintf(stderr,
                 "[redis memory] done key %s: %.1f B (MEMORY USAGE, without the expiry entry)\n",
                 s.key_of("orders-service", ids[0]).c_str(), per_key);
    EXPECT_GT(per_key, 100.0);
    EXPECT_LT(per_key, 180.0);
}

TEST(InboxTest, InsertInCallersTransactionRollsBackOnDuplicate) {
    ferry::test::scoped_schema schema{"inbox"};
    pqxx::connection c{ferry::test::pg_dsn()};
    (void)ferry::outbox::migrate(c, schema.name());
    ferry::dedup::inbox box(schema.name());
    {
        pqxx::work tx{c};
        EXPECT_EQ(box.insert(tx, "g", uuid(1)), ferry::dedup::inbox_result::inserted);
        tx.commit();
    }
    {
        pqxx::work tx{c};
        EXPECT_EQ(box.insert(tx, "g", uuid(1)), ferry::dedup::inbox_result::duplicate);
        EXPECT_TRUE(box.contains(tx, "g", uuid(1)));
        EXPECT_FALSE(box.contains(tx, "h", uuid(1)));
    }
    {
        pqxx::work tx{c};
        EXPECT_EQ(box.prune(tx, 0ms), 1);
        tx.commit();
    }
}

}  // namespace
