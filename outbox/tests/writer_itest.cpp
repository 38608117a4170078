// The producer side against a real PostgreSQL: atomic enqueue (invariant 1), batch enqueue,
// concurrency, and every rejected input.
#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "ferry/common/error.hpp"
#include "outbox_fixture.hpp"

using ferry::outbox::message;
using ferry::outbox::message_id;

namespace {

std::string all_bytes() {
    std::string s;
    for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
    return s;
}

std::string unescape_bytea(const std::string& hex) {
    // "\x0001..." as returned by PostgreSQL's bytea_output=hex.
    std::string out;
    for (std::size_t i = 2; i + 1 < hex.size(); i += 2) {
        out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    return out;
}

}  // namespace

class WriterTest : public OutboxFixture {};

TEST_F(WriterTest, RolledBackEnqueueLeavesNothing) {
    {
        pqxx::work tx{conn()};
        (void)writer().enqueue(tx, make("order-1"));
        tx.abort();
    }
    {
        pqxx::work tx{conn()};
        (void)writer().enqueue(tx, make("order-2"));
        // destroyed without commit: implicit rollback
    }
    EXPECT_EQ(count_rows(), 0);
}

TEST_F(WriterTest, CommittedEnqueueLeavesExactlyOneMessage) {
    message m = make("order-42", all_bytes());
    m.topic = "orders.v1";
    m.headers = {{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
                 {"quote\"back\\slash", "line\nbreak \xc3\xa9 \t"}};
    message_id id;
    {
        pqxx::work tx{conn()};
        id = writer().enqueue(tx, m);
        tx.commit();
    }
    EXPECT_EQ(id.version(), 7);
    pqxx::nontransaction tx{conn()};
    const auto rows = tx.exec(
        "SELECT message_id::text, topic, key, payload, headers::text, "
        "available_at = created_at, expires_at IS NULL, "
        "headers->>'traceparent', headers->>'quote\"back\\slash' FROM " +
        table());
    ASSERT_EQ(rows.size(), 1u);
    const auto r = rows[0];
    EXPECT_EQ(r[0].as<std::string>(), id.to_string());
    EXPECT_EQ(r[1].as<std::string>(), "orders.v1");
    EXPECT_EQ(r[2].as<std::string>(), "order-42");
    EXPECT_EQ(unescape_bytea(r[3].as<std::string>()), all_bytes());
    EXPECT_TRUE(r[5].as<bool>());
    EXPECT_TRUE(r[6].as<bool>());
    EXPECT_EQ(r[7].as<std::string>(), m.headers.at("traceparent"));
    EXPECT_EQ(r[8].as<std::string>(), "line\nbreak \xc3\xa9 \t");
}

TEST_F(WriterTest, DelayAndExpiryUseTheDatabaseClock) {
    message m = make("order-7");
    m.deliver_after = std::chrono::seconds(30);
    m.expires_after = std::chrono::minutes(10);
    {
        pqxx::work tx{conn()};
        (void)writer().enqueue(tx, m);
        tx.commit();
    }
    pqxx::nontransaction tx{conn()};
    const auto r = tx.exec(
        "SELECT extract(epoch FROM available_at - created_at)::float8, "
        "extract(epoch FROM expires_at - created_at)::float8 FROM " +
        table())[0];
    EXPECT_DOUBLE_EQ(r[0].as<double>(), 30.0);
    EXPECT_DOUBLE_EQ(r[1].as<double>(), 600.0);
}

TEST_F(WriterTest, BatchEnqueueWritesAllInOneStatementInOrder) {
    std::vector<message> batch;
    for (int i = 0; i < 500; ++i) {
        auto m = make("key-\"" + std::to_string(i % 7) + "\\", all_bytes() + std::to_string(i));
        m.headers = {{"n", std::to_string(i)}, {"q", "a\"b\\c,{}"}};
        if (i % 10 == 0) m.deliver_after = std::chrono::milliseconds(i);
        batch.push_back(std::move(m));
    }
    std::vector<message_id> ids;
    {
        pqxx::work tx{conn()};
        ids = writer().enqueue_batch(tx, batch);
        tx.commit();
    }
    ASSERT_EQ(ids.size(), batch.size());
    pqxx::nontransaction tx{conn()};
    const auto rows = tx.exec(
        "SELECT message_id::text, key, payload, headers->>'n', headers->>'q', "
        "extract(epoch FROM available_at - created_at)::float8 * 1000 FROM " +
        table() + " ORDER BY id");
    ASSERT_EQ(rows.size(), batch.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
        EXPECT_EQ(rows[i][0].as<std::string>(), ids[i].to_string()) << i;
        EXPECT_EQ(rows[i][1].as<std::string>(), batch[i].key) << i;
        EXPECT_EQ(unescape_bytea(rows[i][2].as<std::string>()), batch[i].payload) << i;
        EXPECT_EQ(rows[i][3].as<std::string>(), std::to_string(i));
        EXPECT_EQ(rows[i][4].as<std::string>(), "a\"b\\c,{}");
        EXPECT_NEAR(rows[i][5].as<double>(), i % 10 == 0 ? static_cast<double>(i) : 0.0, 0.001);
    }
    // One statement evaluates clock_timestamp() once for the whole batch: a per-message loop
    // would leave hundreds of distinct creation times.
    EXPECT_EQ(tx.exec("SELECT count(DISTINCT created_at) FROM " + table())[0][0].as<int>(), 1);
}

TEST_F(WriterTest, BatchWithOneBadMessageWritesNothing) {
    std::vector<message> batch{make("a"), make("b"), make("c")};
    batch[1].payload.assign(writer().options().max_payload_bytes + 1, 'x');
    {
        pqxx::work tx{conn()};
        try {
            (void)writer().enqueue_batch(tx, batch);
            FAIL() << "batch accepted";
        } catch (const ferry::error& e) {
            EXPECT_EQ(e.code(), "outbox.payload_too_large");
            EXPECT_NE(std::string(e.what()).find("message 1"), std::string::npos) << e.what();
        }
        tx.commit();  // the transaction is still usable: nothing was sent
    }
    EXPECT_EQ(count_rows(), 0);
}

TEST_F(WriterTest, RejectedInputWritesNothingAndKeepsTheTransactionUsable) {
    pqxx::work tx{conn()};
    auto bad = make("k");
    bad.topic = "no spaces allowed";
    EXPECT_THROW((void)writer().enqueue(tx, bad), ferry::error);
    (void)writer().enqueue(tx, make("good"));
    tx.commit();
    EXPECT_EQ(count_rows(), 1);
}

TEST_F(WriterTest, UnknownSchemaIsReportedAsNotMigrated) {
    ferry::outbox::writer_options o;
    o.schema = "ferry_schema_that_does_not_exist";
    ferry::outbox::writer w{o};
    pqxx::work tx{conn()};
    try {
        (void)w.enqueue(tx, make("k"));
        FAIL() << "enqueue into a missing schema succeeded";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "outbox.schema_missing") << e.what();
        EXPECT_EQ(e.field(), "schema");
        EXPECT_EQ(e.kind(), ferry::error_kind::permanent);
        EXPECT_NE(std::string(e.what()).find("ferryctl migrate"), std::string::npos) << e.what();
    }
}

TEST_F(WriterTest, ClosedConnectionIsAClearRetryTransactionError) {
    pqxx::connection victim{ferry::test::pg_dsn()};
    const int pid = victim.backendpid();
    pqxx::work tx{victim};
    {
        pqxx::nontransaction admin{conn()};
        admin.exec("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
    }
    try {
        (void)writer().enqueue(tx, make("k"));
        FAIL() << "enqueue on a terminated connection succeeded";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "outbox.connection") << e.what();
        EXPECT_EQ(e.kind(), ferry::error_kind::retry_transaction);
        EXPECT_NE(std::string(e.what()).find("connection"), std::string::npos);
        // The DSN (which may hold a password) never appears in the error.
        EXPECT_EQ(std::string(e.what()).find(ferry::test::pg_dsn()), std::string::npos);
    }
    EXPECT_EQ(count_rows(), 0);
}

// Invariant 1 under concurrency: exactly the committed messages exist, none of the rolled-back
// ones, with 8 producer connections committing and rolling back at the same time.
TEST_F(WriterTest, EightConcurrentProducersLoseNothing) {
    constexpr int producers = 8, txs_per_producer = 150;
    std::mutex mu;
    std::set<std::string> committed, rolled_back;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
            try {
                pqxx::connection c{ferry::test::pg_dsn()};
                for (int i = 0; i < txs_per_producer; ++i) {
                    pqxx::work tx{c};
                    std::vector<std::string> ids;
                    if (i % 3 == 0) {
                        std::vector<message> batch{make("p" + std::to_string(p)),
                                                   make("p" + std::to_string(p) + "-b")};
                        for (const auto& id : writer().enqueue_batch(tx, batch))
                            ids.push_back(id.to_string());
                    } else {
                        ids.push_back(
                            writer().enqueue(tx, make("p" + std::to_string(p))).to_string());
                    }
                    const bool commit = (i * 7 + p) % 5 != 0;
                    if (commit) {
                        tx.commit();
                    } else {
                        tx.abort();
                    }
                    std::lock_guard lock(mu);
                    (commit ? committed : rolled_back).insert(ids.begin(), ids.end());
                }
            } catch (const std::exception& e) {
                ADD_FAILURE() << "producer " << p << ": " << e.what();
                ++failures;
            }
        });
    }
    for (auto& t : threads) t.join();
    ASSERT_EQ(failures.load(), 0);
    ASSERT_FALSE(rolled_back.empty());

    std::set<std::string> stored;
    pqxx::nontransaction tx{conn()};
    for (const auto& row : tx.exec("SELECT message_id::text FROM " + table())) {
        stored.insert(row[0].as<std::string>());
    }
    EXPECT_EQ(stored.size(), committed.size());
    EXPECT_EQ(stored, committed);
    for (const auto& id : rolled_back) EXPECT_EQ(stored.count(id), 0u) << "phantom " << id;
}

// writer::enqueue_with (issue 15): the INSERT travels with the caller's next statement.
class PipelinedWriterTest : public OutboxFixture {
protected:
    void SetUp() override {
        OutboxFixture::SetUp();
        pqxx::work tx{conn()};
        tx.exec("CREATE TABLE \"" + schema() + "\".orders (id bigint PRIMARY KEY, note text)");
        tx.commit();
    }
    std::string orders() const { return "\"" + schema() + "\".orders"; }
    long long count_orders() {
        pqxx::nontransaction tx{conn()};
        return tx.exec("SELECT count(*) FROM " + orders())[0][0].as<long long>();
    }
};

TEST_F(PipelinedWriterTest, StoresExactlyWhatThePreparedPathStores) {
    // Literal values instead of parameters: every byte, quote and backslash must survive.
    message m = make("it's a \\ key \"q\" \xc3\xa9", all_bytes());
    m.topic = "orders.v1";
    m.headers = {{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
                 {"quote'\"back\\slash", "line\nbreak \xc3\xa9 \t '' \\x00"}};
    m.deliver_after = std::chrono::seconds(3);
    m.expires_after = std::chrono::minutes(2);
    message_id pipelined, prepared;
    {
        pqxx::work tx{conn()};
        const auto [id, r] = writer().enqueue_with(
            tx, m,
            "INSERT INTO " + orders() + " VALUES (1, " + tx.quote("it's") + ") RETURNING id");
        ASSERT_EQ(r.size(), 1u);
        EXPECT_EQ(r[0][0].as<int>(), 1);
        pipelined = id;
        prepared = writer().enqueue(tx, m);  // the transaction is usable again
        tx.commit();
    }
    EXPECT_EQ(pipelined.version(), 7);
    pqxx::nontransaction tx{conn()};
    const auto rows = tx.exec(
        "SELECT a.topic = b.topic AND a.key = b.key AND a.payload = b.payload AND "
        "a.headers = b.headers AND a.available_at - a.created_at = b.available_at - b.created_at "
        "AND a.expires_at - a.created_at = b.expires_at - b.created_at, a.key, a.payload, "
        "a.headers->>'quote''\"back\\slash', extract(epoch FROM a.available_at - a.created_at) "
        "FROM " +
        table() + " a, " + table() + " b WHERE a.message_id = '" + pipelined.to_string() +
        "' AND b.message_id = '" + prepared.to_string() + "'");
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_TRUE(rows[0][0].as<bool>());
    EXPECT_EQ(rows[0][1].as<std::string>(), m.key);
    EXPECT_EQ(unescape_bytea(rows[0][2].as<std::string>()), all_bytes());
    EXPECT_EQ(rows[0][3].as<std::string>(), "line\nbreak \xc3\xa9 \t '' \\x00");
    EXPECT_DOUBLE_EQ(rows[0][4].as<double>(), 3.0);
}

TEST_F(PipelinedWriterTest, CommitsAndRollsBackWithTheBusinessStatement) {
    {
        pqxx::work tx{conn()};
        (void)writer().enqueue_with(tx, make("order-1"), "INSERT INTO " + orders() + " VALUES (1)");
        tx.commit();
    }
    {
        pqxx::work tx{conn()};
        (void)writer().enqueue_with(tx, make("order-2"), "INSERT INTO " + orders() + " VALUES (2)");
        tx.abort();
    }
    EXPECT_EQ(count_orders(), 1);
    EXPECT_EQ(count_rows(), 1);
    EXPECT_EQ(count_rows("key = 'order-1'"), 1);
}

TEST_F(PipelinedWriterTest, ACallerErrorIsTranslatedAndNothingIsWritten) {
    {
        pqxx::work tx{conn()};
        (void)writer().enqueue_with(tx, make("order-1"), "INSERT INTO " + orders() + " VALUES (1)");
        tx.commit();
    }
    {
        pqxx::work tx{conn()};
        // Duplicate primary key: the caller's statement fails, and the INSERT before it in the
        // same query is rolled back with the transaction.
        try {
            (void)writer().enqueue_with(tx, make("order-2"),
                                        "INSERT INTO " + orders() + " VALUES (1)");
            FAIL() << "expected the duplicate key error";
        } catch (const ferry::error& e) {
            EXPECT_EQ(e.code(), "outbox.database") << e.what();
            EXPECT_NE(std::string(e.what()).find("23505"), std::string::npos) << e.what();
        }
    }
    EXPECT_EQ(count_orders(), 1);
    EXPECT_EQ(count_rows(), 1);
}

TEST_F(PipelinedWriterTest, AnInsertErrorIsAFerryError) {
    ferry::outbox::writer_options o;
    o.schema = schema() + "_missing";
    const ferry::outbox::writer missing{o};
    pqxx::work tx{conn()};
    try {
        (void)missing.enqueue_with(tx, make("order-1"), "INSERT INTO " + orders() + " VALUES (1)");
        FAIL() << "expected outbox.schema_missing";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "outbox.schema_missing") << e.what();
    }
    tx.abort();
    EXPECT_EQ(count_orders(), 0);
}

TEST_F(PipelinedWriterTest, RejectedMessageQueuesNothingNotEvenTheCallersStatement) {
    message bad = make("order-1");
    bad.topic = "bad topic";
    pqxx::work tx{conn()};
    try {
        (void)writer().enqueue_with(tx, bad, "INSERT INTO " + orders() + " VALUES (1)");
        FAIL() << "expected outbox.invalid_topic";
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "outbox.invalid_topic");
        EXPECT_EQ(e.field(), "topic");
    }
    tx.commit();
    EXPECT_EQ(count_orders(), 0);
    EXPECT_EQ(count_rows(), 0);
}
