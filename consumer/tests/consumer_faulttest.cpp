// Consumer fault tests (RELIABILITY.md shape: workload with key_seq, witness table without a
// unique constraint, checker, negative controls):
//  - kill -9 between the effect commit and the offset commit, with the inbox: 1 effect each;
//    the same kill without dedup duplicates (negative control);
//  - Redis FLUSHALL mid-run with the inbox on: 0 duplicate effects; Redis-only: duplicates
//    (negative control);
//  - a Redis lease that expires while its handler is paused: Redis-only applies twice (as
//    docs/guarantees.md states), the inbox prevents the second effect.
#include <hiredis/hiredis.h>

#include <atomic>
#include <condition_variable>

#include "consumer_fixture.hpp"
#include "ferry/test/child_process.hpp"
#include "ferry/test/fault_proxy.hpp"

using namespace ferry_consumer_test;
using ferry::consumer::dedup_mode;

namespace {

void redis_flushall() {
    const auto addr = ferry::test::redis_address();
    redisContext* c = redisConnect(addr.host.c_str(), addr.port);
    ASSERT_TRUE(c != nullptr && c->err == 0);
    auto* r = static_cast<redisReply*>(redisCommand(c, "FLUSHALL"));
    ASSERT_TRUE(r != nullptr && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);
}

// A fault proxy in front of the test Redis ("redis" route), started, and the Redis URL that
// goes through it (same db).
struct redis_proxy {
    static std::uint16_t redis_port() {
        const auto url = ferry::test::redis_url();  // redis://HOST:PORT/DB
        const auto colon = url.rfind(':');
        const auto slash = url.find('/', colon);
        return static_cast<std::uint16_t>(std::stoi(url.substr(colon + 1, slash - colon - 1)));
    }
    ferry::test::fault_proxy proxy{{{"redis", "127.0.0.1", redis_port(), 0}}};
    std::string url;
    redis_proxy() {
        proxy.start();
        const auto direct = ferry::test::redis_url();
        url = "redis://127.0.0.1:" + std::to_string(proxy.port("redis")) +
              direct.substr(direct.find('/', direct.rfind(':')));
    }
};

class ConsumerFaultTest : public ConsumerTest {
protected:
    std::unique_ptr<ferry::test::child_process> app(const std::string& mode,
                                                    const std::string& name,
                                                    std::map<std::string, std::string> env = {},
                                                    const std::vector<std::string>& extra = {}) {
        ferry::test::child_options co;
        co.env = std::move(env);
        // A short Redis lease, so a survivor takes over a killed victim's claims quickly.
        std::vector<std::string> args{"--brokers",  kafka()->bootstrap(),
                                      "--dsn",      ferry::test::pg_dsn(),
                                      "--schema",   schema(),
                                      "--group",    _group,
                                      "--topic",    _topic,
                                      "--mode",     mode,
                                      "--redis",    ferry::test::redis_url(),
                                      "--prefix",   _topic,
                                      "--name",     name,
                                      "--lease-ms", "2000"};
        args.insert(args.end(), extra.begin(), extra.end());
        return std::make_unique<ferry::test::child_process>(FERRY_CONSUMER_TEST_APP, args, co);
    }

    std::vector<sent_message> send_workload(int n, int keys) {
        std::vector<sent_message> sent;
        std::map<std::string, int> seq;
        for (int i = 0; i < n; ++i) {
            const auto key = "key" + std::to_string(i % keys);
            sent.push_back({new_message_id(), key, seq[key]++});
            _producer->send(_topic, sent.back());
        }
        _producer->flush();
        return sent;
    }

    // Restart stall: the app (inbox mode, 5 ms per message, the given session timeout) is
    // killed with -9 while it applies; returns the time from starting it again until its first
    // effect. Only the new process's effects count (the witness rows it writes carry its name),
    // so a late commit of the killed one can never pass for the restart's.
    std::chrono::milliseconds restart_stall(std::chrono::milliseconds session) {
        (void)send_workload(3000, 50);
        const std::vector<std::string> extra{"--delay-ms", "5", "--session-ms",
                                             std::to_string(session.count())};
        auto victim = app("inbox", "victim", {}, extra);
        EXPECT_TRUE(victim->wait_for_prefix("READY", 30s).has_value());
        EXPECT_TRUE(wait_until([&] { return effects() >= 100; }, 60s)) << effects();
        victim->kill();
        (void)victim->wait(10s);
        const auto t0 = std::chrono::steady_clock::now();
        auto again = app("inbox", "again", {}, extra);
        const bool resumed = wait_until([&] { return effects_by("again") > 0; }, 90s);
        const auto stall = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - t0);
        EXPECT_TRUE(resumed) << "the restarted consumer applied nothing in 90 s";
        (void)again->shutdown(20s);
        return stall;
    }

    // A 3 s session timeout for the kill tests: the survivor's join waits for the killed
    // member's session (about two of them with the embedded Kafka, see below), so this cuts
    // about 5 s per test; 3 s is the shortest the mock group settles with on a loaded machine.
    const std::vector<std::string> short_session{"--session-ms", "3000"};

    // Kills the app at the fault point, restarts it, and returns the checked history.
    check_result kill_between_effect_and_offset(
        const std::string& mode, const std::string& fault = "after_effect_before_offset") {
        const auto sent = send_workload(60, 10);
        {
            auto victim = app(mode, "victim", {{"FERRY_FAULT", fault}}, short_session);
            const auto st = victim->wait(60s);
            EXPECT_TRUE(st.has_value()) << "the fault point never fired";
            if (st) {
                EXPECT_EQ(st->signal, SIGKILL) << st->describe();
            }
        }
        EXPECT_GE(effects(), 1);  // the effect committed before the kill
        auto survivor = app(mode, "survivor", {}, short_session);
        EXPECT_TRUE(survivor->wait_for_prefix("READY", 30s).has_value());
        EXPECT_TRUE(wait_until([&] { return distinct_effects() >= 60; }, 60s))
            << distinct_effects();
        std::this_thread::sleep_for(1s);  // let trailing duplicates show
        const auto st = survivor->shutdown(20s);
        EXPECT_TRUE(st.success()) << st.describe();
        const auto stats = survivor->wait_for_prefix("STATS", 5s);
        if (stats) std::fprintf(stderr, "survivor %s\n", stats->c_str());
        return check_history(*_conn, schema(), sent);
    }
};

// Restart stall (issue 12, item 6). A consumer killed with -9 and started again is a new group
// member; the killed one stays in the group until its session times out. The embedded Kafka
// (librdkafka's mock cluster) makes the new member's join wait session timeout - 1 s for every
// member to rejoin. If the killed member's session has ended by then, the group settles after
// that one wait; if it ends just after, the wait starts again. So the stall is one or two
// session timeouts, or less when the killed member's session ended before the new one joined:
// a quiet machine showed two (10.7 s with a 6 s session), one running fault suites side by side
// showed one (5.6-5.7 s), where the new process starts later after the kill (a CI run once
// showed 185 ms with a 3 s session, counted by an earlier version of this test that took any
// effect for the new process's). What holds either way, and what a user plans with, is the
// upper bound: two session timeouts, plus 3 s for starting a process on a loaded machine.
// The mock does not implement static membership (it matches members by member id only), so
// group.instance.id does not shorten it here; the session timeout is the lever it honours.
static void expect_restart_stall_bounded_by(std::chrono::milliseconds stall,
                                            std::chrono::milliseconds session) {
    std::fprintf(stderr, "[restart stall] session %lld ms: %lld ms\n",
                 static_cast<long long>(session.count()), static_cast<long long>(stall.count()));
    EXPECT_LE(stall, 2 * session + 3000ms) << "longer than two session timeouts";
}

TEST_F(ConsumerFaultTest, RestartAfterKillStallsAtMostTwoSessionTimeouts) {
    expect_restart_stall_bounded_by(restart_stall(6000ms), 6000ms);
}

// With half the session timeout the bound halves: 9 s, less than the 10.7 s a 6 s session
// takes on a quiet machine.
TEST_F(ConsumerFaultTest, RestartStallShrinksWithTheSessionTimeout) {
    expect_restart_stall_bounded_by(restart_stall(3000ms), 3000ms);
}

TEST_F(ConsumerFaultTest, KillBetweenEffectAndOffsetCommitWithInboxGivesOneEffect) {
    const auto r = kill_between_effect_and_offset("inbox");
    EXPECT_EQ(r.duplicates, 0) << r.describe();
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.order_violations, 0) << r.describe();
    EXPECT_EQ(r.effects, r.sent) << r.describe();
}

TEST_F(ConsumerFaultTest, KillBetweenEffectAndOffsetCommitWithoutDedupDuplicatesNegativeControl) {
    const auto r = kill_between_effect_and_offset("none");
    EXPECT_GE(r.duplicates, 1) << "the checker must see the re-applied effect: " << r.describe();
    EXPECT_EQ(r.lost, 0) << r.describe();
}

// Batched effects (issue 12): the inbox mode applies a lane's run in one transaction.
// kill -9 after a batch commits and before any offset of it is committed: the survivor gets the
// whole batch again and the inbox absorbs it.
TEST_F(ConsumerFaultTest, BatchKillAfterCommitBeforeOffsetGivesOneEffectEach) {
    const auto r = kill_between_effect_and_offset("inbox", "after_batch_commit_before_offset");
    EXPECT_EQ(r.duplicates, 0) << r.describe();
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.order_violations, 0) << r.describe();
    EXPECT_EQ(r.effects, r.sent) << r.describe();
}

// kill -9 in the middle of a batch, handlers run, nothing committed: none of its effects is
// durable, the survivor applies each message once.
TEST_F(ConsumerFaultTest, BatchKillMidBatchBeforeCommitGivesOneEffectEach) {
    const auto sent = send_workload(60, 10);
    {
        auto victim =
            app("inbox", "victim", {{"FERRY_FAULT", "mid_batch_before_commit"}}, short_session);
        const auto st = victim->wait(60s);
        ASSERT_TRUE(st.has_value()) << "the fault point never fired";
        EXPECT_EQ(st->signal, SIGKILL) << st->describe();
    }
    const auto before = effects();  // other lanes may have committed their batches
    EXPECT_LT(before, 60);
    auto survivor = app("inbox", "survivor", {}, short_session);
    EXPECT_TRUE(survivor->wait_for_prefix("READY", 30s).has_value());
    EXPECT_TRUE(wait_until([&] { return distinct_effects() >= 60; }, 60s)) << distinct_effects();
    std::this_thread::sleep_for(1s);
    const auto st = survivor->shutdown(20s);
    EXPECT_TRUE(st.success()) << st.describe();
    const auto r = check_history(*_conn, schema(), sent);
    std::fprintf(stderr, "mid-batch kill: committed before kill=%ld; %s\n", before,
                 r.describe().c_str());
    EXPECT_EQ(r.duplicates, 0) << r.describe();
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.order_violations, 0) << r.describe();
    EXPECT_EQ(r.effects, r.sent) << r.describe();
}

// Issue 10 hole 7, crash window 1: Redis-only defers "done" marks (one pipelined call per lane
// run). kill -9 after effects and before their marks: once the victim's leases expire, the
// survivor applies those effects again. docs/guarantees.md states the bound; this test reports
// the count. With the inbox the same kill gives one effect per message.
TEST_F(ConsumerFaultTest, RedisOnlyKillBetweenEffectAndDoneMarkReappliesThoseEffects) {
    const auto r = kill_between_effect_and_offset("redis", "redis_after_effect_before_done");
    std::fprintf(stderr, "redis-only kill before done marks: %s\n", r.describe().c_str());
    EXPECT_GE(r.duplicates, 1) << "the re-applied effects must show: " << r.describe();
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.order_violations, 0) << r.describe();
}

TEST_F(ConsumerFaultTest, RedisAndInboxKillBetweenEffectAndDoneMarkGivesOneEffect) {
    const auto r = kill_between_effect_and_offset("both", "redis_after_effect_before_done");
    EXPECT_EQ(r.duplicates, 0) << r.describe();
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.effects, r.sent) << r.describe();
}

// Issue 10 hole 7, crash window 2: the COMMIT of the effect's transaction goes through but its
// acknowledgement is lost. The runtime sees in_doubt and tries again: Redis-only applies the
// message(s) again, the inbox absorbs them.
//  - EveryMessage: one transaction per message (tx_batch_max 1), fault point lost_commit_ack
//    on the first attempt of every message;
//  - EveryBatch: batched transactions (the default), fault point lost_batch_commit_ack on every
//    batch commit; the batch's messages then run one transaction each.
class LostCommitAck : public ConsumerFaultTest, public ::testing::WithParamInterface<dedup_mode> {
protected:
    void run(const char* fault, std::size_t batch_max);
};

TEST_P(LostCommitAck, EveryMessage) { run("lost_commit_ack", 1); }
TEST_P(LostCommitAck, EveryBatch) { run("lost_batch_commit_ack", 100); }

void LostCommitAck::run(const char* fault, std::size_t batch_max) {
    const auto mode = GetParam();
    struct fault_env {
        explicit fault_env(const char* f) { ::setenv("FERRY_FAULT", f, 1); }
        ~fault_env() { ::unsetenv("FERRY_FAULT"); }
    } armed(fault);
    std::vector<sent_message> sent;
    for (int i = 0; i < 20; ++i) sent.push_back({new_message_id(), "k" + std::to_string(i % 4), i});
    for (const auto& m : sent) _producer->send(_topic, m);
    _producer->flush();
    auto o = options(mode);
    o.tx_batch_max = batch_max;
    ferry::consumer::consumer c(o);
    const auto s = schema();
    c.subscribe(_topic,
                ferry::consumer::tx_handler([s](const ferry::consumer::message& m, pqxx::work& tx) {
                    write_witness(tx, s, m, "a");
                }));
    c.start();
    ASSERT_TRUE(wait_until(
        [&] { return c.metrics().processed + c.metrics().duplicates_absorbed >= 20; }, 60s))
        << c.render_prometheus();
    std::this_thread::sleep_for(300ms);
    c.stop();
    const auto r = check_history(*_conn, schema(), sent);
    std::fprintf(stderr, "%s, %s: batches=%llu %s\n", fault,
                 ferry::consumer::to_string(mode).data(),
                 static_cast<unsigned long long>(c.metrics().batches), r.describe().c_str());
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.order_violations, 0) << r.describe();
    if (mode == dedup_mode::redis && batch_max == 1) {
        // Every message's own transaction was in doubt once.
        EXPECT_EQ(r.duplicates, 20) << "Redis-only re-applies every in-doubt commit";
    } else if (mode == dedup_mode::redis) {
        // Every message that was in a batch (a lane run of two or more) applies twice.
        EXPECT_GE(r.duplicates, 2) << r.describe();
        EXPECT_GE(c.metrics().batch_fallbacks, 1u);
    } else {
        EXPECT_EQ(r.duplicates, 0) << r.describe();
        if (batch_max == 1) {
            EXPECT_EQ(c.metrics().duplicates_absorbed, 20u);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Modes, LostCommitAck,
                         ::testing::Values(dedup_mode::redis, dedup_mode::redis_and_inbox),
                         [](const ::testing::TestParamInfo<dedup_mode>& p) {
                             return std::string(ferry::consumer::to_string(p.param));
                         });

class RedisFlush : public ConsumerFaultTest, public ::testing::WithParamInterface<dedup_mode> {};

TEST_P(RedisFlush, FlushallMidRun) {
    const auto mode = GetParam();
    auto o = options(mode);
    ferry::consumer::consumer c(o);
    subscribe_witness(c, mode, "a");
    c.start();
    // Wave 1: 50 messages, each delivered twice.
    std::vector<sent_message> sent;
    for (int i = 0; i < 50; ++i) sent.push_back({new_message_id(), "k" + std::to_string(i % 5), i});
    for (int round = 0; round < 2; ++round) {
        for (const auto& m : sent) _producer->send(_topic, m);
    }
    _producer->flush();
    ASSERT_TRUE(wait_until(
        [&] { return c.metrics().processed + c.metrics().duplicates_absorbed >= 100; }, 60s));
    redis_flushall();  // Redis forgets every "done"
    // Wave 2: the relay re-drives all of wave 1 (duplicates) plus 50 new messages, and Redis is
    // flushed once more while they are consumed.
    for (int i = 50; i < 100; ++i)
        sent.push_back({new_message_id(), "k" + std::to_string(i % 5), i});
    for (const auto& m : sent) _producer->send(_topic, m);
    _producer->flush();
    std::this_thread::sleep_for(100ms);
    redis_flushall();
    ASSERT_TRUE(wait_until(
        [&] { return c.metrics().processed + c.metrics().duplicates_absorbed >= 200; }, 60s))
        << c.render_prometheus();
    std::this_thread::sleep_for(500ms);
    c.stop();
    const auto r = check_history(*_conn, schema(), sent);
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.order_violations, 0) << r.describe();
    if (mode == dedup_mode::redis) {
        // Negative control: Redis alone lost its memory, the re-driven wave-1 copies apply again.
        EXPECT_GE(r.duplicates, 25) << r.describe();
    } else {
        EXPECT_EQ(r.duplicates, 0) << r.describe();
        EXPECT_EQ(r.effects, 100) << r.describe();
    }
}

INSTANTIATE_TEST_SUITE_P(Modes, RedisFlush,
                         ::testing::Values(dedup_mode::redis_and_inbox, dedup_mode::redis),
                         [](const ::testing::TestParamInfo<dedup_mode>& p) {
                             return std::string(ferry::consumer::to_string(p.param));
                         });

// Redis goes away mid-run (our TCP proxy resets every connection and refuses new ones), while
// 40 more messages arrive. Redis-only never applies a message without a claim: its effects stop
// until Redis is back, then every message applies once. With the inbox the runtime carries on
// on the inbox alone during the outage. No message is lost or applied twice either way.
class RedisOutage : public ConsumerFaultTest, public ::testing::WithParamInterface<dedup_mode> {};

TEST_P(RedisOutage, MidRunStallsRedisOnlyAndNeverAppliesWithoutAClaim) {
    const auto mode = GetParam();
    redis_proxy rp;
    auto& proxy = rp.proxy;
    auto o = options(mode);
    o.redis_url = rp.url;
    ferry::consumer::consumer c(o);
    subscribe_witness(c, mode, "a");
    c.start();
    std::vector<sent_message> sent;
    for (int i = 0; i < 20; ++i) sent.push_back({new_message_id(), "k" + std::to_string(i % 4), i});
    for (const auto& m : sent) _producer->send(_topic, m);
    _producer->flush();
    ASSERT_TRUE(wait_until([&] { return distinct_effects() >= 20; }, 60s)) << c.render_prometheus();
    ASSERT_EQ(proxy.command("reset redis").rfind("ok", 0), 0u);
    ASSERT_EQ(proxy.command("refuse redis").rfind("ok", 0), 0u);
    for (int i = 20; i < 60; ++i)
        sent.push_back({new_message_id(), "k" + std::to_string(i % 4), i});
    for (std::size_t i = 20; i < sent.size(); ++i) _producer->send(_topic, sent[i]);
    _producer->flush();
    std::this_thread::sleep_for(3s);
    const auto during = distinct_effects();
    const auto errors_during = c.metrics().redis_errors;
    if (mode == dedup_mode::redis) {
        EXPECT_EQ(during, 20) << "Redis-only applied a message without a claim";
    } else {
        EXPECT_TRUE(wait_until([&] { return distinct_effects() >= 60; }, 30s))
            << "with the inbox the runtime carries on while Redis is away: " << during;
    }
    EXPECT_GT(errors_during, 0u);
    ASSERT_EQ(proxy.command("heal redis").rfind("ok", 0), 0u);
    ASSERT_TRUE(wait_until([&] { return distinct_effects() >= 60; }, 60s)) << c.render_prometheus();
    std::this_thread::sleep_for(300ms);
    c.stop();
    proxy.stop();
    const auto r = check_history(*_conn, schema(), sent);
    std::fprintf(stderr, "redis outage, %s: effects during the outage %ld of 60; %s\n",
                 ferry::consumer::to_string(mode).data(), during, r.describe().c_str());
    EXPECT_EQ(r.effects, 60) << r.describe();
    EXPECT_EQ(r.duplicates, 0) << r.describe();
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.order_violations, 0) << r.describe();
}

INSTANTIATE_TEST_SUITE_P(Modes, RedisOutage,
                         ::testing::Values(dedup_mode::redis, dedup_mode::redis_and_inbox),
                         [](const ::testing::TestParamInfo<dedup_mode>& p) {
                             return std::string(ferry::consumer::to_string(p.param));
                         });

// Redis-only: an offset never commits past a "done" mark Redis has not acknowledged. X's
// handler returns while Redis is away (our proxy resets and refuses connections), so X's mark
// cannot be written: X stays uncommitted (lag 1) for as long as Redis is away, instead of its
// offset moving on with the mark lost (which would let a later duplicate of X apply again).
// Once Redis is back the mark is written, then the offset moves.
TEST_F(ConsumerFaultTest, RedisOnlyOffsetWaitsForAnAcknowledgedDoneMark) {
    redis_proxy rp;
    auto& proxy = rp.proxy;
    auto o = options(dedup_mode::redis);
    o.redis_url = rp.url;
    o.shutdown_timeout = 1000ms;
    std::mutex m;
    std::condition_variable cv;
    bool entered = false, released = false;
    ferry::consumer::consumer c(o);
    subscribe_witness(c, dedup_mode::redis, "a", [&](const ferry::consumer::message&) {
        std::unique_lock lock(m);
        entered = true;
        cv.notify_all();
        cv.wait_for(lock, 30s, [&] { return released; });
    });
    c.start();
    const std::vector<sent_message> sent{{new_message_id(), "x", 0}};
    _producer->send(_topic, sent[0]);
    _producer->flush();
    {
        std::unique_lock lock(m);
        ASSERT_TRUE(cv.wait_for(lock, 30s, [&] { return entered; })) << "X never arrived";
    }
    // While X's handler runs, the lag (refreshed every second) counts X.
    ASSERT_TRUE(wait_until([&] { return c.metrics().lag == 1; }, 10s)) << c.metrics().lag;
    ASSERT_EQ(proxy.command("reset redis").rfind("ok", 0), 0u);
    ASSERT_EQ(proxy.command("refuse redis").rfind("ok", 0), 0u);
    {
        std::lock_guard lock(m);
        released = true;
        cv.notify_all();
    }
    ASSERT_TRUE(wait_until([&] { return c.metrics().processed >= 1; }, 30s));
    ASSERT_TRUE(wait_until([&] { return c.metrics().redis_errors >= 1; }, 30s))
        << "the mark write never failed";
    // Over the next 2.5 s (two lag refreshes and more) X must stay uncommitted.
    const auto until = std::chrono::steady_clock::now() + 2500ms;
    while (std::chrono::steady_clock::now() < until) {
        ASSERT_EQ(c.metrics().lag, 1) << "X's offset moved on while its done mark was not written";
        std::this_thread::sleep_for(100ms);
    }
    ASSERT_EQ(proxy.command("heal redis").rfind("ok", 0), 0u);
    EXPECT_TRUE(wait_until([&] { return c.metrics().lag == 0; }, 30s))
        << "the offset did not move once Redis was back";
    // The mark is in Redis (`<prefix>:<group>:<message_id>` = "done", or the key names a run
    // whose key is "done"): a duplicate of X is now absorbed.
    EXPECT_TRUE(redis_done(o.redis_key_prefix, o.group, sent[0].id));
    c.stop();
    proxy.stop();
    const auto r = check_history(*_conn, schema(), sent);
    EXPECT_EQ(r.effects, 1) << r.describe();
}

class LeaseExpiry : public ConsumerFaultTest, public ::testing::WithParamInterface<dedup_mode> {};

// Consumer A takes message X and its handler stalls (GC pause, slow dependency) past the Redis
// lease; A is stopped, the group moves X to consumer B, whose claim finds the lease expired.
TEST_P(LeaseExpiry, HandlerPausedPastItsLease) {
    const auto mode = GetParam();
    auto o = options(mode);
    o.lease = 500ms;
    o.shutdown_timeout = 500ms;
    o.revoke_timeout = 500ms;
    o.inbox_lock_wait = 300ms;
    const std::vector<sent_message> sent{{new_message_id(), "x", 0}};
    std::mutex m;
    std::condition_variable cv;
    bool entered = false, released = false;
    auto a = std::make_unique<ferry::consumer::consumer>(o);
    subscribe_witness(*a, mode, "a", [&](const ferry::consumer::message&) {
        std::unique_lock lock(m);
        entered = true;
        cv.notify_all();
        cv.wait_for(lock, 30s, [&] { return released; });
    });
    a->start();
    _producer->send(_topic, sent[0]);
    _producer->flush();
    {
        std::unique_lock lock(m);
        ASSERT_TRUE(cv.wait_for(lock, 30s, [&] { return entered; }));
    }
    std::this_thread::sleep_for(700ms);       // the lease expires while the handler is paused
    std::thread stopper([&] { a->stop(); });  // A leaves the group; its handler is still paused
    ferry::consumer::consumer b(o);
    subscribe_witness(b, mode, "b");
    b.start();
    if (mode == dedup_mode::redis) {
        EXPECT_TRUE(wait_until([&] { return effects() >= 1; }, 30s)) << "B never applied X";
    } else {
        std::this_thread::sleep_for(3s);  // B waits on A's open inbox transaction
        EXPECT_EQ(effects(), 0);
    }
    {
        std::lock_guard lock(m);
        released = true;
        cv.notify_all();
    }
    stopper.join();
    EXPECT_TRUE(wait_until(
        [&] { return b.metrics().processed + b.metrics().duplicates_absorbed >= 1; }, 30s));
    std::this_thread::sleep_for(500ms);
    b.stop();
    const auto r = check_history(*_conn, schema(), sent);
    EXPECT_EQ(r.lost, 0) << r.describe();
    if (mode == dedup_mode::redis) {
        // Documented (docs/guarantees.md): Redis-only is not exactly-once for effects outside
        // Redis when a lease expires mid-effect. Both A and B applied X.
        EXPECT_EQ(r.effects, 2) << r.describe();
        EXPECT_EQ(r.duplicates, 1) << r.describe();
    } else {
        // The inbox row, inserted before the effect in A's transaction, made B wait and then
        // see the conflict: one effect.
        EXPECT_EQ(r.effects, 1) << r.describe();
        EXPECT_EQ(r.duplicates, 0) << r.describe();
    }
}

INSTANTIATE_TEST_SUITE_P(Modes, LeaseExpiry,
                         ::testing::Values(dedup_mode::redis, dedup_mode::redis_and_inbox),
                         [](const ::testing::TestParamInfo<dedup_mode>& p) {
                             return std::string(ferry::consumer::to_string(p.param));
                         });

}  // namespace
