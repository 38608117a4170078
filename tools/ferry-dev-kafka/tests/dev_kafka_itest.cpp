// ferry-dev-kafka end to end: a real librdkafka producer against the tool's mock cluster, read
// back with kafka_reader, and every control command observed from the client's side.
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ferry/test/dev_kafka.hpp"
#include "ferry/test/kafka_reader.hpp"
#include "ferry/test/unique_name.hpp"

namespace {

using namespace std::chrono_literals;
using ferry::test::dev_kafka;
using ferry::test::kafka_reader;
using ferry::test::kafka_reader_options;

// A librdkafka producer that records each message's delivery result. Test-local; one thread.
class producer {
public:
    explicit producer(const std::string& brokers,
                      const std::map<std::string, std::string>& extra = {}) {
        std::map<std::string, std::string> config{
            {"bootstrap.servers", brokers},
            {"enable.idempotence", "true"},
            {"acks", "all"},
            {"linger.ms", "5"},
            // Come back quickly once a broker is up again.
            {"reconnect.backoff.ms", "50"},
            {"reconnect.backoff.max.ms", "500"},
        };
        for (const auto& [k, v] : extra) {
            config[k] = v;
        }
        rd_kafka_conf_t* conf = rd_kafka_conf_new();
        char errstr[512];
        for (const auto& [k, v] : config) {
            if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr)) !=
                RD_KAFKA_CONF_OK) {
                rd_kafka_conf_destroy(conf);
                throw std::runtime_error(k + ": " + errstr);
            }
        }
        rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
            *static_cast<rd_kafka_resp_err_t*>(m->_private) = m->err;
        });
        _rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (_rk == nullptr) {
            rd_kafka_conf_destroy(conf);
            throw std::runtime_error(errstr);
        }
    }
    ~producer() {
        rd_kafka_flush(_rk, 5000);
        rd_kafka_destroy(_rk);
    }
    producer(const producer&) = delete;
    producer& operator=(const producer&) = delete;

    // Queues one message; returns its index in results().
    std::size_t send(const std::string& topic, const std::string& key, const std::string& value,
                     const std::vector<std::pair<std::string, std::string>>& headers = {}) {
        _results.push_back(std::make_unique<rd_kafka_resp_err_t>(RD_KAFKA_RESP_ERR__IN_PROGRESS));
        rd_kafka_headers_t* hdrs = rd_kafka_headers_new(headers.size());
        for (const auto& [name, val] : headers) {
            rd_kafka_header_add(hdrs, name.data(), static_cast<ssize_t>(name.size()), val.data(),
                                static_cast<ssize_t>(val.size()));
        }
        const auto err = rd_kafka_producev(
            _rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
            RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_OPAQUE(_results.back().get()), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_headers_destroy(hdrs);  // ownership passes to librdkafka only on success
            throw std::runtime_error(std::string("producev: ") + rd_kafka_err2str(err));
        }
        return _results.size() - 1;
    }

    // Serves delivery reports until every queued message has one, or the timeout passes.
    bool flush(std::chrono::milliseconds timeout) {
        return rd_kafka_flush(_rk, static_cast<int>(timeout.count())) == RD_KAFKA_RESP_ERR_NO_ERROR;
    }
    [[nodiscard]] rd_kafka_resp_err_t result(std::size_t i) const { return *_results.at(i); }
    [[nodiscard]] rd_kafka_t* handle() const { return _rk; }

private:
    rd_kafka_t* _rk = nullptr;
    std::vector<std::unique_ptr<rd_kafka_resp_err_t>> _results;
};

std::string name_of(rd_kafka_resp_err_t err) { return rd_kafka_err2name(err); }

TEST(DevKafkaTest, ProducedRecordsReadBackWithKeysValuesAndHeaders) {
    dev_kafka kafka;
    ASSERT_FALSE(kafka.bootstrap().empty());
    const std::string topic = ferry::test::unique_name("devkafka");
    kafka.create_topic(topic, 3);

    constexpr int k_count = 300;
    producer p(kafka.bootstrap());
    for (int i = 0; i < k_count; ++i) {
        p.send(topic, "key-" + std::to_string(i % 7), "value-" + std::to_string(i),
               {{"message_id", "m" + std::to_string(i)}, {"seq", std::to_string(i / 7)}});
    }
    ASSERT_TRUE(p.flush(30s));
    for (int i = 0; i < k_count; ++i) {
        ASSERT_EQ(p.result(static_cast<std::size_t>(i)), RD_KAFKA_RESP_ERR_NO_ERROR)
            << "message " << i << ": " << name_of(p.result(static_cast<std::size_t>(i)));
    }

    kafka_reader reader(topic, kafka_reader_options{.brokers = kafka.bootstrap()});
    auto records = reader.read(k_count, 30s);
    ASSERT_EQ(records.size(), static_cast<std::size_t>(k_count)) << reader.last_error();
    EXPECT_EQ(reader.partitions(), 3);
    // Nothing trails the expected records: the idempotent producer wrote each exactly once.
    records = reader.read_all(500ms, 10s);
    ASSERT_EQ(records.size(), static_cast<std::size_t>(k_count));

    std::map<std::string, int> seen;                              // message_id -> times
    std::map<std::string, std::pair<int32_t, int>> last_per_key;  // key -> (partition, seq)
    std::map<std::pair<int32_t, int64_t>, bool> offsets;
    for (const auto& r : records) {
        ASSERT_TRUE(r.key && r.value);
        const auto id = r.header("message_id");
        const auto seq = r.header("seq");
        ASSERT_TRUE(id && seq);
        const int i = std::stoi(id->substr(1));
        EXPECT_EQ(*r.key, "key-" + std::to_string(i % 7));
        EXPECT_EQ(*r.value, "value-" + std::to_string(i));
        EXPECT_EQ(std::stoi(*seq), i / 7);
        EXPECT_EQ(r.topic, topic);
        ++seen[*id];
        EXPECT_TRUE(offsets.emplace(std::make_pair(r.partition, r.offset), true).second);
        // Same key, same partition, in send order (records come per partition in offset order).
        auto [it, inserted] = last_per_key.try_emplace(*r.key, r.partition, std::stoi(*seq));
        if (!inserted) {
            EXPECT_EQ(it->second.first, r.partition) << "key " << *r.key << " moved partition";
            EXPECT_LT(it->second.second, std::stoi(*seq)) << "key " << *r.key << " reordered";
            it->second.second = std::stoi(*seq);
        }
    }
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(k_count));
}

TEST(DevKafkaTest, AllBrokersDownFailsProduceAndUpRecovers) {
    dev_kafka kafka;
    const std::string topic = ferry::test::unique_name("down");
    kafka.create_topic(topic, 1);
    producer p(kafka.bootstrap(), {{"message.timeout.ms", "3000"}});

    const auto warm = p.send(topic, "k", "before");
    ASSERT_TRUE(p.flush(20s));
    ASSERT_EQ(p.result(warm), RD_KAFKA_RESP_ERR_NO_ERROR) << name_of(p.result(warm));

    kafka.all_brokers_down();
    const auto lost = p.send(topic, "k", "while-down");
    p.flush(15s);
    EXPECT_EQ(p.result(lost), RD_KAFKA_RESP_ERR__MSG_TIMED_OUT) << name_of(p.result(lost));

    kafka.all_brokers_up();
    // A fresh message after recovery; retried a few times because reconnection takes a moment.
    rd_kafka_resp_err_t after = RD_KAFKA_RESP_ERR__IN_PROGRESS;
    for (int attempt = 0; attempt < 5 && after != RD_KAFKA_RESP_ERR_NO_ERROR; ++attempt) {
        const auto idx = p.send(topic, "k", "after-up-" + std::to_string(attempt));
        p.flush(15s);
        after = p.result(idx);
    }
    EXPECT_EQ(after, RD_KAFKA_RESP_ERR_NO_ERROR) << name_of(after);

    kafka_reader reader(topic, kafka_reader_options{.brokers = kafka.bootstrap()});
    const auto records = reader.read_all(500ms, 20s);
    ASSERT_FALSE(records.empty()) << reader.last_error();
    EXPECT_EQ(records.front().value, "before");
    for (const auto& r : records) {
        EXPECT_NE(r.value, "while-down") << "a timed-out message was written anyway";
    }
}

TEST(DevKafkaTest, SingleBrokerDownAndUp) {
    dev_kafka kafka;
    kafka.broker_down(2);
    kafka.broker_up(2);
    EXPECT_THROW(kafka.broker_down(0), std::runtime_error);
    EXPECT_THROW(kafka.broker_down(4), std::runtime_error);
}

TEST(DevKafkaTest, RetriableProduceErrorsAreRetriedAndDeliveredOnce) {
    dev_kafka kafka;
    const std::string topic = ferry::test::unique_name("retry");
    kafka.create_topic(topic, 1);
    producer p(kafka.bootstrap());
    const auto warm = p.send(topic, "k", "warm");
    ASSERT_TRUE(p.flush(20s));
    ASSERT_EQ(p.result(warm), RD_KAFKA_RESP_ERR_NO_ERROR);

    // Without retries the injected error reaches the delivery report: the injection is real.
    {
        producer no_retry(kafka.bootstrap(), {{"enable.idempotence", "false"}, {"retries", "0"}});
        const auto w = no_retry.send(topic, "k", "warm-no-retry");
        ASSERT_TRUE(no_retry.flush(20s));
        ASSERT_EQ(no_retry.result(w), RD_KAFKA_RESP_ERR_NO_ERROR);
        kafka.push_errors(0, "NOT_ENOUGH_REPLICAS", 1);
        const auto failed = no_retry.send(topic, "k", "not-retried");
        ASSERT_TRUE(no_retry.flush(20s));
        EXPECT_EQ(no_retry.result(failed), RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS)
            << name_of(no_retry.result(failed));
    }

    // The next three Produce requests fail with the same retriable error; the idempotent
    // producer retries and the record lands exactly once.
    kafka.push_errors(0, "NOT_ENOUGH_REPLICAS", 3);
    const auto idx = p.send(topic, "k", "retried");
    ASSERT_TRUE(p.flush(30s));
    EXPECT_EQ(p.result(idx), RD_KAFKA_RESP_ERR_NO_ERROR) << name_of(p.result(idx));

    kafka_reader reader(topic, kafka_reader_options{.brokers = kafka.bootstrap()});
    const auto records = reader.read_all(500ms, 20s);
    int retried = 0;
    for (const auto& r : records) {
        retried += r.value == "retried" ? 1 : 0;
    }
    EXPECT_EQ(retried, 1);
}

TEST(DevKafkaTest, PermanentProduceErrorReachesTheDeliveryReport) {
    dev_kafka kafka;
    const std::string topic = ferry::test::unique_name("perm");
    kafka.create_topic(topic, 1);
    producer p(kafka.bootstrap());
    const auto warm = p.send(topic, "k", "warm");
    ASSERT_TRUE(p.flush(20s));
    ASSERT_EQ(p.result(warm), RD_KAFKA_RESP_ERR_NO_ERROR);

    // Error names and numbers are both accepted; 10 is MSG_SIZE_TOO_LARGE.
    kafka.push_errors(0, "10", 1);
    const auto idx = p.send(topic, "k", "rejected");
    ASSERT_TRUE(p.flush(30s));
    EXPECT_EQ(p.result(idx), RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) << name_of(p.result(idx));
}

TEST(DevKafkaTest, ControlPortRejectsBadCommands) {
    dev_kafka kafka;
    EXPECT_EQ(kafka.command("ping"), "ok");
    EXPECT_THROW(kafka.command("explode"), std::runtime_error);
    EXPECT_THROW(kafka.command("errors produce NO_SUCH_ERROR 1"), std::runtime_error);
    EXPECT_THROW(kafka.command("errors nosuchapi 6 1"), std::runtime_error);
    EXPECT_THROW(kafka.command("rtt 1 -5"), std::runtime_error);
    EXPECT_NO_THROW(kafka.set_rtt(1, 10ms));
    EXPECT_NO_THROW(kafka.clear_errors(0));
    EXPECT_NO_THROW(kafka.command("errors Produce RD_KAFKA_RESP_ERR__TRANSPORT 1"));
}

TEST(DevKafkaTest, PreCreatedTopicsHaveTheirPartitionCount) {
    const std::string topic = ferry::test::unique_name("pre");
    dev_kafka kafka(ferry::test::dev_kafka_options{.topics = {topic + ":5"}});
    producer p(kafka.bootstrap());
    const auto idx = p.send(topic, "k", "v");
    ASSERT_TRUE(p.flush(20s));
    ASSERT_EQ(p.result(idx), RD_KAFKA_RESP_ERR_NO_ERROR);
    kafka_reader reader(topic, kafka_reader_options{.brokers = kafka.bootstrap()});
    ASSERT_EQ(reader.read(1, 20s).size(), 1u) << reader.last_error();
    EXPECT_EQ(reader.partitions(), 5);
}

}  // namespace
