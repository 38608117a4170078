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

// Raw GET / PTTL on the test Redis, to look at the keys a store wrote.
struct raw_redis {
    redisContext* c = nullptr;
    raw_redis() {
        const auto url = ferry::test::redis_url();  // redis://HOST:PORT/DB
        const auto colon = url.rfind(':');
        const int port = std::stoi(url.substr(colon + 1, url.find('/', colon) - colon - 1));
        c = redisConnect("127.0.0.1", port);
        const auto slash = url.find('/', colon);
        if (c != nullptr && slash != std::string::npos && slash + 1 < url.size()) {
            freeReplyObject(redisCommand(c, "SELECT %s", url.substr(slash + 1).c_str()));
        }
    }
    ~raw_redis() {
        if (c != nullptr) redisFree(c);
    }
    raw_redis(const raw_redis&) = delete;
    raw_redis& operator=(const raw_redis&) = delete;
    std::string get(const std::string& key) {
        auto* r = static_cast<redisReply*>(redisCommand(c, "GET %b", key.data(), key.size()));
        std::string v =
            r != nullptr && r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : "(nil)";
        if (r != nullptr) freeReplyObject(r);
        return v;
    }
    // MEMORY USAGE (key, value, dict entry; not the expiry entry); -1000000 when unknown.
    long long memory_usage(const std::string& key) {
        auto* r = static_cast<redisReply*>(
            redisCommand(c, "MEMORY USAGE %b SAMPLES 0", key.data(), key.size()));
        const long long v = r != nullptr && r->type == REDIS_REPLY_INTEGER ? r->integer : -1000000;
        if (r != nullptr) freeReplyObject(r);
        return v;
    }
    long long pttl(const std::string& key) {
        auto* r = static_cast<redisReply*>(redisCommand(c, "PTTL %b", key.data(), key.size()));
        const long long v = r != nullptr && r->type == REDIS_REPLY_INTEGER ? r->integer : -100;
        if (r != nullptr) freeReplyObject(r);
        return v;
    }
};

ferry::dedup::redis_options run_options(const std::string& name) {
    ferry::dedup::redis_options o;
    o.url = ferry::test::redis_url();
    o.key_prefix = ferry::test::unique_name(name);
    o.done_window = 60s;
    return o;
}

// One write marks a whole run (ADR 0024): the claims of one call share a run token, each
// message key names the run, and `SET <prefix>:run:<token> done` makes all of them done. Before
// the mark another owner sees them in progress; the run's "done" key outlives every message key
// that names it.
TEST(RedisRunTest, RunMarkMakesEveryClaimOfTheRunDone) {
    const auto o = run_options("run");
    ferry::dedup::redis_store a(o), b(o);
    const auto claims = a.try_claim_batch("g", {uuid(1), uuid(2), uuid(3)}, 5s);
    ASSERT_EQ(claims.size(), 3u);
    for (const auto& c : claims) {
        ASSERT_EQ(c.status, claim_status::fresh);
        EXPECT_EQ(c.token, claims[0].token) << "one run token per call";
    }
    raw_redis raw;
    EXPECT_EQ(raw.get(a.key_of("g", uuid(2))), claims[0].token);
    EXPECT_EQ(raw.get(o.key_prefix + ":run:" + claims[0].token), "lease");
    EXPECT_EQ(b.try_claim("g", uuid(2), 5s).status, claim_status::in_progress);
    const auto r = a.complete_and_claim({}, {claims[0].token}, "g", {uuid(4)}, 5s);
    ASSERT_EQ(r.claims.size(), 1u);
    EXPECT_EQ(r.claims[0].status, claim_status::fresh);
    EXPECT_NE(r.claims[0].token, claims[0].token) << "every call is a new run";
    for (int i = 1; i <= 3; ++i) {
        EXPECT_EQ(b.try_claim("g", uuid(i), 5s).status, claim_status::done) << i;
    }
    EXPECT_EQ(b.try_claim("g", uuid(4), 5s).status, claim_status::in_progress);
    EXPECT_EQ(raw.get(a.key_of("g", uuid(1))), claims[0].token) << "the message key is unchanged";
    const auto run_ttl = raw.pttl(o.key_prefix + ":run:" + claims[0].token);
    EXPECT_GE(run_ttl, raw.pttl(a.key_of("g", uuid(1))));
    EXPECT_GT(raw.pttl(a.key_of("g", uuid(1))), 60000 - 5000) << "message keys last the window";
}

// A message of a run that was not applied is given back (release, compare-and-set on the run
// token) BEFORE the run is marked: it then reads fresh, the applied ones done. The second half
// is the negative control: a run marked without giving back its unapplied message makes that
// message read "done" - in Redis-only mode a message that is never applied (the lane's run
// books exist to prevent exactly this).
TEST(RedisRunTest, ReleasedClaimOfADoneRunIsFreshNotDone) {
    const auto o = run_options("rel");
    ferry::dedup::redis_store a(o), b(o);
    const auto run = a.try_claim_batch("g", {uuid(1), uuid(2), uuid(3)}, 5s);
    ASSERT_TRUE(a.release(run[1]));
    (void)a.complete_and_claim({}, {run[0].token}, "g", {}, 5s);
    EXPECT_EQ(b.try_claim("g", uuid(1), 5s).status, claim_status::done);
    EXPECT_EQ(b.try_claim("g", uuid(2), 5s).status, claim_status::fresh);
    EXPECT_EQ(b.try_claim("g", uuid(3), 5s).status, claim_status::done);
    // Negative control: the unapplied message of a run marked without its release.
    const auto unreleased = a.try_claim_batch("g", {uuid(4), uuid(5)}, 5s);
    (void)a.complete_and_claim({}, {unreleased[0].token}, "g", {}, 5s);
    EXPECT_EQ(b.try_claim("g", uuid(5), 5s).status, claim_status::done)
        << "a run mark covers every message key that still names the run";
}

// A run whose lease key is gone (its owner died, or overran the lease) is abandoned: the next
// claim of one of its messages takes the key over (compare-and-set in the resolve script) for
// its own run. The old owner's complete and release then change nothing, and its late run mark
// does not touch the message it lost (the key names the new run), only the ones it kept.
TEST(RedisRunTest, AbandonedRunIsTakenOverAndItsLateMarkSkipsTheTakenMessage) {
    const auto o = run_options("take");
    ferry::dedup::redis_store a(o), b(o), c(o);
    const auto old_run = a.try_claim_batch("g", {uuid(1), uuid(2)}, 100ms);
    ASSERT_EQ(old_run[0].status, claim_status::fresh);
    ferry::dedup::claim taken;
    for (int i = 0; i < 200; ++i) {  // poll until the 100 ms run lease has expired
        taken = b.try_claim("g", uuid(1), 30s);
        if (taken.status == claim_status::fresh) break;
        ASSERT_EQ(taken.status, claim_status::in_progress);
        std::this_thread::sleep_for(20ms);
    }
    ASSERT_EQ(taken.status, claim_status::fresh) << "the 100 ms run lease never expired";
    EXPECT_NE(taken.token, old_run[0].token);
    raw_redis raw;
    EXPECT_EQ(raw.get(a.key_of("g", uuid(1))), taken.token);
    EXPECT_EQ(c.try_claim("g", uuid(1), 5s).status, claim_status::in_progress);
    EXPECT_EQ(a.complete(old_run[0]), complete_status::lease_lost);
    EXPECT_FALSE(a.release(old_run[0]));
    (void)a.complete_and_claim({}, {old_run[0].token}, "g", {}, 5s);  // late run mark
    EXPECT_EQ(c.try_claim("g", uuid(1), 5s).status, claim_status::in_progress)
        << "the late mark of the old run must not mark a message another run took over";
    EXPECT_EQ(c.try_claim("g", uuid(2), 5s).status, claim_status::done);
    EXPECT_EQ(b.complete(taken), complete_status::completed);
    EXPECT_EQ(c.try_claim("g", uuid(1), 5s).status, claim_status::done);
}

// The same id twice in one call: the first copy is the run's fresh claim, the second is in
// progress (never a second fresh claim of the same run, even once its lease has run out).
TEST(RedisRunTest, SameIdTwiceInOneRunIsFreshThenInProgress) {
    const auto o = run_options("twice");
    ferry::dedup::redis_store a(o);
    const auto r = a.try_claim_batch("g", {uuid(1), uuid(1)}, 5s);
    EXPECT_EQ(r[0].status, claim_status::fresh);
    EXPECT_EQ(r[1].status, claim_status::in_progress);
    const auto expired = a.try_claim_batch("g", {uuid(2), uuid(3), uuid(2)}, 1ms);
    EXPECT_EQ(expired[0].status, claim_status::fresh);
    EXPECT_EQ(expired[2].status, claim_status::in_progress);
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
    raw_redis raw;
    ASSERT_TRUE(raw.c != nullptr && raw.c->err == 0);
    auto average_usage = [&](const std::vector<std::string>& of) {
        long long total = 0;
        for (const auto& id : of) total += raw.memory_usage(s.key_of("orders-service", id));
        return static_cast<double>(total) / static_cast<double>(of.size());
    };
    const double per_key = average_usage(ids);
    std::fprintf(stderr,
                 "[redis memory] done key %s: %.1f B (MEMORY USAGE, without the expiry entry)\n",
                 s.key_of("orders-service", ids[0]).c_str(), per_key);
    EXPECT_GT(per_key, 100.0);
    EXPECT_LT(per_key, 180.0);
    // A message marked done by its run (ADR 0024) keeps the run token as its value.
    std::vector<std::string> run_ids;
    for (int i = 0; i < 1000; ++i) run_ids.push_back(uuid(200000 + i));
    const auto run = s.try_claim_batch("orders-service", run_ids, 5s);
    (void)s.complete_and_claim({}, {run[0].token}, "orders-service", {}, 5s);
    const double per_run_key = average_usage(run_ids);
    std::fprintf(stderr, "[redis memory] key marked by its run (value %s): %.1f B\n",
                 run[0].token.c_str(), per_run_key);
    EXPECT_EQ(s.try_claim("orders-service", run_ids[999], 5s).status, claim_status::done);
    EXPECT_GT(per_run_key, 100.0);
    EXPECT_LT(per_run_key, 200.0);
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
