// A consumer-only database (ADR 0015): `ferryctl migrate --only consumer` into a fresh schema
// creates the consumer's tables and none of the producer side's, and a consumer runs against it
// with every table it uses: the inbox (duplicates absorbed), the retry table (a message that
// fails, then succeeds), the dead-letter table (a poison message, replayed), and the partition
// owners (the retry worker's fence). The consumer runtime fixture is the consumer suite's own.
#include <atomic>
#include <cstdio>
#include <fstream>

#include "consumer_fixture.hpp"
#include "ferry/retry/tables.hpp"
#include "ferry/test/run_command.hpp"

using namespace ferry_consumer_test;
using ferry::consumer::dedup_mode;

namespace {

class ConsumerOnlyDatabase : public ConsumerTest {
protected:
    void SetUp() override {
        _schema = std::make_unique<ferry::test::scoped_schema>("conly");
        _config = "/tmp/" + ferry::test::unique_name("conly") + ".yaml";
        {
            std::ofstream f(_config);
            f << "postgres:\n  dsn: ${FERRY_TEST_PG_DSN}\n  schema: " << schema() << "\n";
        }
        const auto r = ferry::test::run_command(FERRY_CTL_PATH " --config " + _config +
                                                " migrate --only consumer 2>&1");
        ASSERT_EQ(r.exit_code, 0) << r.output;
        ASSERT_NE(r.output.find("modules: consumer)"), std::string::npos) << r.output;
        _conn = std::make_unique<pqxx::connection>(ferry::test::pg_dsn());
        prepare_run();
    }
    void TearDown() override { std::remove(_config.c_str()); }

    bool exists(const std::string& relation) {
        pqxx::nontransaction tx{*_conn};
        return tx
            .exec_params("SELECT to_regclass($1) IS NOT NULL",
                         "\"" + schema() + "\"." + relation)[0][0]
            .as<bool>();
    }

    std::string _config;
};

}  // namespace

TEST_F(ConsumerOnlyDatabase, HoldsOnlyTheConsumersTablesAndAConsumerRunsOnIt) {
    for (const char* t : {"inbox", "retry", "dead_letter", "consumer_partition_owner"}) {
        EXPECT_TRUE(exists(t)) << t;
    }
    for (const char* t : {"outbox", "published", "parked", "half_message", "reconcile_run"}) {
        EXPECT_FALSE(exists(t)) << t << " belongs to the producer side";
    }

    const std::string flaky_id = new_message_id(), poison_id = new_message_id();
    std::vector<sent_message> sent{{flaky_id, "flaky", 0}, {poison_id, "poison", 0}};
    for (int i = 0; i < 10; ++i) sent.push_back({new_message_id(), "k" + std::to_string(i % 3), i});
    for (const auto& m : sent) _producer->send(_topic, m);
    for (std::size_t i = 2; i < sent.size(); ++i) {  // a second copy: the inbox absorbs it
        _producer->send(_topic, sent[i]);
    }
    _producer->flush();

    std::atomic<int> flaky_calls{0};
    std::atomic<bool> poisoned{true};
    auto o = options(dedup_mode::inbox);
    o.retry.immediate_tries = 1;  // the flaky message's second attempt comes from the retry table
    o.retry.max_attempts = 3;
    ferry::consumer::consumer c(o);
    subscribe_witness(c, dedup_mode::inbox, "a", [&](const ferry::consumer::message& m) {
        if (m.message_id == flaky_id && ++flaky_calls == 1) {
            throw ferry::error(ferry::error_kind::retryable, "test.flaky", "flaky once");
        }
        if (m.message_id == poison_id && poisoned) {
            throw ferry::error(ferry::error_kind::permanent, "test.poison", "poison");
        }
    });
    c.start();
    ASSERT_TRUE(wait_until([&] { return c.metrics().dead_letters >= 1 && effects() >= 11; }, 60s))
        << c.render_prometheus();

    ferry::retry::dead_letters dl(schema());
    ferry::retry::dead_letter_filter f;
    f.group = _group;
    {
        pqxx::work tx{*_conn};
        const auto rows = dl.list(tx, f);
        ASSERT_EQ(rows.size(), 1u);
        EXPECT_EQ(rows[0].message.message_id, poison_id);
    }
    poisoned = false;
    {
        pqxx::work tx{*_conn};
        EXPECT_EQ(dl.replay(tx, f), 1);
        tx.commit();
    }
    ASSERT_TRUE(wait_until([&] { return effects() >= 12; }, 30s)) << c.render_prometheus();
    c.stop();

    const auto r = check_history(*_conn, schema(), sent);
    EXPECT_EQ(r.effects, 12) << r.describe();
    EXPECT_EQ(r.duplicates, 0) << r.describe();
    EXPECT_EQ(r.lost, 0) << r.describe();
    EXPECT_EQ(r.order_violations, 0) << r.describe();
    EXPECT_EQ(flaky_calls.load(), 2);
    EXPECT_GE(c.metrics().duplicates_absorbed, 1u);
    EXPECT_EQ(count_rows(*_conn, "SELECT count(*) FROM \"" + schema() + "\".inbox"), 12);
    EXPECT_EQ(count_rows(*_conn, "SELECT count(*) FROM \"" + schema() + "\".retry"), 0);
}
