// Consumer runtime against real PostgreSQL and Redis and the embedded Kafka: duplicate storms,
// retries, dead letters and replay, malformed envelopes, per-key order through retries and a
// 2 -> 1 -> 3 rebalance, and effects counted against messages sent.
#include <atomic>
#include <set>

#include "consumer_fixture.hpp"
#include "ferry/retry/tables.hpp"
#include "ferry/test/kafka_reader.hpp"

using namespace ferry_consumer_test;
using ferry::consumer::dedup_mode;

namespace {

class DuplicateStorm : public ConsumerTest, public ::testing::WithParamInterface<dedup_mode> {};

TEST_P(DuplicateStorm, FiveDeliveriesGiveOneEffect) {
    const auto mode = GetParam();
    std::vector<sent_message> sent;
    for (int i = 0; i < 20; ++i) sent.push_back({new_message_id(), "k" + std::to_string(i % 7), i});
    // Each message 5 times: the first copies in order, then 4 more rounds of duplicates.
    for (int round = 0; round < 5; ++round) {
        for (const auto& m : sent) _producer->send(_topic, m);
    }
    _producer->flush();
    ferry::consumer::consumer c(options(mode));
    subscribe_witness(c, mode, "a");
    c.start();
    ASSERT_TRUE(wait_until(
        [&] { return c.metrics().processed + c.metrics().duplicates_absorbed >= 100; }, 60s))
        << c.render_prometheus();
    c.stop();
    const auto r = check_history(*_conn, schema(), sent);
    EXPECT_EQ(r.effects, 20) << r.describe();
    EXPECT_EQ(r.duplicates, 0) << r.describe();
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.order_violations, 0) << r.describe();
    EXPECT_EQ(c.metrics().processed, 20u);
    EXPECT_EQ(c.metrics().duplicates_absorbed, 80u);
}

INSTANTIATE_TEST_SUITE_P(Modes, DuplicateStorm,
                         ::testing::Values(dedup_mode::redis, dedup_mode::inbox,
                                           dedup_mode::redis_and_inbox),
                         [](const ::testing::TestParamInfo<dedup_mode>& p) {
                             return std::string(ferry::consumer::to_string(p.param));
                         });

TEST_F(ConsumerTest, NoDedupIsAtLeastOnceNegativeControl) {
    // The checker must see duplicates when nothing absorbs them.
    std::vector<sent_message> sent{{new_message_id(), "k", 0}};
    for (int i = 0; i < 3; ++i) _producer->send(_topic, sent[0]);
    _producer->flush();
    ferry::consumer::consumer c(options(dedup_mode::none));
    subscribe_witness(c, dedup_mode::none, "a");
    c.start();
    ASSERT_TRUE(wait_until([&] { return c.metrics().processed >= 3; }, 30s));
    c.stop();
    EXPECT_EQ(check_history(*_conn, schema(), sent).duplicates, 2);
}

TEST_F(ConsumerTest, FailingTwiceThenSucceedingGivesOneEffectAfterTwoRetries) {
    const std::vector<sent_message> sent{{new_message_id(), "k", 1}};
    _producer->send(_topic, sent[0]);
    _producer->flush();
    std::atomic<int> calls{0};
    std::atomic<int> last_attempt{0};
    auto o = options(dedup_mode::inbox);
    o.retry.immediate_tries = 2;  // attempt 1, 2 in the lane; attempt 3 from the retry table
    ferry::consumer::consumer c(o);
    subscribe_witness(c, dedup_mode::inbox, "a", [&](const ferry::consumer::message& m) {
        last_attempt = m.attempt;
        if (++calls <= 2) throw ferry::error(ferry::error_kind::retryable, "test.flaky", "flaky");
    });
    c.start();
    ASSERT_TRUE(wait_until([&] { return c.metrics().processed >= 1; }, 30s))
        << c.render_prometheus();
    c.stop();
    const auto r = check_history(*_conn, schema(), sent);
    EXPECT_EQ(r.effects, 1) << r.describe();
    EXPECT_EQ(calls.load(), 3);
    EXPECT_EQ(last_attempt.load(), 3);
    EXPECT_EQ(c.metrics().retries, 2u);
    EXPECT_EQ(c.metrics().retry_scheduled, 1u);
    EXPECT_EQ(count_rows(*_conn, "SELECT count(*) FROM \"" + schema() + "\".retry"), 0);
}

TEST_F(ConsumerTest, AlwaysFailingMessageIsDeadLetteredOthersFlowReplayAppliesOnce) {
    std::vector<sent_message> sent;
    const std::string bad_id = new_message_id();
    sent.push_back({bad_id, "bad", 0});
    for (int i = 1; i <= 3; ++i) sent.push_back({new_message_id(), "bad", i});  // wait behind it
    for (int i = 0; i < 40; ++i)
        sent.push_back({new_message_id(), "good" + std::to_string(i % 8), 100 + i});
    for (const auto& m : sent) _producer->send(_topic, m);
    _producer->flush();
    std::atomic<bool> broken{true};
    std::atomic<int> bad_calls{0};
    ferry::consumer::consumer c(options(dedup_mode::redis_and_inbox));
    subscribe_witness(c, dedup_mode::redis_and_inbox, "a", [&](const ferry::consumer::message& m) {
        if (m.message_id == bad_id) {
            ++bad_calls;
            if (broken)
                throw ferry::error(ferry::error_kind::retryable, "test.down", "dependency down");
        }
    });
    c.start();
    // The 40 other-key messages flow while "bad" retries; its 3 followers wait.
    ASSERT_TRUE(wait_until(
        [&] { return c.metrics().processed >= 40 && c.metrics().dead_letters >= 1; }, 60s))
        << c.render_prometheus();
    EXPECT_EQ(bad_calls.load(), 5);  // max_attempts
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(effects(), 40);
    ferry::retry::dead_letters dl(schema());
    ferry::retry::dead_letter_filter f;
    f.group = _group;
    f.key = "bad";
    {
        pqxx::work tx{*_conn};
        const auto rows = dl.list(tx, f);
        ASSERT_EQ(rows.size(), 1u);
        EXPECT_EQ(rows[0].message.message_id, bad_id);
        EXPECT_EQ(rows[0].attempts, 5);
        EXPECT_TRUE(rows[0].replayable);
        EXPECT_NE(rows[0].reason.find("retries exhausted"), std::string::npos) << rows[0].reason;
        EXPECT_NE(rows[0].reason.find("dependency down"), std::string::npos) << rows[0].reason;
    }
    // Fix the dependency, replay: applied once, then the key's followers in order.
    broken = false;
    {
        pqxx::work tx{*_conn};
        EXPECT_EQ(dl.replay(tx, f), 1);
        tx.commit();
    }
    ASSERT_TRUE(wait_until([&] { return effects() >= 44; }, 30s)) << c.render_prometheus();
    std::this_thread::sleep_for(300ms);
    c.stop();
    const auto r = check_history(*_conn, schema(), sent);
    EXPECT_EQ(r.effects, 44) << r.describe();
    EXPECT_EQ(r.duplicates, 0) << r.describe();
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.order_violations, 0) << r.describe();
    EXPECT_EQ(bad_calls.load(), 6);
    {
        pqxx::work tx{*_conn};
        EXPECT_EQ(dl.replay(tx, f), 0);  // replayed once only
    }
    EXPECT_EQ(count_rows(*_conn, "SELECT count(*) FROM \"" + schema() + "\".retry"), 0);
}

TEST_F(ConsumerTest, OnePoisonInABatchOfHundredIsDeadLetteredTheOther99ApplyOnce) {
    // One lane and one batch bound of 100: the 100 messages queue together and run in batched
    // transactions. The poison rolls its batch back; the others of that batch then run one
    // transaction each, and the poison is routed from its failure alone: the 99 apply once, the
    // poison is a dead letter with its reason, its handler called once.
    std::vector<sent_message> sent;
    std::string poison_id;
    for (int i = 0; i < 100; ++i) {
        // The poison has a key of its own: on an ordered topic its dead letter holds its key.
        sent.push_back(
            {new_message_id(), i == 50 ? "poison" : "k" + std::to_string(i % 10), i / 10});
        if (i == 50) poison_id = sent.back().id;
    }
    for (const auto& m : sent) _producer->send(_topic, m);
    _producer->flush();
    auto o = options(dedup_mode::inbox);
    o.lanes = 1;
    o.tx_batch_max = 100;
    o.tx_batch_max_time = 10s;
    std::atomic<int> poison_calls{0};
    ferry::consumer::consumer c(o);
    subscribe_witness(c, dedup_mode::inbox, "a", [&](const ferry::consumer::message& m) {
        if (m.message_id == poison_id) {
            ++poison_calls;
            throw ferry::error(ferry::error_kind::permanent, "test.poison", "unparseable order");
        }
    });
    c.start();
    ASSERT_TRUE(wait_until(
        [&] { return c.metrics().processed >= 99 && c.metrics().dead_letters >= 1; }, 60s))
        << c.render_prometheus();
    c.stop();
    const auto s = c.metrics();
    std::vector<sent_message> good;
    for (const auto& m : sent) {
        if (m.id != poison_id) good.push_back(m);
    }
    const auto r = check_history(*_conn, schema(), good);
    EXPECT_EQ(r.effects, 99) << r.describe();
    EXPECT_EQ(r.duplicates, 0) << r.describe();
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.order_violations, 0) << r.describe();
    EXPECT_GE(s.batch_fallbacks, 1u) << "the poison's batch rolled back";
    EXPECT_EQ(poison_calls.load(), 1);  // in its batch; routed from that failure
    pqxx::work tx{*_conn};
    const auto rows = ferry::retry::dead_letters(schema()).list(tx, {});
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].message.message_id, poison_id);
    EXPECT_EQ(rows[0].error_code, "test.poison");
    EXPECT_EQ(rows[0].reason, "handler: permanent: unparseable order");
}

TEST_F(ConsumerTest, InboxRetentionPrunesOldRowsInBatchesAndKeepsRecentOnes) {
    // 250 rows older than the retention window and 5 recent ones.
    {
        pqxx::work tx{*_conn};
        tx.exec_params("INSERT INTO \"" + schema() +
                           "\".inbox (group_id, message_id, processed_at) SELECT $1, "
                           "gen_random_uuid(), now() - interval '8 days' FROM "
                           "generate_series(1, 250)",
                       _group);
        tx.exec_params("INSERT INTO \"" + schema() +
                           "\".inbox (group_id, message_id) SELECT $1, gen_random_uuid() FROM "
                           "generate_series(1, 5)",
                       _group);
        tx.commit();
    }
    auto o = options(dedup_mode::inbox);
    o.inbox_retention = std::chrono::hours(24 * 7);
    o.inbox_prune_interval = 100ms;
    o.inbox_prune_batch = 100;  // three statements for 250 rows
    ferry::consumer::consumer c(o);
    subscribe_witness(c, dedup_mode::inbox, "a");
    c.start();
    ASSERT_TRUE(wait_until([&] { return c.metrics().inbox_pruned >= 250; }, 30s))
        << c.render_prometheus();
    c.stop();
    EXPECT_EQ(c.metrics().inbox_pruned, 250u);
    EXPECT_EQ(count_rows(*_conn, "SELECT count(*) FROM \"" + schema() + "\".inbox"), 5);
    EXPECT_NE(c.render_prometheus().find("ferry_consumer_inbox_pruned_total"), std::string::npos);
}

TEST_F(ConsumerTest, MalformedEnvelopeGoesToDeadLetterWithReason) {
    std::vector<sent_message> sent{{new_message_id(), "k", 1}};
    _producer->send(_topic, std::string("k"), "no id", std::nullopt);
    _producer->send(_topic, std::string("k"), "bad id", std::string("not-a-uuid"));
    // Two ids: ambiguous, never resolved by position (before: the last one was taken).
    _producer->send(_topic, std::string("k"), "two ids", new_message_id(),
                    {{"ferry-message-id", new_message_id()}});
    _producer->send(_topic, sent[0]);
    _producer->flush();
    ferry::consumer::consumer c(options(dedup_mode::inbox));
    subscribe_witness(c, dedup_mode::inbox, "a");
    c.start();
    ASSERT_TRUE(
        wait_until([&] { return c.metrics().processed >= 1 && c.metrics().malformed >= 3; }, 30s))
        << c.render_prometheus();
    c.stop();
    EXPECT_EQ(check_history(*_conn, schema(), sent).effects, 1);
    EXPECT_EQ(effects(), 1);
    ferry::retry::dead_letters dl(schema());
    pqxx::work tx{*_conn};
    const auto rows = dl.list(tx, {});
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[2].reason,
              "malformed envelope: 2 ferry-message-id headers (exactly one is allowed)");
    for (const auto& r : rows) {
        EXPECT_FALSE(r.replayable);
        EXPECT_FALSE(r.blocks_key);  // poison envelopes do not hold the key
        EXPECT_NE(r.reason.find("malformed envelope"), std::string::npos) << r.reason;
    }
    EXPECT_EQ(rows[0].message.payload, "no id");
}

TEST_F(ConsumerTest, PermanentErrorGoesStraightToDeadLetter) {
    std::vector<sent_message> sent{{new_message_id(), "p", 1}};
    _producer->send(_topic, sent[0]);
    _producer->flush();
    std::atomic<int> calls{0};
    auto o = options(dedup_mode::inbox);
    o.dead_letter_topic = _topic + "_dlq";  // also copy dead letters to Kafka
    kafka()->create_topic(o.dead_letter_topic, 1);
    ferry::consumer::consumer c(o);
    subscribe_witness(c, dedup_mode::inbox, "a", [&](const ferry::consumer::message&) {
        ++calls;
        throw ferry::error(ferry::error_kind::permanent, "test.poison", "cannot parse payload");
    });
    c.start();
    ASSERT_TRUE(wait_until([&] { return c.metrics().dead_letters >= 1; }, 30s));
    c.stop();
    EXPECT_EQ(calls.load(), 1);
    EXPECT_EQ(effects(), 0);
    pqxx::work tx{*_conn};
    const auto rows = ferry::retry::dead_letters(schema()).list(tx, {});
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_NE(rows[0].reason.find("permanent: cannot parse payload"), std::string::npos);
    EXPECT_EQ(rows[0].error_code, "test.poison");
    ferry::test::kafka_reader_options ro;
    ro.brokers = kafka()->bootstrap();
    ferry::test::kafka_reader reader(o.dead_letter_topic, ro);
    const auto recs = reader.read(1, 20s);
    ASSERT_EQ(recs.size(), 1u) << reader.last_error();
    EXPECT_EQ(recs[0].key, "p");
    EXPECT_EQ(recs[0].header("ferry-message-id"), sent[0].id);
    ASSERT_TRUE(recs[0].header("ferry-dlq-reason").has_value());
    EXPECT_NE(recs[0].header("ferry-dlq-reason")->find("cannot parse payload"), std::string::npos);
}

TEST_F(ConsumerTest, OrderHoldsThroughRetriesAndRebalanceTwoToOneToThree) {
    // 12 keys x 40 messages in three waves; ~10% of first attempts fail (into the retry table
    // with immediate_tries = 1), so ordered retry must hold later messages behind them. The
    // group goes 2 consumers -> 1 -> 3 between waves.
    std::vector<sent_message> sent;
    std::map<std::string, int> seq;
    auto wave = [&](int n) {
        for (int i = 0; i < n; ++i) {
            const auto key = "key" + std::to_string(i % 12);
            sent.push_back({new_message_id(), key, seq[key]++});
            _producer->send(_topic, sent.back());
        }
        _producer->flush();
    };
    std::mutex fm;
    std::set<std::string> failed_once;
    std::mt19937 rng(42);
    auto flaky = [&](const ferry::consumer::message& m) {
        std::lock_guard lock(fm);
        if (m.attempt == 1 && failed_once.count(m.message_id) == 0 && rng() % 10 == 0) {
            failed_once.insert(m.message_id);
            throw ferry::error(ferry::error_kind::retryable, "test.flaky", "flaky");
        }
    };
    auto o = options(dedup_mode::redis_and_inbox);
    o.retry.immediate_tries = 1;
    o.retry.base_delay = 20ms;
    o.retry.max_delay = 50ms;
    o.retry.max_attempts = 10;
    auto make = [&](const std::string& who) {
        auto c = std::make_unique<ferry::consumer::consumer>(o);
        subscribe_witness(*c, dedup_mode::redis_and_inbox, who, flaky);
        c->start();
        return c;
    };
    auto a = make("a");
    auto b = make("b");
    wave(160);
    ASSERT_TRUE(wait_until([&] { return distinct_effects() >= 160; }, 60s)) << distinct_effects();
    b->stop();  // 2 -> 1
    wave(160);
    ASSERT_TRUE(wait_until([&] { return distinct_effects() >= 320; }, 60s)) << distinct_effects();
    auto c2 = make("c");
    auto d = make("d");  // 1 -> 3
    wave(160);
    ASSERT_TRUE(wait_until([&] { return distinct_effects() >= 480; }, 90s)) << distinct_effects();
    std::this_thread::sleep_for(500ms);
    a->stop();
    c2->stop();
    d->stop();
    const auto r = check_history(*_conn, schema(), sent);
    EXPECT_EQ(r.sent, 480);
    EXPECT_EQ(r.effects, r.sent) << r.describe();  // effects committed == messages sent
    EXPECT_EQ(r.duplicates, 0) << r.describe();
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.order_violations, 0) << r.describe();
    EXPECT_EQ(r.phantoms, 0) << r.describe();
    EXPECT_GT(failed_once.size(), 10u);  // the retry path was exercised
    EXPECT_EQ(count_rows(*_conn, "SELECT count(*) FROM \"" + schema() + "\".retry"), 0);
    // Each of the three later consumers got work after its rebalance.
    EXPECT_GT(count_rows(*_conn,
                         "SELECT count(*) FROM \"" + schema() + "\".witness WHERE consumer = 'c'"),
              0);
}

TEST_F(ConsumerTest, RetryBacklogsOfManyKeysDrainInKeyOrderAcrossRetryWorkers) {
    // The first message of each of 8 keys fails once, so the 59 after it of its key wait in the
    // retry table (472 waiting rows). Four retry workers drain them; each worker goes on with a
    // key's next row as soon as the previous one is applied. Order per key and one effect each.
    std::vector<sent_message> sent;
    std::set<std::string> first_ids;
    for (int i = 0; i < 480; ++i) {
        sent.push_back({new_message_id(), "key" + std::to_string(i % 8), i / 8});
        if (i < 8) first_ids.insert(sent.back().id);
    }
    for (const auto& m : sent) _producer->send(_topic, m);
    _producer->flush();
    auto o = options(dedup_mode::redis_and_inbox);
    o.retry.immediate_tries = 1;
    o.retry.base_delay = 500ms;
    o.retry.max_delay = 500ms;
    o.retry_workers = 4;
    ASSERT_GE(o.retry_batch, 50);
    ferry::consumer::consumer c(o);
    subscribe_witness(c, dedup_mode::redis_and_inbox, "a", [&](const ferry::consumer::message& m) {
        if (m.attempt == 1 && first_ids.count(m.message_id) != 0) {
            throw ferry::error(ferry::error_kind::retryable, "test.flaky", "flaky");
        }
    });
    c.start();
    ASSERT_TRUE(wait_until([&] { return distinct_effects() >= 480; }, 90s))
        << distinct_effects() << "\n"
        << c.render_prometheus();
    std::this_thread::sleep_for(300ms);
    c.stop();
    const auto r = check_history(*_conn, schema(), sent);
    EXPECT_EQ(r.effects, 480) << r.describe();
    EXPECT_EQ(r.duplicates, 0) << r.describe();
    EXPECT_EQ(r.order_violations, 0) << r.describe();
    EXPECT_EQ(c.metrics().retry_scheduled, 8u);
    EXPECT_GT(c.metrics().parked_behind_key, 0u);
    // The waiting rows drained by chaining, not one row per key per claim round.
    EXPECT_GT(c.metrics().retry_chained, c.metrics().parked_behind_key / 2)
        << c.render_prometheus();
    EXPECT_EQ(count_rows(*_conn, "SELECT count(*) FROM \"" + schema() + "\".retry"), 0);
}

// Redis-only: a run of claims in which one message fails in the lane and goes to the retry
// table. Its claim is given back before the run is marked done with one write (ADR 0024), so
// the retry worker claims it fresh and applies it. A run marked without that release would
// make the retry worker read "done" and drop the row: the message lost (checked by breaking
// the release by hand: `lost` 1, the row absorbed as a duplicate).
TEST_F(ConsumerTest, RedisOnlyMessageRetriedOutOfAMarkedRunIsStillApplied) {
    std::vector<sent_message> sent;
    for (int i = 0; i < 30; ++i) sent.push_back({new_message_id(), "k" + std::to_string(i), i});
    const std::string flaky = sent[7].id;
    for (const auto& m : sent) _producer->send(_topic, m);
    _producer->flush();
    std::atomic<int> flaky_calls{0};
    auto o = options(dedup_mode::redis);
    o.lanes = 1;  // one lane: the polled messages are claimed as few runs
    ferry::consumer::consumer c(o);
    subscribe_witness(c, dedup_mode::redis, "a", [&](const ferry::consumer::message& m) {
        if (m.message_id == flaky && ++flaky_calls <= 2) {
            throw ferry::error(ferry::error_kind::retryable, "test.flaky", "flaky");
        }
    });
    c.start();
    ASSERT_TRUE(wait_until(
        [&] { return c.metrics().processed + c.metrics().duplicates_absorbed >= 30; }, 60s))
        << c.render_prometheus();
    c.stop();
    const auto r = check_history(*_conn, schema(), sent);
    EXPECT_EQ(r.effects, 30) << r.describe();
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.duplicates, 0) << r.describe();
    EXPECT_EQ(flaky_calls.load(), 3);
    EXPECT_EQ(c.metrics().retry_scheduled, 1u);
    EXPECT_EQ(c.metrics().duplicates_absorbed, 0u);
    // The runs were marked as runs: a message key names its run, whose key reads "done"; the
    // retried message was completed on its own key by the retry worker.
    int by_run = 0;
    for (const auto& m : sent) {
        const auto v = redis_get(_topic + ":" + _group + ":" + m.id);
        if (m.id == flaky) {
            EXPECT_EQ(v, "done");
        } else if (v != "done" && redis_get(_topic + ":run:" + v) == "done") {
            ++by_run;
        }
    }
    EXPECT_GE(by_run, 1) << "no message was marked done by its run";
}

// Redis-only: a run of claims whose lane is abandoned mid-run (stop() past shutdown_timeout
// while the run's first handler still runs). The rest of the run was claimed but never applied
// and never released, so the run must never be marked "done" as a whole (ADR 0024): the
// applied message gets its own mark, the others keep keys naming a run whose lease key then
// expires, and the next consumer takes them over and applies each once. Marking the run would
// make them read "done": lost (checked by letting marks_due mark broken runs by hand: the
// second consumer absorbed the 29 as duplicates, `lost` 29).
TEST_F(ConsumerTest, RedisOnlyAbandonedRunIsNeverMarkedItsUnappliedMessagesApplyOnceLater) {
    std::vector<sent_message> sent;
    for (int i = 0; i < 30; ++i) sent.push_back({new_message_id(), "k" + std::to_string(i), i});
    for (const auto& m : sent) _producer->send(_topic, m);
    _producer->flush();
    auto o = options(dedup_mode::redis);
    o.lanes = 1;
    o.lease = 1500ms;
    o.shutdown_timeout = 100ms;
    std::atomic<bool> entered{false};
    {
        ferry::consumer::consumer first(o);
        subscribe_witness(first, dedup_mode::redis, "first", [&](const ferry::consumer::message&) {
            if (!entered.exchange(true)) std::this_thread::sleep_for(1000ms);
        });
        first.start();
        ASSERT_TRUE(wait_until([&] { return entered.load(); }, 30s));
        first.stop();  // abandons what the lane holds after shutdown_timeout
        EXPECT_EQ(first.metrics().processed, 1u) << first.render_prometheus();
    }
    ferry::consumer::consumer second(o);
    subscribe_witness(second, dedup_mode::redis, "second");
    second.start();
    ASSERT_TRUE(wait_until(
        [&] { return second.metrics().processed + second.metrics().duplicates_absorbed >= 29; },
        60s))
        << second.render_prometheus();
    second.stop();
    const auto r = check_history(*_conn, schema(), sent);
    EXPECT_EQ(r.effects, 30) << r.describe();
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.duplicates, 0) << r.describe();
    // The applied message's own mark was written and its offset committed at the first
    // consumer's stop; the 29 it abandoned were taken over once its run's lease key expired.
    EXPECT_EQ(second.metrics().processed, 29u);
}

TEST_F(ConsumerTest, RedisDownWithInboxRunsOnTheInboxAlone) {
    std::vector<sent_message> sent;
    for (int i = 0; i < 10; ++i) sent.push_back({new_message_id(), "k" + std::to_string(i % 3), i});
    for (int round = 0; round < 2; ++round) {
        for (const auto& m : sent) _producer->send(_topic, m);
    }
    _producer->flush();
    auto o = options(dedup_mode::redis_and_inbox);
    o.redis_url = "redis://127.0.0.1:1/0";  // nothing listens there
    ferry::consumer::consumer c(o);
    subscribe_witness(c, dedup_mode::redis_and_inbox, "a");
    c.start();  // warns, does not throw: the inbox is authoritative
    ASSERT_TRUE(wait_until(
        [&] { return c.metrics().processed + c.metrics().duplicates_absorbed >= 20; }, 30s))
        << c.render_prometheus();
    c.stop();
    const auto r = check_history(*_conn, schema(), sent);
    EXPECT_EQ(r.effects, 10) << r.describe();
    EXPECT_EQ(r.duplicates, 0) << r.describe();
    EXPECT_GT(c.metrics().redis_errors, 0u);
    EXPECT_EQ(c.metrics().duplicates_absorbed, 10u);
}

TEST_F(ConsumerTest, RedisOnlyWithoutRedisFailsAtStartAsRetryable) {
    auto o = options(dedup_mode::redis);
    o.redis_url = "redis://127.0.0.1:1/0";
    ferry::consumer::consumer c(o);
    subscribe_witness(c, dedup_mode::redis, "a");
    try {
        c.start();
        FAIL() << "expected ferry::error";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.kind(), ferry::error_kind::retryable);
        EXPECT_EQ(e.code(), "dedup.redis_unavailable");
    }
}

TEST_F(ConsumerTest, UnorderedTopicLetsLaterMessagesOvertakeARetry) {
    const std::vector<sent_message> sent{{new_message_id(), "k", 0}, {new_message_id(), "k", 1}};
    for (const auto& m : sent) _producer->send(_topic, m);
    _producer->flush();
    auto o = options(dedup_mode::inbox);
    o.retry.immediate_tries = 1;
    o.retry.base_delay = 500ms;
    o.retry.max_delay = 500ms;
    std::atomic<int> first_calls{0};
    ferry::consumer::consumer c(o);
    ferry::consumer::topic_options unordered;
    unordered.ordered_retry = false;
    subscribe_witness(
        c, dedup_mode::inbox, "a",
        [&](const ferry::consumer::message& m) {
            if (m.message_id == sent[0].id && ++first_calls == 1) {
                throw ferry::error(ferry::error_kind::retryable, "test.flaky", "flaky");
            }
        },
        unordered);
    c.start();
    ASSERT_TRUE(wait_until([&] { return c.metrics().processed >= 2; }, 30s));
    c.stop();
    const auto r = check_history(*_conn, schema(), sent);
    EXPECT_EQ(r.effects, 2) << r.describe();
    EXPECT_EQ(r.order_violations, 1) << "seq 1 should have overtaken seq 0: " << r.describe();
    EXPECT_EQ(c.metrics().parked_behind_key, 0u);
}

TEST_F(ConsumerTest, MetricsRenderAsPrometheusText) {
    ferry::consumer::consumer c(options(dedup_mode::none));
    subscribe_witness(c, dedup_mode::none, "a");
    c.start();
    const auto text = c.render_prometheus();
    c.stop();
    EXPECT_NE(text.find("ferry_consumer_processed_total{group=\"" + _group + "\"} 0"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("ferry_consumer_lane_queue_depth{group=\"" + _group + "\",lane=\"3\"}"),
              std::string::npos);
    EXPECT_NE(text.find("ferry_consumer_lag"), std::string::npos);
}

TEST_F(ConsumerTest, InboxWithPlainHandlerIsRejectedAtStart) {
    ferry::consumer::consumer c(options(dedup_mode::inbox));
    c.subscribe(_topic, ferry::consumer::handler([](const ferry::consumer::message&) {}));
    try {
        c.start();
        FAIL() << "expected ferry::error";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.kind(), ferry::error_kind::permanent);
        EXPECT_EQ(e.field(), "dedup");
    }
}

}  // namespace
