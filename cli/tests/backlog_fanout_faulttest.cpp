// `ferryctl backlog fan-out` on the embedded Kafka (a private ferry-dev-kafka), killed with
// SIGKILL mid-forward and resumed, then --finish (issue 14):
//  - nothing lost: the records forwarded are exactly those the group had not consumed;
//  - no per-key reorder: every record of a key is in one target partition, and a consumer that
//    absorbs duplicates by ferry-message-id applies each key's records in source order;
//  - duplicates (what the killed run forwarded after its last checkpoint) are absorbed;
//  - every header survives; --finish moves the group's offsets past what was forwarded.
// The consumer here is the dedup rule Ferry's consumers apply (first ferry-message-id wins);
// the mock cluster proves the client side only (tools/ferry-dev-kafka/README.md).
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "ferry/test/child_process.hpp"
#include "ferry/test/dev_kafka.hpp"
#include "ferry/test/kafka_reader.hpp"
#include "ferry/test/run_command.hpp"
#include "ferry/test/unique_name.hpp"

namespace {

using namespace std::chrono_literals;

constexpr int k_records = 30000;
constexpr int k_keys = 300;
constexpr int k_source_partitions = 4;
constexpr int k_target_partitions = 16;

std::string conf_set(rd_kafka_conf_t* c, const std::map<std::string, std::string>& props) {
    char err[512];
    for (const auto& [k, v] : props) {
        if (rd_kafka_conf_set(c, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
            return err;
        }
    }
    return {};
}

rd_kafka_t* client(rd_kafka_type_t type, const std::map<std::string, std::string>& props) {
    rd_kafka_conf_t* c = rd_kafka_conf_new();
    EXPECT_EQ(conf_set(c, props), "");
    char err[512];
    rd_kafka_t* rk = rd_kafka_new(type, c, err, sizeof err);
    EXPECT_NE(rk, nullptr) << err;
    return rk;
}

struct applied {
    std::string id;
    std::string key;
    int seq = 0;
};

// The consumer's view of the target topic: per partition in offset order, the first record of
// each ferry-message-id is applied, later ones are absorbed. Returns the per-key order
// violations (a key's applied seq not increasing).
struct consumer_view {
    std::vector<applied> applied_records;
    long long duplicates = 0;
    long long order_violations = 0;
};

consumer_view consume(std::vector<ferry::test::kafka_record> records) {
    std::sort(records.begin(), records.end(), [](const auto& a, const auto& b) {
        return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
    });
    consumer_view v;
    std::set<std::string> seen;
    std::map<std::string, int> last_seq;
    for (const auto& r : records) {
        const auto id = r.header("ferry-message-id").value_or("");
        if (!seen.insert(id).second) {
            ++v.duplicates;
            continue;
        }
        const int seq = std::stoi(r.header("seq").value_or("-1"));
        const auto key = r.key.value_or("");
        const auto it = last_seq.find(key);
        if (it != last_seq.end() && seq <= it->second) ++v.order_violations;
        last_seq[key] = seq;
        v.applied_records.push_back({id, key, seq});
    }
    return v;
}

class BacklogFanoutTest : public ::testing::Test {
protected:
    void SetUp() override {
        _from = ferry::test::unique_name("orders");
        _to = _from + ".fanout";
        _group = ferry::test::unique_name("billing");
        ferry::test::dev_kafka_options o;
        // The mock has no CreateTopics: the target is created up front, as an operator would
        // on a cluster that forbids it (ferryctl then accepts it, having checked its size).
        o.topics = {_from + ":" + std::to_string(k_source_partitions),
                    _to + ":" + std::to_string(k_target_partitions), _from + ".small:4"};
        _kafka = std::make_unique<ferry::test::dev_kafka>(o);
        _config = "/tmp/" + ferry::test::unique_name("fanout") + ".yaml";
        std::ofstream(_config) << "kafka:\n  brokers: \"" << _kafka->bootstrap() << "\"\n";
    }
    void TearDown() override { std::remove(_config.c_str()); }

    // k_records records, k_keys keys, per-key seq in produce order, three headers each.
    void produce_source() {
        rd_kafka_t* p = client(RD_KAFKA_PRODUCER, {{"bootstrap.servers", _kafka->bootstrap()},
                                                   {"enable.idempotence", "true"},
                                                   {"linger.ms", "5"}});
        std::map<std::string, int> seq;
        for (int i = 0; i < k_records; ++i) {
            const std::string key = "k" + std::to_string(i % k_keys);
            const std::string id = "00000000-0000-7000-8000-" + std::to_string(100000000000 + i);
            const std::string s = std::to_string(seq[key]++);
            const std::string value = "payload-" + std::to_string(i);
            rd_kafka_headers_t* h = rd_kafka_headers_new(3);
            rd_kafka_header_add(h, "ferry-message-id", -1, id.data(), -1);
            rd_kafka_header_add(h, "seq", -1, s.data(), -1);
            rd_kafka_header_add(h, "traceparent", -1, ("tp-" + s).data(), -1);
            rd_kafka_resp_err_t e;
            while ((e = rd_kafka_producev(
                        p, RD_KAFKA_V_TOPIC(_from.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
                        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                        RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(p, 50);
            }
            ASSERT_EQ(e, RD_KAFKA_RESP_ERR_NO_ERROR);
        }
        ASSERT_EQ(rd_kafka_flush(p, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_destroy(p);
    }

    rd_kafka_t* group_client() {
        return client(RD_KAFKA_CONSUMER, {{"bootstrap.servers", _kafka->bootstrap()},
                                          {"group.id", _group},
                                          {"enable.auto.commit", "false"}});
    }

    std::vector<std::int64_t> high_watermarks() {
        rd_kafka_t* c = group_client();
        std::vector<std::int64_t> out;
        for (int p = 0; p < k_source_partitions; ++p) {
            std::int64_t lo = 0, hi = 0;
            EXPECT_EQ(rd_kafka_query_watermark_offsets(c, _from.c_str(), p, &lo, &hi, 10000),
                      RD_KAFKA_RESP_ERR_NO_ERROR);
            out.push_back(hi);
        }
        rd_kafka_destroy(c);
        return out;
    }

    // The group consumed the first quarter of every partition.
    std::vector<std::int64_t> commit_group_quarter(const std::vector<std::int64_t>& high) {
        rd_kafka_t* c = group_client();
        auto* l = rd_kafka_topic_partition_list_new(k_source_partitions);
        std::vector<std::int64_t> at;
        for (int p = 0; p < k_source_partitions; ++p) {
            at.push_back(high[static_cast<std::size_t>(p)] / 4);
            rd_kafka_topic_partition_list_add(l, _from.c_str(), p)->offset = at.back();
        }
        EXPECT_EQ(rd_kafka_commit(c, l, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_destroy(c);
        return at;
    }

    std::vector<std::int64_t> group_committed(const std::string& group = {}) {
        rd_kafka_t* c = client(RD_KAFKA_CONSUMER, {{"bootstrap.servers", _kafka->bootstrap()},
                                                   {"group.id", group.empty() ? _group : group},
                                                   {"enable.auto.commit", "false"}});
        auto* l = rd_kafka_topic_partition_list_new(k_source_partitions);
        for (int p = 0; p < k_source_partitions; ++p) {
            rd_kafka_topic_partition_list_add(l, _from.c_str(), p);
        }
        EXPECT_EQ(rd_kafka_committed(c, l, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
        std::vector<std::int64_t> out;
        for (int i = 0; i < l->cnt; ++i) out.push_back(l->elems[i].offset);
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_destroy(c);
        return out;
    }

    ferry::test::kafka_reader_options reader_options() const {
        ferry::test::kafka_reader_options o;
        o.brokers = _kafka->bootstrap();
        return o;
    }

    std::vector<std::string> fanout_args(const std::vector<std::string>& extra) {
        std::vector<std::string> a{"--config", _config,        "backlog",
                                   "fan-out",  "--group",      _group,
                                   "--from",   _from,          "--to",
                                   _to,        "--partitions", std::to_string(k_target_partitions),
                                   "--json"};
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    }

    std::string _from, _to, _group, _config;
    std::unique_ptr<ferry::test::dev_kafka> _kafka;
};

TEST_F(BacklogFanoutTest, KilledMidForwardResumesWithoutLossOrReorderThenFinishes) {
    produce_source();
    const auto high = high_watermarks();
    const auto consumed = commit_group_quarter(high);
    // What the group has not consumed, by source (partition, offset), read back from Kafka.
    ferry::test::kafka_reader source(_from, reader_options());
    const auto all = source.read(k_records, 60s);
    ASSERT_EQ(all.size(), static_cast<std::size_t>(k_records)) << source.last_error();
    std::map<std::string, ferry::test::kafka_record> expected;  // by ferry-message-id
    for (const auto& r : all) {
        if (r.offset >= consumed[static_cast<std::size_t>(r.partition)]) {
            expected.emplace(*r.header("ferry-message-id"), r);
        }
    }
    ASSERT_GT(expected.size(), static_cast<std::size_t>(k_records / 2));

    // Run 1: throttled so the kill lands mid-forward, after a checkpoint and with records
    // forwarded past it.
    const auto t0 = std::chrono::steady_clock::now();
    long long killed_forwarded = 0, killed_checkpointed = 0;  // as last printed
    {
        // Checkpoints once a second (the record count is out of reach), so the kill lands
        // between two checkpoints with records forwarded past the last one.
        ferry::test::child_process run(
            FERRY_CTL_PATH,
            fanout_args({"--max-rate", "4000", "--progress", "20ms", "--checkpoint", "1000000"}));
        const auto line = run.wait_for_line(
            [&](std::string_view l) {
                if (l.find("\"event\":\"progress\"") == std::string_view::npos) return false;
                const auto j = nlohmann::json::parse(std::string(l));
                killed_forwarded = j["forwarded"].get<long long>();
                killed_checkpointed = j["checkpointed"].get<long long>();
                return killed_checkpointed > 0 && killed_forwarded > killed_checkpointed + 200;
            },
            60s);
        ASSERT_TRUE(line) << "no progress line past a checkpoint";
        run.kill();
        const auto st = run.wait(10s);
        ASSERT_TRUE(st);
        ASSERT_FALSE(st->exited) << "ferryctl finished before the kill";
    }
    // Ground truth after the kill: what reached the target beyond the forwarder's durable
    // checkpoint will be forwarded again, and exactly that many duplicates must reach the
    // consumer.
    const auto checkpoint = group_committed("ferry-fanout." + _group + "." + _from + "." + _to);
    long long beyond_checkpoint = 0;
    long long in_target_at_kill = 0;
    {
        ferry::test::kafka_reader t(_to, reader_options());
        for (const auto& rec : t.read_all(1s, 60s)) {
            ++in_target_at_kill;
            const auto& src = expected.at(*rec.header("ferry-message-id"));
            const auto p = static_cast<std::size_t>(src.partition);
            const auto from = checkpoint[p] >= 0 ? checkpoint[p] : consumed[p];
            if (src.offset >= from) ++beyond_checkpoint;
        }
    }
    ASSERT_GT(in_target_at_kill, 0);
    // Run 2: resumes from the checkpoint, to the end.
    auto r = ferry::test::run_command(std::string(FERRY_CTL_PATH) + " --config " + _config +
                                      " backlog fan-out --group " + _group + " --from " + _from +
                                      " --to " + _to + " --partitions " +
                                      std::to_string(k_target_partitions) + " --json 2>&1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    nlohmann::json plan, done;
    for (const auto& l : {r.output}) {
        std::size_t at = 0;
        while (at < l.size()) {
            const auto nl = l.find('\n', at);
            const auto one = l.substr(at, nl - at);
            at = nl == std::string::npos ? l.size() : nl + 1;
            if (one.empty() || one[0] != '{') continue;
            auto j = nlohmann::json::parse(one);
            if (j["event"] == "plan") plan = j;
            if (j["event"] == "done") done = j;
        }
    }
    ASSERT_FALSE(plan.is_null()) << r.output;
    EXPECT_EQ(plan["target"], "existed");
    // The resumed run starts at the forwarder's checkpoint, not at the group's offsets.
    long long resumed_backlog = 0;
    for (std::size_t p = 0; p < high.size(); ++p) {
        resumed_backlog += high[p] - std::max(checkpoint[p], consumed[p]);
    }
    EXPECT_EQ(plan["backlog"].get<long long>(), resumed_backlog);
    EXPECT_LT(resumed_backlog, static_cast<long long>(expected.size()));
    // The group is still where it was: the fan-out never moves it without --finish.
    EXPECT_EQ(group_committed(), consumed);

    // Run 3: --finish moves the group past what was forwarded (nothing left to forward).
    r = ferry::test::run_command(std::string(FERRY_CTL_PATH) + " --config " + _config +
                                 " backlog fan-out --group " + _group + " --from " + _from +
                                 " --to " + _to + " --partitions " +
                                 std::to_string(k_target_partitions) + " --finish 2>&1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("now resumes"), std::string::npos) << r.output;
    EXPECT_EQ(group_committed(), high);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // The target, as a consumer of the group would read it.
    ferry::test::kafka_reader target(_to, reader_options());
    (void)target.read(expected.size(), 60s);
    const auto forwarded = target.read_all(1s, 60s);
    const auto view = consume(forwarded);

    // Nothing lost, nothing the group had consumed, nothing invented.
    std::set<std::string> got;
    for (const auto& a : view.applied_records) got.insert(a.id);
    std::set<std::string> want;
    for (const auto& [id, rec] : expected) want.insert(id);
    EXPECT_EQ(got, want);
    // Consistent key -> partition mapping, and every header and the payload kept.
    std::map<std::string, int> partition_of_key;
    for (const auto& rec : forwarded) {
        const auto key = rec.key.value_or("");
        const auto [it, fresh] = partition_of_key.emplace(key, rec.partition);
        EXPECT_EQ(it->second, rec.partition) << "key " << key << " in two partitions";
        EXPECT_EQ(rec.partition,
                  rd_kafka_msg_partitioner_murmur2(nullptr, key.data(), key.size(),
                                                   k_target_partitions, nullptr, nullptr));
        const auto& src = expected.at(*rec.header("ferry-message-id"));
        EXPECT_EQ(rec.value, src.value);
        EXPECT_EQ(rec.header("seq"), src.header("seq"));
        EXPECT_EQ(rec.header("traceparent"), src.header("traceparent"));
        EXPECT_EQ(rec.headers.size(), 3u);
    }
    EXPECT_EQ(view.order_violations, 0);
    // The killed run forwarded records after its last checkpoint; the resumed run forwarded
    // them again, once, and the consumer absorbed them.
    EXPECT_EQ(view.duplicates, beyond_checkpoint);
    EXPECT_EQ(static_cast<long long>(forwarded.size()),
              static_cast<long long>(want.size()) + beyond_checkpoint);

    std::printf(
        "fan-out figures: messages forwarded %zu (distinct %zu of %zu not consumed), %.1f s "
        "over 3 runs (killed with %lld in the target, %lld past the checkpoint), duplicates "
        "absorbed %lld, "
        "order violations %lld, keys %zu over %d partitions\n",
        forwarded.size(), got.size(), want.size(), seconds, in_target_at_kill, beyond_checkpoint,
        view.duplicates, view.order_violations, partition_of_key.size(), k_target_partitions);

    // Negative control: the same checker counts a swapped pair of one key as a violation.
    auto swapped = forwarded;
    std::sort(swapped.begin(), swapped.end(), [](const auto& a, const auto& b) {
        return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
    });
    for (std::size_t i = 0; i < swapped.size(); ++i) {
        for (std::size_t j = i + 1; j < swapped.size(); ++j) {
            if (swapped[j].key == swapped[i].key &&
                swapped[j].header("seq") != swapped[i].header("seq")) {
                std::swap(swapped[i].offset, swapped[j].offset);
                i = swapped.size();
                break;
            }
        }
    }
    EXPECT_GT(consume(swapped).order_violations, 0);
}

// SIGTERM (or Ctrl-C) mid-forward: the run acknowledges and checkpoints what it produced, exits
// 3, and the rerun resumes exactly there: no duplicates, nothing lost.
TEST_F(BacklogFanoutTest, StopsCleanlyOnSigtermAndResumesWithoutDuplicates) {
    produce_source();
    const auto high = high_watermarks();
    const auto consumed = commit_group_quarter(high);
    long long want = 0;
    for (std::size_t p = 0; p < high.size(); ++p) want += high[p] - consumed[p];
    {
        ferry::test::child_process run(
            FERRY_CTL_PATH,
            fanout_args({"--max-rate", "4000", "--progress", "20ms", "--checkpoint", "1000000"}));
        const auto line = run.wait_for_line(
            [](std::string_view l) {
                if (l.find("\"event\":\"progress\"") == std::string_view::npos) return false;
                return nlohmann::json::parse(std::string(l))["forwarded"].get<long long>() > 500;
            },
            60s);
        ASSERT_TRUE(line);
        run.terminate();
        const auto st = run.wait(30s);
        ASSERT_TRUE(st);
        EXPECT_TRUE(st->exited && st->code == 3) << st->describe();
        const auto stopped = run.wait_for_line(
            [](std::string_view l) {
                return l.find("\"event\":\"stopped\"") != std::string_view::npos;
            },
            5s);
        ASSERT_TRUE(stopped);
        const auto j = nlohmann::json::parse(*stopped);
        EXPECT_EQ(j["forwarded"], j["checkpointed"]) << *stopped;
    }
    auto r = ferry::test::run_command(std::string(FERRY_CTL_PATH) + " --config " + _config +
                                      " backlog fan-out --group " + _group + " --from " + _from +
                                      " --to " + _to + " --partitions " +
                                      std::to_string(k_target_partitions) + " 2>&1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ferry::test::kafka_reader target(_to, reader_options());
    (void)target.read(static_cast<std::size_t>(want), 60s);
    const auto view = consume(target.read_all(1s, 60s));
    EXPECT_EQ(static_cast<long long>(view.applied_records.size()), want);
    EXPECT_EQ(view.duplicates, 0);
    EXPECT_EQ(view.order_violations, 0);
}

TEST_F(BacklogFanoutTest, RefusesATargetWithAnotherPartitionCountAndBadArguments) {
    const std::string ctl = std::string(FERRY_CTL_PATH) + " --config " + _config +
                            " backlog fan-out --group " + _group + " --from " + _from;
    // The existing small topic has 4 partitions: keys would map elsewhere.
    auto r = ferry::test::run_command(ctl + " --to " + _from + ".small --partitions 16 2>&1");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("exists with 4 partitions, not --partitions 16"), std::string::npos)
        << r.output;
    r = ferry::test::run_command(ctl + " --to " + _from + " --partitions 16 2>&1");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--to must differ from --from"), std::string::npos) << r.output;
    r = ferry::test::run_command(ctl + " --to 'bad topic' --partitions 16 2>&1");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("is not a topic name"), std::string::npos) << r.output;
    r = ferry::test::run_command(ctl + " --to " + _to + " --partitions 0 2>&1");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--partitions must be"), std::string::npos) << r.output;
}

}  // namespace
