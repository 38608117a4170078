// ferryctl backlog fan-out: drains a consumer group's backlog through a temporary topic with
// more partitions (docs/operations.md, "Backlog fan-out").
//
//   1. creates the target topic with --partitions (or accepts an existing one with exactly
//      that many partitions);
//   2. forwards every record of the source topic that the group has not consumed (from its
//      committed offsets up to the high watermarks read when the run starts) to the target,
//      keeping key, value, timestamp and every header (ferry-message-id included, so the
//      consumers' dedup absorbs a record forwarded twice); a keyed record goes to the target
//      partition murmur2(key) picks, so one key's records stay in one partition in source order;
//   3. checkpoints durably: after every --checkpoint records it waits for Kafka to acknowledge
//      everything produced, then commits the forwarder group's offsets on the source (the
//      forwarder group is "ferry-fanout.<group>.<from>.<to>"). A run killed at any point resumes
//      from the last checkpoint; what it had forwarded after it is forwarded again (duplicates,
//      never a gap);
//   4. with --finish, after forwarding the rest, commits the group's own offsets on the source
//      past everything forwarded, so the group resumes on the source after the forwarded
//      records. Kafka refuses that while the group has live members: stop them first.
// Progress goes to stdout every --progress interval (one JSON object per line with --json).
// SIGINT or SIGTERM stops it cleanly: what was produced is acknowledged and checkpointed, and it
// exits 3; a rerun resumes with no duplicates.
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "fanout.hpp"
#include "ferry/common/error.hpp"

namespace ferry::cli {
namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// SIGINT/SIGTERM: stop reading, checkpoint what was forwarded, exit 3 (a rerun resumes).
volatile std::sig_atomic_t g_stop = 0;
void on_stop_signal(int) { g_stop = 1; }

struct fanout_args {
    std::string group;
    std::string from;
    std::string to;
    int partitions = 0;
    int replication = -1;
    bool finish = false;
    long long checkpoint = 1000;
    long long max_rate = 0;  // records per second; 0: as fast as Kafka takes them
    std::string progress = "1s";
    bool json = false;
};

[[noreturn]] void usage(const std::string& message, const std::string& field) {
    throw ferry::error(error_kind::permanent, "backlog.usage", message, field);
}

[[noreturn]] void kafka_failed(const std::string& what, const std::string& cause,
                               error_kind kind = error_kind::retryable) {
    throw ferry::error(kind, "backlog.kafka", what + ": " + cause);
}

bool valid_topic(const std::string& t) {
    if (t.empty() || t.size() > 249 || t == "." || t == "..") return false;
    return std::all_of(t.begin(), t.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    });
}

struct rk_deleter {
    void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using rk_ptr = std::unique_ptr<rd_kafka_t, rk_deleter>;
struct tpl_deleter {
    void operator()(rd_kafka_topic_partition_list_t* l) const {
        rd_kafka_topic_partition_list_destroy(l);
    }
};
using tpl_ptr = std::unique_ptr<rd_kafka_topic_partition_list_t, tpl_deleter>;

// Delivery reports of the forwarder's producer (called from poll/flush on this thread).
struct deliveries {
    long long acked = 0;
    long long failed = 0;
    std::string first_error;
};

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* d = static_cast<deliveries*>(opaque);
    if (m->err) {
        if (d->failed++ == 0) d->first_error = rd_kafka_err2str(m->err);
    } else {
        ++d->acked;
    }
}

rk_ptr make_client(rd_kafka_type_t type, const ferry::config::ferry_config& cfg,
                   const std::map<std::string, std::string>& extra, deliveries* dr = nullptr) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char err[512];
    std::map<std::string, std::string> props = cfg.kafka.properties;
    props["bootstrap.servers"] = cfg.kafka.brokers;
    for (const auto& [k, v] : extra) props[k] = v;
    for (const auto& [k, v] : props) {
        if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            // The value may be a secret (sasl.password): name the property only.
            usage("Kafka property " + k + ": " + err, "kafka.properties." + k);
        }
    }
    if (dr != nullptr) {
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rd_kafka_conf_set_opaque(conf, dr);
    }
    rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
    if (rk == nullptr) {
        rd_kafka_conf_destroy(conf);
        kafka_failed("cannot create a Kafka client", err, error_kind::permanent);
    }
    return rk_ptr(rk);
}

// Partition count of `topic`, or 0 when the cluster does not have it. Lists every topic rather
// than asking for this one: a request for one topic makes brokers with auto-creation on create
// it (with their default partition count).
int partition_count(rd_kafka_t* rk, const std::string& topic) {
    const rd_kafka_metadata_t* md = nullptr;
    const auto e = rd_kafka_metadata(rk, 1, nullptr, &md, 10000);
    if (e) kafka_failed("cannot read the cluster's topics", rd_kafka_err2str(e));
    int n = 0;
    for (int i = 0; i < md->topic_cnt; ++i) {
        if (topic == md->topics[i].topic && md->topics[i].err == 0) n = md->topics[i].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    return n;
}

// Creates `topic` with `partitions` partitions, or accepts it when it exists with exactly that
// many. Returns "created" or "existed".
std::string ensure_target(rd_kafka_t* rk, const std::string& topic, int partitions,
                          int replication) {
    std::string create_error;
    const int existing = partition_count(rk, topic);
    if (existing == 0) {
        char err[512];
        rd_kafka_NewTopic_t* nt =
            rd_kafka_NewTopic_new(topic.c_str(), partitions, replication, err, sizeof err);
        if (nt == nullptr) usage(std::string("--to: ") + err, "--to");
        rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
        rd_kafka_AdminOptions_t* opts =
            rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        (void)rd_kafka_AdminOptions_set_operation_timeout(opts, 15000, err, sizeof err);
        (void)rd_kafka_AdminOptions_set_request_timeout(opts, 20000, err, sizeof err);
        rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
        rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
        if (ev == nullptr) {
            create_error = "no answer within 30 s";
        } else if (rd_kafka_event_error(ev)) {
            create_error = rd_kafka_event_error_string(ev);
        } else {
            size_t n = 0;
            const auto* res =
                rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
            if (n == 1 && rd_kafka_topic_result_error(res[0]) != RD_KAFKA_RESP_ERR_NO_ERROR &&
                rd_kafka_topic_result_error(res[0]) != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                create_error = rd_kafka_err2str(rd_kafka_topic_result_error(res[0]));
                if (const char* s = rd_kafka_topic_result_error_string(res[0])) {
                    create_error += std::string(" (") + s + ")";
                }
            }
        }
        if (ev != nullptr) rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(opts);
        rd_kafka_queue_destroy(q);
        rd_kafka_NewTopic_destroy(nt);
    }
    // Metadata may lag a creation for a moment.
    int have = existing;
    for (int i = 0; i < 50 && have == 0; ++i) {
        have = partition_count(rk, topic);
        if (have == 0) std::this_thread::sleep_for(100ms);
    }
    if (have == 0) {
        kafka_failed("cannot create topic " + topic,
                     create_error.empty() ? "it does not appear in the metadata" : create_error,
                     error_kind::permanent);
    }
    if (have != partitions) {
        usage("--to: topic " + topic + " exists with " + std::to_string(have) +
                  " partitions, not --partitions " + std::to_string(partitions) +
                  " (keys would map to other partitions): pick another name",
              "--to");
    }
    return existing == 0 && create_error.empty() ? "created" : "existed";
}

// Committed offsets of the consumer `rk`'s group on `topic` partitions 0..n-1.
std::vector<std::int64_t> committed(rd_kafka_t* rk, const std::string& topic, int n,
                                    const std::string& whose) {
    tpl_ptr l(rd_kafka_topic_partition_list_new(n));
    for (int p = 0; p < n; ++p) rd_kafka_topic_partition_list_add(l.get(), topic.c_str(), p);
    const auto e = rd_kafka_committed(rk, l.get(), 15000);
    if (e) kafka_failed("cannot read the committed offsets of " + whose, rd_kafka_err2str(e));
    std::vector<std::int64_t> out(static_cast<std::size_t>(n), fanout::k_no_offset);
    for (int i = 0; i < l->cnt; ++i) {
        const auto& tp = l->elems[i];
        if (tp.err) {
            kafka_failed("cannot read the committed offsets of " + whose, rd_kafka_err2str(tp.err));
        }
        out[static_cast<std::size_t>(tp.partition)] = tp.offset;
    }
    return out;
}

void commit(rd_kafka_t* rk, const std::string& topic, const std::vector<std::int64_t>& offsets,
            const std::string& whose) {
    tpl_ptr l(rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size())));
    for (std::size_t p = 0; p < offsets.size(); ++p) {
        if (offsets[p] < 0) continue;
        rd_kafka_topic_partition_list_add(l.get(), topic.c_str(), static_cast<std::int32_t>(p))
            ->offset = offsets[p];
    }
    if (l->cnt == 0) return;
    auto e = rd_kafka_commit(rk, l.get(), 0);
    for (int i = 0; !e && i < l->cnt; ++i) e = l->elems[i].err;
    if (!e) return;
    if (e == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID || e == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
        e == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS) {
        kafka_failed("cannot commit the offsets of " + whose,
                     std::string(rd_kafka_err2str(e)) +
                         ": the group has live members; stop its consumers, then run again",
                     error_kind::permanent);
    }
    kafka_failed("cannot commit the offsets of " + whose, rd_kafka_err2str(e));
}

std::chrono::milliseconds progress_interval(const fanout_args& a) {
    const auto d = ferry::config::parse_duration(a.progress);
    if (!d || d->count() < 10)
        usage("--progress must be a duration of at least 10ms", "--progress");
    return *d;
}

class forwarder {
public:
    forwarder(const fanout_args& a, const ferry::config::ferry_config& cfg)
        : _a(a), _cfg(cfg), _started(clock::now()) {}

    int run() {
        validate();
        const auto every = progress_interval(_a);
        _producer = make_client(RD_KAFKA_PRODUCER, _cfg,
                                {{"enable.idempotence", "true"},
                                 {"acks", "all"},
                                 {"linger.ms", "5"},
                                 {"compression.type", _cfg.kafka.compression}},
                                &_dr);
        const auto target = ensure_target(_producer.get(), _a.to, _a.partitions, _a.replication);
        const int sources = partition_count(_producer.get(), _a.from);
        if (sources == 0) usage("--from: topic " + _a.from + " does not exist", "--from");

        const auto fgroup = fanout::forwarder_group(_a.group, _a.from, _a.to);
        _group_client = make_client(RD_KAFKA_CONSUMER, _cfg,
                                    {{"group.id", _a.group}, {"enable.auto.commit", "false"}});
        _source = make_client(RD_KAFKA_CONSUMER, _cfg,
                              {{"group.id", fgroup},
                               {"enable.auto.commit", "false"},
                               {"enable.auto.offset.store", "false"},
                               {"enable.partition.eof", "true"},
                               {"isolation.level", "read_committed"},
                               {"auto.offset.reset", "earliest"}});
        const auto g = committed(_group_client.get(), _a.from, sources, "group " + _a.group);
        const auto f = committed(_source.get(), _a.from, sources, "forwarder group " + fgroup);
        long long backlog = 0;
        for (int p = 0; p < sources; ++p) {
            fanout::partition_plan pp;
            pp.partition = p;
            pp.group_offset = g[static_cast<std::size_t>(p)];
            pp.forwarder_offset = f[static_cast<std::size_t>(p)];
            const auto e = rd_kafka_query_watermark_offsets(_source.get(), _a.from.c_str(), p,
                                                            &pp.low, &pp.high, 15000);
            if (e) kafka_failed("cannot read the watermarks of " + _a.from, rd_kafka_err2str(e));
            fanout::plan_start(pp);
            backlog += pp.backlog();
            _plan.push_back(pp);
        }
        _pos.resize(_plan.size());
        _checkpointed.resize(_plan.size());
        for (const auto& pp : _plan) {
            _pos[static_cast<std::size_t>(pp.partition)] = pp.start;
            _checkpointed[static_cast<std::size_t>(pp.partition)] = pp.start;
        }
        _backlog = backlog;
        print_plan(target, fgroup);

        std::signal(SIGINT, on_stop_signal);
        std::signal(SIGTERM, on_stop_signal);
        forward(every);
        if (g_stop != 0) {
            print_progress("stopped");
            return 3;
        }

        if (_a.finish) finish(g);
        print_done();
        return 0;
    }

private:
    void validate() const {
        if (_a.group.empty()) usage("--group must name the consumer group", "--group");
        if (!valid_topic(_a.from))
            usage("--from: \"" + _a.from + "\" is not a topic name", "--from");
        if (!valid_topic(_a.to)) usage("--to: \"" + _a.to + "\" is not a topic name", "--to");
        if (_a.from == _a.to) usage("--to must differ from --from", "--to");
        if (_a.partitions < 1 || _a.partitions > 100000) {
            usage("--partitions must be 1..100000", "--partitions");
        }
        if (_a.checkpoint < 1) usage("--checkpoint must be at least 1", "--checkpoint");
        if (_a.max_rate < 0) usage("--max-rate must not be negative", "--max-rate");
    }

    void forward(std::chrono::milliseconds every) {
        tpl_ptr assign(rd_kafka_topic_partition_list_new(static_cast<int>(_plan.size())));
        std::size_t open = 0;
        std::vector<bool> done(_plan.size(), false);
        for (const auto& pp : _plan) {
            if (pp.backlog() == 0) {
                done[static_cast<std::size_t>(pp.partition)] = true;
                continue;
            }
            rd_kafka_topic_partition_list_add(assign.get(), _a.from.c_str(), pp.partition)->offset =
                pp.start;
            ++open;
        }
        if (open == 0) return;
        if (const auto e = rd_kafka_assign(_source.get(), assign.get())) {
            kafka_failed("cannot read " + _a.from, rd_kafka_err2str(e));
        }
        _forward_started = clock::now();
        auto next_progress = clock::now() + every;
        auto next_checkpoint = clock::now() + 1s;
        long long since_checkpoint = 0;
        while (open > 0 && g_stop == 0) {
            rd_kafka_message_t* m = rd_kafka_consumer_poll(_source.get(), 100);
            rd_kafka_poll(_producer.get(), 0);
            if (m != nullptr) {
                const auto p = static_cast<std::size_t>(m->partition);
                const auto& pp = _plan[p];
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                    // The end of what can be read now (the last stable offset under
                    // read_committed): nothing more of this partition belongs to this run.
                    _pos[p] = std::max(_pos[p], std::min<std::int64_t>(m->offset, pp.high));
                } else if (m->err) {
                    const std::string why = rd_kafka_message_errstr(m);
                    rd_kafka_message_destroy(m);
                    kafka_failed("cannot read " + _a.from, why);
                } else if (!done[p] && m->offset < pp.high) {
                    produce(*m);
                    _pos[p] = m->offset + 1;
                    ++since_checkpoint;
                    throttle();
                }
                if (!done[p] &&
                    (_pos[p] >= pp.high || m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)) {
                    done[p] = true;
                    --open;
                    tpl_ptr one(rd_kafka_topic_partition_list_new(1));
                    rd_kafka_topic_partition_list_add(one.get(), _a.from.c_str(), m->partition);
                    (void)rd_kafka_pause_partitions(_source.get(), one.get());
                }
                rd_kafka_message_destroy(m);
            }
            if (since_checkpoint >= _a.checkpoint ||
                (since_checkpoint > 0 && clock::now() >= next_checkpoint)) {
                checkpoint();
                since_checkpoint = 0;
                next_checkpoint = clock::now() + 1s;
            }
            if (clock::now() >= next_progress) {
                print_progress("progress");
                next_progress = clock::now() + every;
            }
        }
        (void)rd_kafka_assign(_source.get(), nullptr);
        checkpoint();
    }

    // --max-rate: spare a cluster that is already struggling with the backlog.
    void throttle() {
        if (_a.max_rate == 0) return;
        const auto due =
            _forward_started + std::chrono::microseconds(_produced * 1000000 / _a.max_rate);
        const auto now = clock::now();
        if (due > now) std::this_thread::sleep_for(std::min<clock::duration>(due - now, 100ms));
    }

    void produce(const rd_kafka_message_t& m) {
        std::optional<std::string> key;
        if (m.key != nullptr) key.emplace(static_cast<const char*>(m.key), m.key_len);
        const std::int32_t to = fanout::target_partition(key, m.partition, _a.partitions);
        rd_kafka_headers_t* in = nullptr;
        rd_kafka_headers_t* hdrs = rd_kafka_message_headers(&m, &in) == RD_KAFKA_RESP_ERR_NO_ERROR
                                       ? rd_kafka_headers_copy(in)
                                       : rd_kafka_headers_new(0);
        rd_kafka_timestamp_type_t tstype = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        std::int64_t ts = rd_kafka_message_timestamp(&m, &tstype);
        if (tstype != RD_KAFKA_TIMESTAMP_CREATE_TIME) ts = 0;
        for (;;) {
            const auto e = rd_kafka_producev(
                _producer.get(), RD_KAFKA_V_TOPIC(_a.to.c_str()), RD_KAFKA_V_PARTITION(to),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(m.key, m.key_len),
                RD_KAFKA_V_VALUE(m.payload, m.len), RD_KAFKA_V_HEADERS(hdrs),
                RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_END);
            if (!e) break;
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(_producer.get(), 50);
                continue;
            }
            rd_kafka_headers_destroy(hdrs);
            kafka_failed("cannot produce to " + _a.to, rd_kafka_err2str(e));
        }
        ++_produced;
    }

    // Everything produced is acknowledged, then the forwarder's offsets are committed: a kill
    // before the commit forwards the same records again on resume (duplicates, never a gap).
    void checkpoint() {
        const auto timeout = static_cast<int>(
            std::max<long long>(_cfg.relay.delivery_timeout.count() + 5000, 10000));
        const auto e = rd_kafka_flush(_producer.get(), timeout);
        if (_dr.failed > 0) {
            kafka_failed("Kafka refused " + std::to_string(_dr.failed) + " records forwarded to " +
                             _a.to +
                             " since the last checkpoint (they are forwarded again on "
                             "the next run)",
                         _dr.first_error);
        }
        if (e) {
            kafka_failed("records forwarded to " + _a.to +
                             " are not acknowledged (the next run "
                             "forwards them again)",
                         rd_kafka_err2str(e));
        }
        commit(_source.get(), _a.from, _pos,
               "forwarder group " + fanout::forwarder_group(_a.group, _a.from, _a.to));
        _checkpointed = _pos;
        _checkpointed_records = _dr.acked;
    }

    void finish(const std::vector<std::int64_t>& group_offsets) {
        // Never move the group backwards.
        std::vector<std::int64_t> to(_pos.size(), fanout::k_no_offset);
        for (std::size_t p = 0; p < _pos.size(); ++p) {
            if (group_offsets[p] < _pos[p]) to[p] = _pos[p];
        }
        commit(_group_client.get(), _a.from, to, "group " + _a.group);
        const auto now = committed(_group_client.get(), _a.from, static_cast<int>(_pos.size()),
                                   "group " + _a.group);
        for (std::size_t p = 0; p < _pos.size(); ++p) {
            if (now[p] < _pos[p]) {
                kafka_failed(
                    "group " + _a.group + " on " + _a.from + " partition " + std::to_string(p),
                    "committed offset " + std::to_string(now[p]) + " is still below " +
                        std::to_string(_pos[p]) + " after --finish");
            }
        }
        _finished = true;
    }

    [[nodiscard]] double seconds() const {
        return std::chrono::duration<double>(clock::now() - _started).count();
    }

    void print_plan(const std::string& target, const std::string& fgroup) const {
        if (_a.json) {
            auto parts = nlohmann::json::array();
            for (const auto& pp : _plan) {
                parts.push_back({{"partition", pp.partition},
                                 {"group_offset", pp.group_offset},
                                 {"forwarder_offset", pp.forwarder_offset},
                                 {"start", pp.start},
                                 {"end", pp.high}});
            }
            std::cout << nlohmann::json{{"event", "plan"},
                                        {"group", _a.group},
                                        {"from", _a.from},
                                        {"to", _a.to},
                                        {"partitions", _a.partitions},
                                        {"target", target},
                                        {"forwarder_group", fgroup},
                                        {"backlog", _backlog},
                                        {"source_partitions", parts}}
                             .dump()
                      << std::endl;
            return;
        }
        std::cout << "fan-out of group " << _a.group << ": " << _a.from << " -> " << _a.to << " ("
                  << _a.partitions << " partitions, " << target << "), " << _backlog
                  << " records to forward, checkpoints in group " << fgroup << std::endl;
    }

    void print_progress(const char* event) const {
        const double s = seconds();
        if (_a.json) {
            std::cout << nlohmann::json{{"event", event},
                                        {"forwarded", _dr.acked},
                                        {"produced", _produced},
                                        {"checkpointed", _checkpointed_records},
                                        {"backlog", _backlog},
                                        {"seconds", s}}
                             .dump()
                      << std::endl;
            return;
        }
        std::printf("%s forwarded=%lld checkpointed=%lld backlog=%lld seconds=%.1f rate=%.0f/s\n",
                    event, _dr.acked, _checkpointed_records, _backlog, s,
                    s > 0 ? static_cast<double>(_dr.acked) / s : 0.0);
        std::fflush(stdout);
    }

    void print_done() const {
        if (!_a.json) {
            print_progress("done");
            if (_finished) {
                std::printf("group %s now resumes %s after the forwarded records\n",
                            _a.group.c_str(), _a.from.c_str());
            }
            return;
        }
        auto offsets = nlohmann::json::array();
        for (const auto o : _pos) offsets.push_back(o);
        std::cout << nlohmann::json{{"event", "done"},      {"forwarded", _dr.acked},
                                    {"backlog", _backlog},  {"seconds", seconds()},
                                    {"positions", offsets}, {"finished", _finished}}
                         .dump()
                  << std::endl;
    }

    const fanout_args& _a;
    const ferry::config::ferry_config& _cfg;
    clock::time_point _started;
    clock::time_point _forward_started;
    deliveries _dr;
    // The producer is destroyed last (members are destroyed in reverse order).
    rk_ptr _producer, _group_client, _source;
    std::vector<fanout::partition_plan> _plan;
    std::vector<std::int64_t> _pos;           // next source offset to forward, per partition
    std::vector<std::int64_t> _checkpointed;  // last committed forwarder offsets
    long long _backlog = 0;
    long long _produced = 0;
    long long _checkpointed_records = 0;
    bool _finished = false;
};

}  // namespace

void register_backlog(CLI::App& app, globals& g) {
    auto* cmd = app.add_subcommand("backlog", "Drain a consumer group's backlog faster");
    cmd->require_subcommand(1);
    static fanout_args a;
    auto* f = cmd->add_subcommand(
        "fan-out",
        "Forward what a group has not consumed from a topic to a new topic with more partitions "
        "(same key -> same partition, every header kept), resumably; --finish moves the group "
        "past what was forwarded");
    f->add_option("--group", a.group, "The consumer group whose backlog is forwarded")->required();
    f->add_option("--from", a.from, "The Kafka topic the group consumes")->required();
    f->add_option("--to", a.to, "The temporary Kafka topic (created)")->required();
    f->add_option("--partitions", a.partitions, "Partitions of --to")->required();
    f->add_option("--replication", a.replication,
                  "Replication factor of --to (default: the broker's)");
    f->add_flag("--finish", a.finish,
                "After forwarding, commit the group's offsets on --from past what was forwarded "
                "(its consumers must be stopped)");
    f->add_option("--checkpoint", a.checkpoint,
                  "Records between durable checkpoints (at most one second apart)");
    f->add_option("--max-rate", a.max_rate, "Records per second at most (default 0: no limit)");
    f->add_option("--progress", a.progress, "Progress line interval (default 1s)");
    f->add_flag("--json", a.json, "One JSON object per line (plan, progress, done)");
    f->callback([&g]() {
        const auto cfg = g.load_config();
        forwarder fw(a, cfg);
        g.exit_code = fw.run();
    });
}

}  // namespace ferry::cli
