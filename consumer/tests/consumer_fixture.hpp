#pragma once
// Shared pieces of the consumer integration and fault tests: a private embedded Kafka per test
// binary, a migrated schema per test, a producer that writes Ferry envelopes the way the relay
// does, a witness table WITHOUT a unique constraint (so duplicate effects stay visible), and the
// history checker (lost / duplicated / out-of-order effects).

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ferry/consumer/consumer.hpp"
#include "ferry/outbox/migrate.hpp"
#include "ferry/test/dev_kafka.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/scoped_schema.hpp"
#include "ferry/test/unique_name.hpp"

namespace ferry_consumer_test {

using namespace std::chrono_literals;

/// A UUIDv7-shaped id, unique per process run.
inline std::string new_message_id() {
    static std::mt19937_64 gen{std::random_device{}()};
    static std::mutex m;
    std::lock_guard lock(m);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    const auto r1 = gen(), r2 = gen();
    char buf[40];
    std::snprintf(buf, sizeof buf, "%08llx-%04llx-7%03llx-%04llx-%012llx",
                  static_cast<unsigned long long>((ms >> 16) & 0xffffffffULL),
                  static_cast<unsigned long long>(ms & 0xffff),
                  static_cast<unsigned long long>(r1 & 0xfff),
                  static_cast<unsigned long long>(0x8000 | ((r1 >> 12) & 0x3fff)),
                  static_cast<unsigned long long>(r2 & 0xffffffffffffULL));
    return buf;
}

struct sent_message {
    std::string id;
    std::string key;
    int seq = 0;
};

/// Produces records shaped like the relay's: key, payload, ferry-message-id, ferry-created-at.
class test_producer {
public:
    explicit test_producer(const std::string& brokers,
                           const std::map<std::string, std::string>& extra = {}) {
        char err[512];
        auto* conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err);
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err);
        rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof err);
        for (const auto& [k, v] : extra) {
            if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) !=
                RD_KAFKA_CONF_OK) {
                rd_kafka_conf_destroy(conf);
                throw std::runtime_error(err);
            }
        }
        _rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (_rk == nullptr) throw std::runtime_error(err);
    }
    ~test_producer() {
        rd_kafka_flush(_rk, 10000);
        rd_kafka_destroy(_rk);
    }
    test_producer(const test_producer&) = delete;
    test_producer& operator=(const test_producer&) = delete;

    /// `id` nullopt: no ferry-message-id header at all (malformed envelope).
    void send(const std::string& topic, const std::optional<std::string>& key,
              const std::string& payload, const std::optional<std::string>& id,
              const std::vector<std::pair<std::string, std::string>>& extra = {}) {
        auto* h = rd_kafka_headers_new(4);
        if (id)
            rd_kafka_header_add(h, "ferry-message-id", -1, id->data(),
                                static_cast<ssize_t>(id->size()));
        rd_kafka_header_add(h, "ferry-created-at", -1, "2026-01-01T00:00:00Z", -1);
        for (const auto& [n, v] : extra) {
            rd_kafka_header_add(h, n.c_str(), -1, v.data(), static_cast<ssize_t>(v.size()));
        }
        void* kp = key ? const_cast<char*>(key->data()) : nullptr;
        const std::size_t kl = key ? key->size() : 0;
        rd_kafka_resp_err_t err;
        do {
            err = rd_kafka_producev(
                _rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(kp, kl),
                RD_KAFKA_V_VALUE(const_cast<char*>(payload.data()), payload.size()),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) rd_kafka_poll(_rk, 50);
        } while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_headers_destroy(h);
            throw std::runtime_error(rd_kafka_err2str(err));
        }
        rd_kafka_poll(_rk, 0);
    }
    void send(const std::string& topic, const sent_message& m) {
        send(topic, m.key, m.key + ":" + std::to_string(m.seq), m.id);
    }
    void flush() {
        if (rd_kafka_flush(_rk, 20000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            throw std::runtime_error("producer flush timed out");
        }
    }

private:
    rd_kafka_t* _rk = nullptr;
};

/// Witness: one row per applied effect, no unique constraint.
inline void create_witness(pqxx::connection& c, const std::string& schema) {
    pqxx::work tx{c};
    tx.exec("CREATE TABLE \"" + schema +
            "\".witness (n bigserial, message_id uuid NOT NULL, key text, seq int, consumer text, "
            "applied_at timestamptz NOT NULL DEFAULT clock_timestamp())");
    tx.commit();
}

inline int seq_of(const std::string& payload) {
    const auto pos = payload.rfind(':');
    return pos == std::string::npos ? 0 : std::atoi(payload.c_str() + pos + 1);
}

inline void write_witness(pqxx::transaction_base& tx, const std::string& schema,
                          const ferry::consumer::message& m, const std::string& who) {
    tx.exec_params("INSERT INTO \"" + schema +
                       "\".witness (message_id, key, seq, consumer) VALUES ($1::uuid, $2, $3, $4)",
                   m.message_id, m.key.value_or(""), seq_of(m.payload), who);
}

/// Writes witness rows outside the runtime's transaction (for plain handlers), one pooled
/// connection per concurrent caller.
class witness_writer {
public:
    witness_writer(std::string dsn, std::string schema)
        : _dsn(std::move(dsn)), _schema(std::move(schema)) {}
    void write(const ferry::consumer::message& m, const std::string& who) {
        std::unique_ptr<pqxx::connection> c;
        {
            std::lock_guard lock(_m);
            if (!_idle.empty()) {
                c = std::move(_idle.back());
                _idle.pop_back();
            }
        }
        if (!c) c = std::make_unique<pqxx::connection>(_dsn);
        {
            pqxx::work tx{*c};
            write_witness(tx, _schema, m, who);
            tx.commit();
        }
        std::lock_guard lock(_m);
        _idle.push_back(std::move(c));
    }

private:
    std::string _dsn, _schema;
    std::mutex _m;
    std::vector<std::unique_ptr<pqxx::connection>> _idle;
};

struct check_result {
    long sent = 0;
    long applied_distinct = 0;
    long effects = 0;
    long duplicates = 0;  // witness rows beyond the first per message
    long lost = 0;        // sent, no effect (and not expected in dead letters)
    long order_violations = 0;
    long phantoms = 0;
    std::vector<std::string> examples;
    [[nodiscard]] std::string describe() const {
        std::string s =
            "sent=" + std::to_string(sent) + " applied=" + std::to_string(applied_distinct) +
            " effects=" + std::to_string(effects) + " duplicates=" + std::to_string(duplicates) +
            " lost=" + std::to_string(lost) +
            " order_violations=" + std::to_string(order_violations) +
            " phantoms=" + std::to_string(phantoms);
        for (const auto& e : examples) s += "\n  " + e;
        return s;
    }
};

/// Reads the witness table and checks it against what was sent (Jepsen-style).
inline check_result check_history(pqxx::connection& c, const std::string& schema,
                                  const std::vector<sent_message>& sent) {
    check_result r;
    r.sent = static_cast<long>(sent.size());
    std::map<std::string, const sent_message*> by_id;
    for (const auto& s : sent) by_id[s.id] = &s;
    pqxx::read_transaction tx{c};
    std::map<std::string, long> count;
    std::map<std::string, std::vector<int>> first_order;  // key -> seqs in first-effect order
    for (const auto& row :
         tx.exec("SELECT message_id::text, key, seq FROM \"" + schema + "\".witness ORDER BY n")) {
        const auto id = row[0].as<std::string>();
        ++r.effects;
        if (by_id.find(id) == by_id.end()) {
            ++r.phantoms;
            if (r.examples.size() < 5) r.examples.push_back("phantom " + id);
            continue;
        }
        if (++count[id] == 1) {
            first_order[row[1].as<std::string>()].push_back(row[2].as<int>());
        } else {
            ++r.duplicates;
            if (r.examples.size() < 5) r.examples.push_back("duplicate " + id);
        }
    }
    r.applied_distinct = static_cast<long>(count.size());
    for (const auto& s : sent) {
        if (count.find(s.id) == count.end()) {
            ++r.lost;
            if (r.examples.size() < 5)
                r.examples.push_back("lost " + s.id + " " + s.key + ":" + std::to_string(s.seq));
        }
    }
    for (const auto& [key, seqs] : first_order) {
        for (std::size_t i = 1; i < seqs.size(); ++i) {
            if (seqs[i] < seqs[i - 1]) {
                ++r.order_violations;
                if (r.examples.size() < 5) {
                    r.examples.push_back("order " + key + ": " + std::to_string(seqs[i - 1]) +
                                         " before " + std::to_string(seqs[i]));
                }
            }
        }
    }
    return r;
}

inline long count_rows(pqxx::connection& c, const std::string& sql) {
    pqxx::read_transaction tx{c};
    return tx.exec(sql)[0][0].as<long>();
}

// GET of one key straight from the test Redis ("(nil)" when it does not exist).
inline std::string redis_get(const std::string& key) {
    const auto addr = ferry::test::redis_address();
    redisContext* c = redisConnect(addr.host.c_str(), addr.port);
    if (c == nullptr || c->err != 0) return "(no connection)";
    if (!addr.password.empty()) {
        freeReplyObject(redisCommand(c, "AUTH %s", addr.password.c_str()));
    }
    freeReplyObject(redisCommand(c, "SELECT %d", addr.db));
    auto* r = static_cast<redisReply*>(redisCommand(c, "GET %b", key.data(), key.size()));
    std::string v = r == nullptr                    ? "(no reply)"
                    : r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len)
                                                    : "(nil)";
    if (r != nullptr) freeReplyObject(r);
    redisFree(c);
    return v;
}

// Whether a message reads "done" in the test Redis: its key holds "done" itself, or names a run
// (ADR 0024) whose key `<prefix>:run:<token>` holds "done".
inline bool redis_done(const std::string& prefix, const std::string& group,
                       const std::string& message_id) {
    const auto v = redis_get(prefix + ":" + group + ":" + message_id);
    return v == "done" || (v.rfind("r:", 0) == 0 && redis_get(prefix + ":run:" + v) == "done");
}

inline bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (cond()) return true;
        std::this_thread::sleep_for(50ms);
    }
    return cond();
}

/// Fixture: one private Kafka per test binary; a schema, topic and group per test.
class ConsumerTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        ferry::test::dev_kafka_options o;
        o.brokers = 1;
        kafka() = std::make_unique<ferry::test::dev_kafka>(o);
    }
    static void TearDownTestSuite() { kafka().reset(); }
    static std::unique_ptr<ferry::test::dev_kafka>& kafka() {
        static std::unique_ptr<ferry::test::dev_kafka> k;
        return k;
    }

    void SetUp() override {
        _schema = std::make_unique<ferry::test::scoped_schema>("cons");
        _conn = std::make_unique<pqxx::connection>(ferry::test::pg_dsn());
        (void)ferry::outbox::migrate(*_conn, schema());
        prepare_run();
    }

    // What a test needs beside the schema's tables: the witness table, a fresh topic and group,
    // a producer. Fixtures that create the tables another way call it after they have.
    void prepare_run() {
        create_witness(*_conn, schema());
        _topic = ferry::test::unique_name("t");
        _group = ferry::test::unique_name("g");
        kafka()->create_topic(_topic, partitions);
        _producer = std::make_unique<test_producer>(kafka()->bootstrap());
        _witness = std::make_unique<witness_writer>(ferry::test::pg_dsn(), schema());
    }

    ferry::consumer::consumer_options options(ferry::consumer::dedup_mode mode) const {
        ferry::consumer::consumer_options o;
        o.brokers = kafka()->bootstrap();
        o.group = _group;
        o.dsn = ferry::test::pg_dsn();
        o.schema = schema();
        o.dedup = mode;
        o.redis_url = ferry::test::redis_url();
        o.redis_key_prefix = _topic;  // unique per test
        o.session_timeout = 6000ms;
        o.lanes = 4;
        o.retry.immediate_tries = 2;
        o.retry.immediate_delay = 5ms;
        o.retry.base_delay = 50ms;
        o.retry.max_delay = 200ms;
        o.retry.max_attempts = 5;
        o.retry_poll = 50ms;
        o.revoke_timeout = 5000ms;
        return o;
    }

    /// Subscribes the witness handler that fits `mode` (tx handler when the inbox is on).
    void subscribe_witness(ferry::consumer::consumer& c, ferry::consumer::dedup_mode mode,
                           const std::string& who,
                           std::function<void(const ferry::consumer::message&)> before = {},
                           ferry::consumer::topic_options topts = {}) {
        const bool inbox = mode == ferry::consumer::dedup_mode::inbox ||
                           mode == ferry::consumer::dedup_mode::redis_and_inbox;
        const auto s = schema();
        if (inbox) {
            c.subscribe(_topic,
                        ferry::consumer::tx_handler(
                            [s, who, before](const ferry::consumer::message& m, pqxx::work& tx) {
                                if (before) before(m);
                                write_witness(tx, s, m, who);
                            }),
                        topts);
        } else {
            auto* w = _witness.get();
            c.subscribe(
                _topic,
                ferry::consumer::handler([w, who, before](const ferry::consumer::message& m) {
                    if (before) before(m);
                    w->write(m, who);
                }),
                topts);
        }
    }

    long effects() {
        return count_rows(*_conn, "SELECT count(*) FROM \"" + schema() + "\".witness");
    }
    // Effects written by the app started with --name NAME (the witness rows carry it).
    long effects_by(const std::string& name) {
        pqxx::nontransaction tx{*_conn};
        return tx
            .exec_params1("SELECT count(*) FROM \"" + schema() + "\".witness WHERE consumer = $1",
                          name)[0]
            .as<long>();
    }
    long distinct_effects() {
        return count_rows(*_conn,
                          "SELECT count(DISTINCT message_id) FROM \"" + schema() + "\".witness");
    }

    const std::string& schema() const { return _schema->name(); }

    static constexpr int partitions = 6;
    std::unique_ptr<ferry::test::scoped_schema> _schema;
    std::unique_ptr<pqxx::connection> _conn;
    std::string _topic, _group;
    std::unique_ptr<test_producer> _producer;
    std::unique_ptr<witness_writer> _witness;
};

}  // namespace ferry_consumer_test
