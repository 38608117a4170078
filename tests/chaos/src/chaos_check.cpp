// chaos-check: waits for a campaign run to settle, gathers its history from ground truth and
// checks it (history.hpp).
//
//   chaos-check --dsn DSN --brokers B --topic KAFKA_TOPIC --group G... [--schema ferry]
//               [--history FILE...] [--settle-timeout S] [--json OUT] [--label TEXT]
//
// Settled means: the outbox is empty (with relay.source: snapshot, which keeps published rows:
// no row its positions call unfinished), no half message is pending or parked, no retry row of the
// groups is left, every committed message has a witness row or a dead letter in every group,
// and every group has committed its offsets up to the end of every partition (lag 0: every
// copy Kafka holds, duplicates included, went through the group). The committed set is the
// database's: chaos.sent (written in the enqueue's transaction) plus half messages in state
// committed. Kafka is read from the beginning of every partition without joining a group. History
// files are the producers' (`ok|rb|info ID`). stdout: one line "chaos-check: <label> lost=..
// duplicate_effects=.. ..."; exit 0 when clean, 1 when an anomaly was found, 2 on a usage or
// infrastructure error.
#include <librdkafka/rdkafka.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <thread>

#include "ferry/test/kafka_reader.hpp"
#include "history.hpp"

namespace {

// Sum over the topic's partitions of (high watermark - the group's committed offset): what the
// group has not yet applied and committed. Reads committed offsets with a group.id but never
// joins the group. -1 when it cannot be determined (then the run is not considered settled).
long long group_lag(const std::string& brokers, const std::string& topic,
                    const std::string& group) {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (rk == nullptr) return -1;
    long long lag = -1;
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk, 0, t, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1 && md->topics[0].partition_cnt > 0) {
        const int n = md->topics[0].partition_cnt;
        rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(n);
        for (int p = 0; p < n; ++p) rd_kafka_topic_partition_list_add(parts, topic.c_str(), p);
        if (rd_kafka_committed(rk, parts, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            lag = 0;
            for (int i = 0; i < parts->cnt && lag >= 0; ++i) {
                int64_t low = 0, high = 0;
                if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), parts->elems[i].partition,
                                                     &low, &high,
                                                     10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                    lag = -1;
                    break;
                }
                const int64_t committed = parts->elems[i].offset < 0 ? low : parts->elems[i].offset;
                lag += std::max<int64_t>(0, high - committed);
            }
        }
        rd_kafka_topic_partition_list_destroy(parts);
    }
    if (md != nullptr) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    rd_kafka_destroy(rk);
    return lag;
}

std::string groups_array(pqxx::connection& c, const std::vector<std::string>& groups) {
    std::string s = "ARRAY[";
    for (std::size_t i = 0; i < groups.size(); ++i) {
        s += (i ? "," : "") + c.quote(groups[i]);
    }
    return s + "]::text[]";
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Ferry chaos campaign history checker"};
    std::string dsn, schema = "ferry", brokers, topic, json_path, label = "run";
    std::vector<std::string> groups, histories;
    int settle_s = 120;
    app.add_option("--dsn", dsn, "database DSN (direct, not through the fault proxy)")->required();
    app.add_option("--schema", schema, "Ferry schema");
    app.add_option("--brokers", brokers, "Kafka bootstrap servers")->required();
    app.add_option("--topic", topic, "Kafka topic")->required();
    app.add_option("--group", groups, "consumer group that must apply every message");
    app.add_option("--history", histories, "producer history file");
    app.add_option("--settle-timeout", settle_s, "seconds to wait for the run to settle");
    app.add_option("--json", json_path, "write the report as JSON");
    app.add_option("--label", label, "names the run in the output");
    CLI11_PARSE(app, argc, argv);

    try {
        ferry::chaos::history h;
        h.groups = groups;
        pqxx::connection conn{dsn};
        const auto q = conn.quote_name(schema);
        const auto garr = groups_array(conn, groups);
        const std::string committed_sql =
            "SELECT message_id FROM chaos.sent UNION ALL SELECT message_id FROM " + q +
            ".half_message WHERE state = 'committed'";
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(settle_s);
        std::string last_state;
        const auto settle_started = std::chrono::steady_clock::now();
        for (;;) {
            pqxx::read_transaction tx{conn};
            const auto r = tx.exec1(
                "WITH c AS (" + committed_sql + ") SELECT (SELECT count(*) FROM " + q +
                ".outbox o WHERE NOT " + q +
                ".snapshot_finished(o.txid, o.id, o.shard)), "
                "(SELECT count(*) FROM " +
                q + ".half_message WHERE state IN ('pending', 'parked')), (SELECT count(*) FROM " +
                q + ".retry WHERE group_id = ANY(" + garr + ")), (SELECT count(*) FROM c, unnest(" +
                garr +
                ") g WHERE NOT EXISTS (SELECT 1 FROM chaos.witness w WHERE w.consumer_group = g "
                "AND w.message_id = c.message_id) AND NOT EXISTS (SELECT 1 FROM " +
                q + ".dead_letter d WHERE d.group_id = g AND d.message_id = c.message_id))");
            tx.commit();
            std::ostringstream s;
            s << "outbox=" << r[0].as<long>() << " half_undecided=" << r[1].as<long>()
              << " retry=" << r[2].as<long>() << " not_applied=" << r[3].as<long>();
            bool settled = r[0].as<long>() == 0 && r[1].as<long>() == 0 && r[2].as<long>() == 0 &&
                           r[3].as<long>() == 0;
            // Every copy in Kafka (duplicates too) must have been applied and committed by
            // every group, or a late duplicate effect could escape the check.
            for (const auto& g : groups) {
                if (!settled) break;
                const auto lag = group_lag(brokers, topic, g);
                s << " lag[" << g << "]=" << lag;
                settled = lag == 0;
            }
            last_state = s.str();
            if (settled) break;
            if (std::chrono::steady_clock::now() >= deadline) {
                h.settled = false;
                h.unsettled_detail =
                    "not settled after " + std::to_string(settle_s) + " s: " + last_state;
                break;
            }
            std::this_thread::sleep_for(std::chrono::seconds(1));
        }
        const auto settle_seconds = std::chrono::duration_cast<std::chrono::seconds>(
                                        std::chrono::steady_clock::now() - settle_started)
                                        .count();

        ferry::test::kafka_reader_options ko;
        ko.brokers = brokers;
        ferry::test::kafka_reader reader(topic, ko);
        const auto& records = reader.read_all(std::chrono::seconds(3), std::chrono::seconds(120));
        std::size_t no_id = 0;
        for (const auto& rec : records) {
            const auto id = rec.header("ferry-message-id");
            if (!id) {
                ++no_id;
                continue;
            }
            h.kafka.push_back({*id, rec.key.value_or(""), rec.partition, rec.offset});
        }

        // Kafka first, then (once every group has gone through every copy read above) the
        // database: a copy that arrived late cannot have its effect missed by the check.
        for (bool caught_up = false; !caught_up;) {
            caught_up = true;
            for (const auto& g : groups) caught_up = caught_up && group_lag(brokers, topic, g) == 0;
            if (caught_up || std::chrono::steady_clock::now() >= deadline) break;
            std::this_thread::sleep_for(std::chrono::seconds(1));
        }

        {
            pqxx::read_transaction tx{conn};
            for (const auto& r :
                 tx.exec("SELECT message_id::text, key, seq, via FROM chaos.sent")) {
                h.committed.push_back({r[0].as<std::string>(), r[1].as<std::string>(),
                                       r[2].as<long long>(), r[3].as<std::string>()});
            }
            for (const auto& r :
                 tx.exec("SELECT message_id::text, key, state FROM " + q + ".half_message")) {
                if (r[2].as<std::string>() == "committed") {
                    h.committed.push_back(
                        {r[0].as<std::string>(), r[1].as<std::string>(), -1, "half"});
                } else if (r[2].as<std::string>() == "rolled_back") {
                    h.rolled_back.insert(r[0].as<std::string>());
                }
            }
            for (const auto& r :
                 tx.exec("SELECT consumer_group, message_id::text, key, seq, id FROM "
                         "chaos.witness")) {
                h.effects.push_back({r[0].as<std::string>(), r[1].as<std::string>(),
                                     r[2].as<std::string>(), r[3].as<long long>(),
                                     r[4].as<long long>()});
            }
            for (const auto& r : tx.exec("SELECT group_id, message_id::text FROM " + q +
                                         ".dead_letter WHERE message_id IS NOT NULL")) {
                h.dead_letters[r[0].as<std::string>()].insert(r[1].as<std::string>());
            }
            tx.commit();
        }
        for (const auto& path : histories) {
            std::ifstream in(path);
            if (!in) throw std::runtime_error("cannot read history file " + path);
            std::string what, id;
            while (in >> what >> id) {
                if (what == "ok") h.acked.insert(id);
                if (what == "rb") h.rolled_back.insert(id);
            }
        }
        const auto rep = ferry::chaos::check(h);
        std::cout << "chaos-check: " << label << " " << rep.summary()
                  << " kafka_records=" << records.size() << " settle_s=" << settle_seconds
                  << std::endl;
        for (const auto& [kind, examples] : rep.examples) {
            for (const auto& e : examples) std::cout << "  " << kind << ": " << e << "\n";
        }
        if (!json_path.empty()) {
            auto j = rep.to_json();
            j["label"] = label;
            j["kafka_records"] = records.size();
            j["kafka_records_without_id"] = no_id;
            j["settle_seconds"] = settle_seconds;
            j["final_state"] = last_state;
            j["groups"] = groups;
            std::ofstream out(json_path);
            out << j.dump(2) << "\n";
        }
        return rep.n.clean() ? 0 : 1;
    } catch (const std::exception& e) {
        std::cerr << "chaos-check: " << e.what() << "\n";
        return 2;
    }
}
