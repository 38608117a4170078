// scripts/bench relay: how fast ferry-relay moves the outbox to Kafka, against two baselines
// written here, on the same PostgreSQL and the same embedded Kafka in the same run.
//
//   B0  naive per-message relay: BEGIN; SELECT one row FOR UPDATE SKIP LOCKED; produce; flush;
//       DELETE; COMMIT (the ~100 msg/s design DESIGN.md §5 warns about). Time-boxed.
//   B1  strong simple relay: BEGIN; DELETE ... WHERE id IN (SELECT ... LIMIT 1000 FOR UPDATE
//       SKIP LOCKED) RETURNING; produce all; flush; COMMIT.
//   ferry-relay, the real daemon as a child process (default config, relay.batch_size 1000).
//   ferry-relay WAL mode (relay.source: wal, ADR 0070): the same daemon streaming a pgoutput
//       slot; the backlog is emitted by the C++ writer in WAL mode (outbox.mode: wal).
//   K1, Kmax (reference, not baselines): Kafka alone, the backlog's messages produced from
//       memory with B1's producer (10 passes over the backlog), waiting for the reports every
//       1000 (K1) or once (Kmax).
//   S (reference, not a baseline): ADR 0080's snapshot batches over an insert-only table,
//       reduced to their database work (no lease, held keys, delays or expiry), with B1's
//       producer, batches pipelined and marks merged (see snapshot_relay). Its commit->ack at
//       5k and 20k msg/s is measured as ferry-relay's, with the producers writing into ADR
//       0080's outbox (run_snapshot_latency).
//
// WAL mode also reports the enqueue cost of its emit path against a plain INSERT of the same
// columns into a plain table (no Ferry), and the table-mode writer beside both, and the same
// writer into ADR 0080's outbox (a txid column; index (txid, id) instead of (shard, id)):
// 1 message per transaction and 1000 per statement, rounds alternating, medians. And, after each
// drain, the dead tuples of every table of the schema (WAL mode writes no outbox row at all).
//
// Measures: backlog drain rate (200k messages of 200 B), relay CPU per 1k messages (utime +
// stime of the process doing the relaying), and steady-state commit->ack latency at 5k and 20k
// msg/s offered by 8 producer sessions at 1k commits/s in all (enqueue_batch of 5 and 20
// messages per transaction: 20k one-message commits/s, each waiting for its fsync, would
// saturate 2 cores before the relay is measured).
// Drain rounds (default 3, FERRY_BENCH_ROUNDS) alternate the three relays on fresh backlogs; each
// reports its median. Each drain also reports machine_busy_cores, every process's CPU over the
// drain divided by its seconds (from /proc/stat): 2 means this 2-core machine was saturated.
// Latency runs the same number of rounds and reports the round with the median p99, with every
// round's p50 and p99. ferry-relay's drain is timed by polling its /metrics counter, which costs
// the database nothing. Latency is commit->ack: it ends at the ledger's acked_at, when the relay
// had the batch's last delivery report (migration 0108, the relay's system clock), and it starts
// when the producer's COMMIT returns (measured by the producer on the system clock), not at
// created_at: a slow fsync in the producer's own commit is not the relay's latency. Beside it,
// commit->mark ends at published_at, the start of the mark that recorded the batch (after any
// wait for a free marker). The producers run 2 s before the measured 10 s (warm-up: their
// sessions, the new schema's caches and the relay's first batches); messages committed then
// must be delivered too, and their latencies are reported apart (p99_ms_with_warmup).
//
// Env: FERRY_TEST_PG_DSN, FERRY_TEST_KAFKA_BROKERS (scripts/bench sets both), FERRY_BENCH_SCALE,
// FERRY_BENCH_ONLY=drain|latency|enqueue_cost (one part only), FERRY_BENCH_DRAIN_MODES (default
// "polling wal polling_nopay wal_nopay b1 b0 kafka snapshot": the drains to run; *_nopay run
// the relay with relay.ledger_payloads: false), FERRY_BENCH_SNAPSHOT_DEPTH (S's batches in
// flight, default 4), FERRY_BENCH_SNAPSHOT_LATENCY=0 (no S in the latency rounds),
// FERRY_BENCH_SNAPSHOT_FULL=lease|ledger|1 (S with a lease fence, with the ledger's message ids,
// topics and keys, or both; trials only),
// FERRY_BENCH_BATCH_SIZE (ferry-relay's relay.batch_size, default 1000 like B1's LIMIT),
// FERRY_BENCH_RELAY_LOG_LEVEL (the relay's log goes to /tmp/ferry_bench_relay_<schema>.log),
// FERRY_BENCH_KAFKA_PROPS (extra YAML lines under kafka.properties), FERRY_RELAY_BIN (another
// ferry-relay, for A/B runs), FERRY_BENCH_LATENCY_DUMP (a directory: each latency run writes
// <schema>.tsv there, one line per message with its commit and ledger times in epoch seconds),
// FERRY_BENCH_MARK_LANES (relay.mark_lanes of every ferry-relay in the run). Committed results use
// the defaults.
#include <fcntl.h>
#include <httplib.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <iomanip>
#include <limits>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "bench_util.hpp"
#include "ferry/outbox/migrate.hpp"
#include "ferry/outbox/writer.hpp"
#include "ferry/wal/slot.hpp"

extern char** environ;

using namespace ferry;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

std::string env_or_die(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) {
        std::cerr << "bench_relay: " << name << " is not set (run through scripts/bench)\n";
        std::exit(2);
    }
    return v;
}

// CPU seconds (user + system) a process has used, from /proc/<pid>/stat.
double cpu_seconds(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const auto close = content.rfind(')');
    std::istringstream rest(content.substr(close + 2));
    std::string field;
    long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stoll(field);
        if (i == 15) stime = std::stoll(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU seconds the whole machine has spent busy (every state but idle and iowait), from
// /proc/stat: over a drain, divided by its seconds, how many cores were busy (2 = saturated on
// a 2-core machine), which says whether a drain is bound by CPU or by waiting.
double machine_busy_seconds() {
    std::ifstream f("/proc/stat");
    std::string cpu;
    f >> cpu;
    long long v = 0, busy = 0;
    for (int i = 0; i < 10 && f >> v; ++i) {
        if (i != 3 && i != 4) busy += v;  // 3 idle, 4 iowait
    }
    return static_cast<double>(busy) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct bench_schema {
    std::string name;
    std::string topic;
    bool wal = false;             // WAL mode: a slot and publication named after the schema
    bool snapshot = false;        // relay.source: snapshot (ADR 0080)
    bool ledger_payloads = true;  // relay.ledger_payloads
    [[nodiscard]] std::string slot() const { return name + "_slot"; }
    [[nodiscard]] std::string publication() const { return name + "_pub"; }
};

void drop_wal_objects(pqxx::connection& conn, const std::string& name) {
    for (int i = 0; i < 100; ++i) {
        try {
            (void)wal::drop_slot(conn, name + "_slot");
            break;
        } catch (const std::exception&) {
            std::this_thread::sleep_for(100ms);  // a stopped relay's walsender lets go shortly
        }
    }
    (void)wal::drop_publication(conn, name + "_pub");
}

bench_schema fresh_schema(pqxx::connection& conn, const std::string& name, bool wal_mode = false) {
    drop_wal_objects(conn, name);
    {
        pqxx::work tx{conn};
        tx.exec("DROP SCHEMA IF EXISTS " + name + " CASCADE");
        tx.commit();
    }
    (void)outbox::migrate(conn, name);
    bench_schema s{name, "bench." + name, wal_mode};
    if (wal_mode) {
        (void)wal::ensure_publication(conn, s.publication());
        (void)wal::create_slot(conn, s.slot());
        wal::register_slot(conn, name, s.slot());
    }
    return s;
}

outbox::writer writer_for(const bench_schema& s) {
    outbox::writer_options o;
    o.schema = s.name;
    o.mode = s.wal ? outbox::emit_mode::wal : outbox::emit_mode::table;
    return outbox::writer{o};
}

// n_dead_tup of every table of the schema (after the relay stopped, so its sessions flushed
// their statistics).
nlohmann::json dead_tuples(pqxx::connection& conn, const bench_schema& s) {
    std::this_thread::sleep_for(1500ms);
    nlohmann::json out = nlohmann::json::object();
    pqxx::nontransaction tx{conn};
    for (const auto& row :
         tx.exec_params("SELECT relname, n_dead_tup FROM pg_stat_user_tables WHERE schemaname = $1 "
                        "ORDER BY relname",
                        s.name)) {
        out[row[0].as<std::string>()] = row[1].as<long long>();
    }
    return out;
}

void fill(pqxx::connection& conn, const bench_schema& s, int n) {
    const auto w = writer_for(s);
    std::vector<outbox::message> batch;
    for (int i = 0; i < n; ++i) {
        outbox::message m;
        m.topic = s.topic;
        m.key = "key-" + std::to_string(i % 1000);
        m.payload = std::string(200, static_cast<char>('a' + i % 26));
        batch.push_back(std::move(m));
        if (batch.size() == 1000 || i + 1 == n) {
            pqxx::work tx{conn};
            (void)w.enqueue_batch(tx, batch);
            tx.commit();
            batch.clear();
        }
    }
    pqxx::nontransaction tx{conn};
    tx.exec("ANALYZE " + s.name + ".outbox");
}

// Rows not yet published: the outbox's rows, or with relay.source: snapshot (which keeps
// published rows) those its position does not call finished (migration 0109).
long long pending(pqxx::connection& conn, const bench_schema& s) {
    pqxx::nontransaction tx{conn};
    return tx
        .exec("SELECT count(*) FROM " + s.name + ".outbox o" +
              (s.snapshot ? " WHERE NOT " + s.name + ".snapshot_finished(o.txid, o.id, o.shard)"
                          : std::string()))[0][0]
        .as<long long>();
}

long long published_rows(pqxx::connection& conn, const bench_schema& s) {
    pqxx::nontransaction tx{conn};
    return tx.exec("SELECT count(*) FROM " + s.name + ".ledger")[0][0].as<long long>();
}

double system_now_s() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// --- librdkafka producer for the baselines -------------------------------------------------
// Where a delivery report puts a message's partition and offset (S1 records them).
struct delivery {
    std::int32_t partition = -1;
    std::int64_t offset = -1;
    std::atomic<int>* remaining = nullptr;    // the batch's count of reports still to come
    std::atomic<double>* acked_at = nullptr;  // set to the system clock by the batch's last report
};

struct producer {
    rd_kafka_t* rk = nullptr;
    std::atomic<long> failed{0};

    explicit producer(const std::string& brokers, const char* linger_ms = "5") {
        char err[512];
        rd_kafka_conf_t* conf = rd_kafka_conf_new();
        auto set = [&](const char* k, const char* v) {
            if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
                std::cerr << "bench_relay: " << k << ": " << err << "\n";
                std::exit(2);
            }
        };
        // The producer settings ferry-relay uses (relay/src/producer.cpp) where they help speed:
        // idempotence with acks=all, lz4, the Java-compatible partitioner, Nagle off and a 5 ms
        // linger. B1 does not need ferry's one-request-in-flight rule (it commits only after a
        // flush), so it keeps librdkafka's default of five: the faster choice.
        set("bootstrap.servers", brokers.c_str());
        set("enable.idempotence", "true");
        set("acks", "all");
        set("compression.type", "lz4");
        set("partitioner", "murmur2_random");
        set("socket.nagle.disable", "true");
        set("linger.ms", linger_ms);
        rd_kafka_conf_set_opaque(conf, this);
        rd_kafka_conf_set_dr_msg_cb(
            conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
                if (m->err) ++static_cast<producer*>(opaque)->failed;
                if (auto* d = static_cast<delivery*>(m->_private)) {
                    d->partition = m->partition;
                    d->offset = m->offset;
                    if (d->remaining && d->remaining->fetch_sub(1) == 1 && d->acked_at) {
                        d->acked_at->store(system_now_s());
                    }
                }
            });
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (!rk) {
            std::cerr << "bench_relay: " << err << "\n";
            std::exit(2);
        }
    }
    ~producer() {
        rd_kafka_flush(rk, 10000);
        rd_kafka_destroy(rk);
    }
    void produce(const std::string& topic, const std::string& key, const std::string& value,
                 const std::string& id, delivery* report = nullptr) {
        rd_kafka_headers_t* h = rd_kafka_headers_new(1);
        rd_kafka_header_add(h, "ferry-message-id", -1, id.data(), static_cast<ssize_t>(id.size()));
        while (true) {
            const auto e =
                rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()),
                                  RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
                                  RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                                  RD_KAFKA_V_OPAQUE(report), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return;
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_headers_destroy(h);
                ++failed;
                // No report will come for it: count it as reported, so S's marker never waits
                // for it (the run then shows the failure).
                if (report && report->remaining) report->remaining->fetch_sub(1);
                return;
            }
            rd_kafka_poll(rk, 10);
        }
    }
    void flush() {
        while (rd_kafka_flush(rk, 1000) == RD_KAFKA_RESP_ERR__TIMED_OUT) {
        }
    }
    // The first message to a new topic waits for its metadata (about a second on the embedded
    // Kafka). ferry-relay's timing starts at its first publication, so the baselines get the
    // same treatment: one warm-up message before the clock starts.
    void warm_up(const std::string& topic) {
        produce(topic, "warm-up", "", "00000000-0000-0000-0000-000000000000");
        flush();
    }
};

// bytea arrives as hex text; libpq's PQunescapeBytea (through pqxx::binarystring) decodes it.
std::string unescape_bytea(const pqxx::field& f) { return pqxx::binarystring(f).str(); }

struct drain_result {
    long long messages = 0;
    double seconds = 0;
    double cpu_s = 0;
    double machine_busy_s = 0;  // every process's CPU over the drain (machine_busy_seconds)
    long failed = 0;
    [[nodiscard]] double rate() const {
        return seconds > 0 ? static_cast<double>(messages) / seconds : 0;
    }
    [[nodiscard]] double cpu_ms_per_1k() const {
        return messages > 0 ? cpu_s * 1000.0 / (static_cast<double>(messages) / 1000.0) : 0;
    }
    [[nodiscard]] nlohmann::json to_json() const {
        return {{"messages", messages},
                {"seconds", seconds},
                {"msgs_per_s", rate()},
                {"cpu_seconds", cpu_s},
                {"cpu_ms_per_1k", cpu_ms_per_1k()},
                {"machine_busy_cores", seconds > 0 ? machine_busy_s / seconds : 0},
                {"failed", failed}};
    }
};

// Runs `work(producer, result)` with a producer warmed on `topic`, timed: `work` counts the
// messages, and the result gets the seconds, this process's CPU, the machine's busy time and
// the producer's failures. The baselines and the Kafka-alone references all measure this way.
template <class Work>
drain_result timed_with_producer(const std::string& brokers, const std::string& topic,
                                 Work&& work) {
    producer p(brokers);
    p.warm_up(topic);
    drain_result r;
    const auto cpu0 = cpu_seconds(getpid());
    const auto busy0 = machine_busy_seconds();
    const auto t0 = clock_type::now();
    work(p, r);
    r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    r.cpu_s = cpu_seconds(getpid()) - cpu0;
    r.machine_busy_s = machine_busy_seconds() - busy0;
    r.failed = p.failed.load();
    return r;
}

drain_result run_b1(pqxx::connection& conn, const bench_schema& s, const std::string& brokers) {
    return timed_with_producer(brokers, s.topic, [&](producer& p, drain_result& r) {
        while (true) {
            pqxx::work tx{conn};
            const auto rows =
                tx.exec("DELETE FROM " + s.name + ".outbox WHERE id IN (SELECT id FROM " + s.name +
                        ".outbox ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED) "
                        "RETURNING message_id::text, topic, key, payload");
            if (rows.empty()) break;
            for (const auto& row : rows) {
                p.produce(row[1].c_str(), row[2].c_str(), unescape_bytea(row[3]), row[0].c_str());
            }
            p.flush();
            tx.commit();
            r.messages += static_cast<long long>(rows.size());
        }
    });
}

// Kafka alone, for reference (not a baseline): the backlog's messages, read into memory before
// the clock starts, produced with B1's producer. K1 waits for every report after each 1000, as
// B1 does: it is B1 without its database work. Kmax produces everything and waits once: about
// the most this machine's broker and client take, which bounds any relay's drain here. Each
// produces the backlog 10 times over, so that a run lasts seconds, not a fraction of one.
drain_result run_kafka_only(pqxx::connection& conn, const bench_schema& s,
                            const std::string& brokers, std::size_t per_flush) {
    struct message {
        std::string id, topic, key, payload;
    };
    std::vector<message> messages;
    {
        pqxx::nontransaction tx{conn};
        for (const auto& row : tx.exec("SELECT message_id::text, topic, key, payload FROM " +
                                       s.name + ".outbox ORDER BY id")) {
            messages.push_back(
                {row[0].c_str(), row[1].c_str(), row[2].c_str(), unescape_bytea(row[3])});
        }
    }
    return timed_with_producer(brokers, s.topic, [&](producer& p, drain_result& r) {
        constexpr int passes = 10;
        for (int pass = 0; pass < passes; ++pass) {
            for (const auto& m : messages) {
                p.produce(m.topic, m.key, m.payload, m.id);
                if (static_cast<std::size_t>(++r.messages) % per_flush == 0) p.flush();
            }
        }
        p.flush();
    });
}

drain_result run_b0(pqxx::connection& conn, const bench_schema& s, const std::string& brokers,
                    std::chrono::seconds budget) {
    return timed_with_producer(brokers, s.topic, [&](producer& p, drain_result& r) {
        const auto t0 = clock_type::now();
        while (clock_type::now() - t0 < budget) {
            pqxx::work tx{conn};
            const auto rows =
                tx.exec("SELECT id, message_id::text, topic, key, payload FROM " + s.name +
                        ".outbox ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED");
            if (rows.empty()) break;
            p.produce(rows[0][2].c_str(), rows[0][3].c_str(), unescape_bytea(rows[0][4]),
                      rows[0][1].c_str());
            p.flush();
            tx.exec("DELETE FROM " + s.name +
                    ".outbox WHERE id = " + std::string(rows[0][0].c_str()));
            tx.commit();
            ++r.messages;
        }
    });
}

// S (reference, not a baseline): ADR 0080's snapshot batches reduced to their database work:
// no lease, no held keys, no delayed rows, no expiry. A reader takes a snapshot S1 and lists, in
// id order, the rows whose transaction is visible in S1 and was not in S0 (the previous
// snapshot); then per 1000 of them it reads the rows in one id range, filtered by the same
// visibility terms, in binary (as ferry-relay's claim does), and produces them. A marker thread
// on its own connection waits for each batch's delivery reports, in order, and writes one ledger
// row per batch that points at its rows (ids, partitions, offsets, when Kafka acknowledged the
// batch's last message; no payload copy); batches already acknowledged when it starts a mark go
// into the same transaction. The epoch's last batch stores S1 as the next S0. At most
// FERRY_BENCH_SNAPSHOT_DEPTH batches (default 4) are produced and not yet marked. Nothing is
// deleted.
//   Drain: the backlog is copied, 1000 rows per transaction as fill() commits them, into an
//   insert-only table that keeps each row's txid (index (txid, id)); after the drain the ledger
//   must hold every row exactly once.
//   Latency: the producers write with the table writer into ADR 0080's outbox (drop_shard_index)
//   while S runs; commit->ack ends at S's ledger's acked_at, as it does for ferry-relay.
// It bounds what the design can do on this machine before any of the work ADR 0080 lists as
// still to be carried over.

// S's ledger, its state row (the last snapshot) and its lease row (for
// FERRY_BENCH_SNAPSHOT_FULL).
void create_snapshot_bookkeeping(pqxx::connection& conn, const std::string& schema) {
    pqxx::work tx{conn};
    tx.exec("CREATE TABLE " + schema +
            ".snap_ledger (batch_id bigserial PRIMARY KEY, ids bigint[] NOT NULL, partitions "
            "int[] NOT NULL, offsets bigint[] NOT NULL, acked_at timestamptz NOT NULL, "
            "published_at timestamptz NOT NULL DEFAULT now(), message_ids uuid[], topics text[], "
            "keys text[])");
    tx.exec("CREATE TABLE " + schema +
            ".snap_lease (id int PRIMARY KEY, epoch bigint NOT NULL, expires_at timestamptz NOT "
            "NULL)");
    tx.exec("INSERT INTO " + schema + ".snap_lease VALUES (1, 1, now() + interval '1 hour')");
    tx.exec("CREATE TABLE " + schema +
            ".snap_state (id int PRIMARY KEY, snap pg_snapshot NOT NULL)");
    tx.exec("INSERT INTO " + schema + ".snap_state VALUES (1, pg_current_snapshot())");
    tx.commit();
}

// ADR 0080's outbox for S: migration 0109 gives every outbox its transaction id and the index
// (txid, id); S's table has no (shard, id) index besides (ADR 0080 proposed (txid, id) in its
// place). Writers need no change.
void drop_shard_index(pqxx::connection& conn, const std::string& schema) {
    pqxx::work tx{conn};
    tx.exec("DROP INDEX " + schema + ".outbox_shard_id_idx");
    tx.commit();
}

// The outbox as it was before migration 0109 (no txid column, no (txid, id) index): what the
// enqueue-cost part compares today's table writer with, so migration 0109's cost to producers
// is measured in every run.
void remove_0109(pqxx::connection& conn, const std::string& schema) {
    pqxx::work tx{conn};
    tx.exec("DROP INDEX " + schema + ".outbox_txid_id_idx");
    tx.exec("ALTER TABLE " + schema + ".outbox DROP COLUMN txid");
    tx.commit();
}

void prepare_snapshot_table(pqxx::connection& conn, const bench_schema& s) {
    {
        pqxx::work tx{conn};
        tx.exec("CREATE TABLE " + s.name +
                ".snap_outbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, message_id "
                "uuid NOT NULL, topic text NOT NULL, key text NOT NULL, payload bytea NOT NULL, "
                "txid xid8 NOT NULL DEFAULT pg_current_xact_id())");
        tx.exec("CREATE INDEX ON " + s.name + ".snap_outbox (txid, id)");
        tx.commit();
    }
    create_snapshot_bookkeeping(conn, s.name);
    long long lo = 0, hi = -1;
    {
        pqxx::nontransaction tx{conn};
        const auto r = tx.exec("SELECT min(id), max(id) FROM " + s.name + ".outbox");
        if (!r[0][0].is_null()) {
            lo = r[0][0].as<long long>();
            hi = r[0][1].as<long long>();
        }
    }
    for (long long at = lo; at <= hi; at += 1000) {
        pqxx::work tx{conn};
        tx.exec("INSERT INTO " + s.name +
                ".snap_outbox (message_id, topic, key, payload) SELECT message_id, topic, key, "
                "payload FROM " +
                s.name + ".outbox WHERE id >= " + std::to_string(at) + " AND id < " +
                std::to_string(at + 1000) + " ORDER BY id");
        tx.commit();
    }
    pqxx::nontransaction tx{conn};
    tx.exec("ANALYZE " + s.name + ".snap_outbox");
}

template <class T>
std::string array_literal(const std::vector<T>& v) {
    std::string out = "{";
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i > 0) out += ',';
        out += std::to_string(v[i]);
    }
    return out + "}";
}

std::string text_array_literal(const std::vector<std::string>& v) {
    std::string out = "{";
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i > 0) out += ',';
        out += '"';
        for (const char c : v[i]) {
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        out += '"';
    }
    return out + "}";
}

// Runs S over `table` of `schema` with `p`. Without `stop` it ends at the first empty epoch;
// with it, at the first empty epoch taken after `stop` was set. Returns the messages marked.
long long snapshot_relay(producer& p, const std::string& dsn, const std::string& schema,
                         const std::string& table, const std::atomic<bool>* stop) {
    const std::string state = schema + ".snap_state", ledger = schema + ".snap_ledger";
    // The rows of the epoch (S0, S1]: their transaction is visible in S1, and it was at or past
    // S0's xmax or in progress in S0.
    const std::string in_epoch =
        "((txid >= pg_snapshot_xmax($1::pg_snapshot) AND txid < pg_snapshot_xmax($2::pg_snapshot))"
        " OR txid = ANY(ARRAY(SELECT pg_snapshot_xip($1::pg_snapshot))))"
        " AND pg_visible_in_snapshot(txid, $2::pg_snapshot)";
    const std::size_t depth = std::getenv("FERRY_BENCH_SNAPSHOT_DEPTH")
                                  ? std::stoul(std::getenv("FERRY_BENCH_SNAPSHOT_DEPTH"))
                                  : 4;
    struct batch {
        std::vector<long long> ids;
        std::vector<delivery> reports;
        std::atomic<int> remaining{0};
        std::atomic<double> acked_at{0};  // system clock, when the last report came
        std::string next_snapshot;        // set on an epoch's last batch
        std::vector<std::string> message_ids, topics, keys;  // FERRY_BENCH_SNAPSHOT_FULL only
    };
    // FERRY_BENCH_SNAPSHOT_FULL (trials; the committed results run without it): "lease": the
    // read checks a lease row and the mark is fenced by it (FOR KEY SHARE); "ledger": the
    // ledger row also holds the batch's message ids, topics and keys, as ferry-relay's
    // published_batch does without payloads; "1": both.
    const std::string full_mode =
        std::getenv("FERRY_BENCH_SNAPSHOT_FULL") ? std::getenv("FERRY_BENCH_SNAPSHOT_FULL") : "";
    const bool full = full_mode == "1" || full_mode == "lease" || full_mode == "ledger";
    const bool full_lease = full_mode == "1" || full_mode == "lease";
    const bool full_ledger = full_mode == "1" || full_mode == "ledger";
    const std::string lease = schema + ".snap_lease";
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::unique_ptr<batch>> queue;  // produced, not yet marked, in order
    bool done = false;
    std::atomic<long long> marked{0};
    std::thread marker([&] {
        pqxx::connection mconn{dsn};
        while (true) {
            std::vector<batch*> ready;
            {
                std::unique_lock lock{mu};
                cv.wait(lock, [&] { return done || !queue.empty(); });
                if (queue.empty()) return;
                ready.push_back(queue.front().get());
            }
            while (ready.front()->remaining.load() > 0) rd_kafka_poll(p.rk, 1);
            {
                std::lock_guard lock{mu};
                for (std::size_t k = 1; k < queue.size() && queue[k]->remaining.load() == 0; ++k) {
                    ready.push_back(queue[k].get());
                }
            }
            pqxx::work tx{mconn};
            long long n = 0;
            for (const auto* b : ready) {
                std::vector<int> partitions;
                std::vector<long long> offsets;
                for (const auto& d : b->reports) {
                    partitions.push_back(d.partition);
                    offsets.push_back(d.offset);
                }
                if (full) {
                    // With the lease: the mark is fenced by it (FOR KEY SHARE, as ferry-relay's
                    // marks, migration 0107). Without: a plain INSERT of the same columns.
                    const std::string from =
                        full_lease ? " FROM (SELECT 1 FROM " + lease +
                                         " WHERE id = 1 AND epoch = $5 AND expires_at > now() FOR "
                                         "KEY SHARE) f"
                                   : " WHERE $5::int IS NOT NULL";
                    const auto r = tx.exec_params(
                        "INSERT INTO " + ledger +
                            " (ids, partitions, offsets, acked_at, message_ids, topics, keys) "
                            "SELECT $1::bigint[], $2::int[], $3::bigint[], "
                            "to_timestamp($4::float8), $6::uuid[], $7::text[], $8::text[]" +
                            from,
                        array_literal(b->ids), array_literal(partitions), array_literal(offsets),
                        b->acked_at.load(), 1,
                        full_ledger ? text_array_literal(b->message_ids) : std::string("{}"),
                        full_ledger ? text_array_literal(b->topics) : std::string("{}"),
                        full_ledger ? text_array_literal(b->keys) : std::string("{}"));
                    if (r.affected_rows() != 1) {
                        std::cerr << "bench_relay: S's mark was fenced\n";
                        std::exit(2);
                    }
                } else {
                    tx.exec_params("INSERT INTO " + ledger +
                                       " (ids, partitions, offsets, acked_at) VALUES "
                                       "($1::bigint[], $2::int[], $3::bigint[], "
                                       "to_timestamp($4::float8))",
                                   array_literal(b->ids), array_literal(partitions),
                                   array_literal(offsets), b->acked_at.load());
                }
                if (!b->next_snapshot.empty()) {
                    tx.exec_params("UPDATE " + state + " SET snap = $1::pg_snapshot WHERE id = 1",
                                   b->next_snapshot);
                }
                n += static_cast<long long>(b->ids.size());
            }
            tx.commit();
            marked += n;
            {
                std::lock_guard lock{mu};
                for (std::size_t k = 0; k < ready.size(); ++k) queue.pop_front();
            }
            cv.notify_all();
        }
    });
    // The reads return binary (libpq directly: libpqxx 6.4 reads text only).
    pqxx::connection conn{dsn};
    std::unique_ptr<PGconn, decltype(&PQfinish)> raw{PQconnectdb(dsn.c_str()), &PQfinish};
    const std::string read_sql =
        "SELECT message_id::text, topic, key, payload FROM " + table +
        " WHERE id BETWEEN $3 AND $4 AND " + in_epoch +
        (full_lease ? " AND EXISTS (SELECT 1 FROM " + lease +
                          " WHERE id = 1 AND epoch = $5 AND expires_at > now())"
                    : std::string()) +
        " ORDER BY id";
    std::string s0;
    {
        pqxx::nontransaction tx{conn};
        s0 = tx.exec("SELECT snap::text FROM " + state + " WHERE id = 1")[0][0].c_str();
    }
    while (true) {
        const bool stopping = stop == nullptr || stop->load();
        std::vector<long long> ids;
        std::string s1;
        {
            pqxx::work tx{conn};
            s1 = tx.exec("SELECT pg_current_snapshot()::text")[0][0].c_str();
            for (const auto& row : tx.exec_params(
                     "SELECT id FROM " + table + " WHERE " + in_epoch + " ORDER BY id", s0, s1)) {
                ids.push_back(row[0].as<long long>());
            }
            tx.commit();
        }
        if (ids.empty()) {
            if (stopping) break;
            s0 = s1;
            std::this_thread::sleep_for(1ms);  // ferry-relay's pause after a short batch
            continue;
        }
        for (std::size_t at = 0; at < ids.size(); at += 1000) {
            const auto to = std::min(ids.size(), at + 1000);
            auto b = std::make_unique<batch>();
            b->ids.assign(ids.begin() + static_cast<std::ptrdiff_t>(at),
                          ids.begin() + static_cast<std::ptrdiff_t>(to));
            if (to == ids.size()) b->next_snapshot = s1;
            const auto lo = std::to_string(b->ids.front()), hi = std::to_string(b->ids.back());
            const char* params[] = {s0.c_str(), s1.c_str(), lo.c_str(), hi.c_str(), "1"};
            std::unique_ptr<PGresult, decltype(&PQclear)> res{
                PQexecParams(raw.get(), read_sql.c_str(), full_lease ? 5 : 4, nullptr, params,
                             nullptr, nullptr, 1),
                &PQclear};
            if (PQresultStatus(res.get()) != PGRES_TUPLES_OK ||
                static_cast<std::size_t>(PQntuples(res.get())) != b->ids.size()) {
                std::cerr << "bench_relay: S read: " << PQerrorMessage(raw.get())
                          << " (rows: " << PQntuples(res.get()) << " of " << b->ids.size() << ")\n";
                std::exit(2);
            }
            const auto field = [&](int row, int col) {
                return std::string(PQgetvalue(res.get(), row, col),
                                   static_cast<std::size_t>(PQgetlength(res.get(), row, col)));
            };
            b->reports.resize(b->ids.size());
            b->remaining = static_cast<int>(b->ids.size());
            for (auto& d : b->reports) {
                d.remaining = &b->remaining;
                d.acked_at = &b->acked_at;
            }
            {
                std::unique_lock lock{mu};
                cv.wait(lock, [&] { return queue.size() < depth; });
            }
            auto* produced = b.get();
            {
                std::lock_guard lock{mu};
                queue.push_back(std::move(b));
            }
            cv.notify_all();
            for (int i = 0; i < PQntuples(res.get()); ++i) {
                if (full) {
                    produced->message_ids.push_back(field(i, 0));
                    produced->topics.push_back(field(i, 1));
                    produced->keys.push_back(field(i, 2));
                }
                p.produce(field(i, 1), field(i, 2), field(i, 3), field(i, 0),
                          &produced->reports[static_cast<std::size_t>(i)]);
            }
        }
        s0 = s1;
    }
    {
        std::lock_guard lock{mu};
        done = true;
    }
    cv.notify_all();
    marker.join();
    return marked.load();
}

drain_result run_snapshot(pqxx::connection& conn, const std::string& dsn, const bench_schema& s,
                          const std::string& brokers) {
    const std::string table = s.name + ".snap_outbox";
    auto r = timed_with_producer(brokers, s.topic, [&](producer& p, drain_result& result) {
        result.messages = snapshot_relay(p, dsn, s.name, table, nullptr);
    });
    pqxx::nontransaction tx{conn};
    const auto check =
        tx.exec("SELECT count(*), count(DISTINCT id), (SELECT count(*) FROM " + table +
                ") FROM (SELECT unnest(ids) AS id FROM " + s.name + ".snap_ledger) l");
    if (check[0][0].as<long long>() != check[0][2].as<long long>() ||
        check[0][1].as<long long>() != check[0][2].as<long long>()) {
        std::cerr << "bench_relay: S's ledger holds " << check[0][0].c_str() << " ids ("
                  << check[0][1].c_str() << " distinct) for " << check[0][2].c_str() << " rows\n";
        std::exit(2);
    }
    return r;
}

// --- ferry-relay as a child process -----------------------------------------------------------
class relay_process {
public:
    relay_process(const std::string& bin, const std::string& dsn, const std::string& brokers,
                  const bench_schema& s) {
        _config = "/tmp/ferry_bench_relay_" + std::to_string(getpid()) + "_" + s.name + ".yaml";
        std::ofstream f(_config);
        f << "postgres:\n  dsn: \"" << dsn << "\"\n  schema: " << s.name << "\n"
          << "kafka:\n  brokers: \"" << brokers << "\"\n"
          << (std::getenv("FERRY_BENCH_KAFKA_PROPS")
                  ? std::string("  properties:\n") + std::getenv("FERRY_BENCH_KAFKA_PROPS") + "\n"
                  : std::string())
          << "http:\n  listen: 127.0.0.1:0\n"
          << "log:\n  level: "
          << (std::getenv("FERRY_BENCH_RELAY_LOG_LEVEL")
                  ? std::getenv("FERRY_BENCH_RELAY_LOG_LEVEL")
                  : "warn")
          << "\n"
          << "relay:\n  batch_size: "
          << (std::getenv("FERRY_BENCH_BATCH_SIZE") ? std::getenv("FERRY_BENCH_BATCH_SIZE")
                                                    : "1000")
          << "\n"
          << (s.wal ? "  source: wal\n  wal_slot: " + s.slot() +
                          "\n  wal_publication: " + s.publication() + "\n"
                    : std::string())
          << (s.snapshot ? "  source: snapshot\n" : "")
          << (s.ledger_payloads ? "" : "  ledger_payloads: false\n")
          << (std::getenv("FERRY_BENCH_MARK_LANES")
                  ? std::string("  mark_lanes: ") + std::getenv("FERRY_BENCH_MARK_LANES") + "\n"
                  : std::string());
        f.close();
        std::vector<std::string> args = {bin, "--config", _config};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        // stdout carries one line, `http.listen=HOST:PORT`, read by http_port().
        _stdout = "/tmp/ferry_bench_relay_" + std::to_string(getpid()) + "_" + s.name + ".out";
        posix_spawn_file_actions_addopen(&fa, 1, _stdout.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        // The relay's log, kept for a look when a number is surprising.
        const auto log = "/tmp/ferry_bench_relay_" + s.name + ".log";
        posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (posix_spawn(&_pid, bin.c_str(), &fa, nullptr, argv.data(), environ) != 0) {
            std::cerr << "bench_relay: cannot start " << bin << "\n";
            std::exit(2);
        }
        posix_spawn_file_actions_destroy(&fa);
    }
    ~relay_process() {
        kill(_pid, SIGTERM);
        int status = 0;
        for (int i = 0; i < 200 && waitpid(_pid, &status, WNOHANG) == 0; ++i)
            std::this_thread::sleep_for(50ms);
        if (waitpid(_pid, &status, WNOHANG) == 0) {
            kill(_pid, SIGKILL);
            waitpid(_pid, &status, 0);
        }
        std::remove(_config.c_str());
        std::remove(_stdout.c_str());
    }
    [[nodiscard]] pid_t pid() const { return _pid; }
    // The port of the relay's HTTP endpoint, once it has printed it (0 if it never did).
    [[nodiscard]] int http_port() const {
        const auto deadline = clock_type::now() + 30s;
        while (clock_type::now() < deadline && alive()) {
            std::ifstream f(_stdout);
            std::string line;
            while (std::getline(f, line)) {
                if (line.rfind("http.listen=", 0) == 0) {
                    return std::stoi(line.substr(line.rfind(':') + 1));
                }
            }
            std::this_thread::sleep_for(10ms);
        }
        return 0;
    }
    [[nodiscard]] bool alive() const { return kill(_pid, 0) == 0; }

private:
    pid_t _pid = -1;
    std::string _config;
    std::string _stdout;
};

// ferry_relay_published_total from the relay's /metrics (-1 when unreachable). Polling the
// relay's counter costs the database nothing, unlike a count(*) over the outbox. It costs the
// relay about 0.5 ms of CPU a scrape (the whole registry is rendered), so drains poll it sparsely
// until the end is near (run_ferry).
double published_total(httplib::Client& http) {
    const auto res = http.Get("/metrics");
    if (!res || res->status != 200) return -1;
    std::istringstream in(res->body);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("ferry_relay_published_total ", 0) == 0) {
            return std::stod(line.substr(line.find(' ') + 1));
        }
    }
    return -1;
}

drain_result median_round(std::vector<drain_result> v) {
    if (v.empty()) return {};
    std::sort(v.begin(), v.end(),
              [](const drain_result& a, const drain_result& b) { return a.rate() < b.rate(); });
    return v[v.size() / 2];
}

drain_result run_ferry(pqxx::connection& conn, const bench_schema& s, const std::string& bin,
                       const std::string& dsn, const std::string& brokers, long long n) {
    relay_process relay(bin, dsn, brokers, s);
    drain_result r;
    const int port = relay.http_port();
    if (port == 0) {
        std::cerr << "bench_relay: the relay printed no http.listen line\n";
        std::exit(1);
    }
    httplib::Client http("127.0.0.1", port);
    http.set_keep_alive(true);
    // Wait for the first publication so start-up (connect, lease, topic metadata) is not billed
    // to the drain; B1 and B0 warm their topic the same way before their clocks start.
    const auto start_deadline = clock_type::now() + 30s;
    double first = published_total(http);
    while (first <= 0 && clock_type::now() < start_deadline) {
        std::this_thread::sleep_for(1ms);
        first = published_total(http);
    }
    const auto cpu0 = cpu_seconds(relay.pid());
    const auto busy0 = machine_busy_seconds();
    const auto t0 = clock_type::now();
    double now = first;
    // Every 100 ms until 90% is published, then every 10 ms: the end is still seen within
    // 10 ms, and the relay renders its /metrics about 40 times per drain instead of about 250,
    // which had billed it 0.5-0.9 ms of CPU per 1000 messages that B1 (never scraped) did not pay.
    while (now < static_cast<double>(n) && relay.alive() && clock_type::now() - t0 < 600s) {
        std::this_thread::sleep_for(now < 0.9 * static_cast<double>(n) ? 100ms : 10ms);
        now = published_total(http);
    }
    r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    r.cpu_s = cpu_seconds(relay.pid()) - cpu0;
    r.machine_busy_s = machine_busy_seconds() - busy0;
    r.messages = static_cast<long long>(now - first);
    if (pending(conn, s) != 0) {
        std::cerr << "bench_relay: ferry-relay left rows in the outbox\n";
        std::exit(1);
    }
    return r;
}

// The latency runs' producers start 2 s before the measured time (their sessions, the new
// schema's caches and the relay's first batches warm up then).
constexpr double latency_warmup_s = 2.0;

// What the latency runs' producers committed: per producer, each message id with the time its
// COMMIT returned (system clock, epoch seconds), and each commit's duration.
struct offered_load {
    std::vector<std::vector<std::pair<std::string, double>>> committed;
    std::vector<bench::samples> commit_us;
    long sent = 0;
    double offered_s = 0;
    double measured_from = 0;  // messages committed before this are the warm-up's
};

offered_load offer_load(const std::string& dsn, const bench_schema& s, int rate,
                        std::chrono::seconds duration) {
    // 8 producer sessions, each committing a transaction every 8 ms (1k commits/s in all), with
    // rate / 1000 messages per transaction: on 2 cores, a commit rate that a 1-row-per-commit
    // generator would need for 20k msg/s (each commit waits for its fsync) saturates the machine
    // before the relay is measured.
    constexpr int producers = 8;
    const int per_tx = std::max(1, rate / 1000);
    offered_load load;
    std::atomic<long> sent{0};
    // message id -> when its producer's COMMIT returned (system clock, the same clock the
    // database reads on this machine)
    auto& committed = load.committed;
    committed.resize(producers);
    // Messages committed before this (system clock, epoch seconds) are the warm-up's.
    constexpr double warmup_s = latency_warmup_s;
    load.measured_from =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count() +
        warmup_s;
    auto& commit_us = load.commit_us;
    commit_us.resize(producers);
    std::vector<std::thread> threads;
    const auto t0 = clock_type::now();
    for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
            pqxx::connection c{dsn};
            const auto w = writer_for(s);
            const auto interval =
                std::chrono::duration<double>(static_cast<double>(producers * per_tx) / rate);
            auto next = clock_type::now();
            long i = 0;
            std::vector<outbox::message> batch;
            std::vector<std::string> ids;
            while (clock_type::now() - t0 < duration + std::chrono::duration<double>(warmup_s)) {
                batch.clear();
                for (int k = 0; k < per_tx; ++k, ++i) {
                    outbox::message m;
                    m.topic = s.topic;
                    m.key = "key-" + std::to_string(p) + "-" + std::to_string(i % 50);
                    m.payload = std::string(200, 'x');
                    batch.push_back(std::move(m));
                }
                const auto tx_start = clock_type::now();
                pqxx::work tx{c};
                ids.clear();
                for (const auto& id : w.enqueue_batch(tx, batch)) ids.push_back(id.to_string());
                tx.commit();
                commit_us[static_cast<std::size_t>(p)].add(bench::elapsed_us(tx_start));
                const double at = std::chrono::duration<double>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count();
                for (auto& id : ids) committed[static_cast<std::size_t>(p)].emplace_back(id, at);
                sent += per_tx;
                next += std::chrono::duration_cast<clock_type::duration>(interval);
                std::this_thread::sleep_until(next);
            }
        });
    }
    for (auto& t : threads) t.join();
    load.offered_s = std::chrono::duration<double>(clock_type::now() - t0).count();
    load.sent = sent.load();
    return load;
}

// Commit->ack and commit->mark of every message `load` committed, from `published` (message id
// -> (acked_at, published_at), epoch seconds).
nlohmann::json latency_report(
    const offered_load& load,
    const std::unordered_map<std::string, std::pair<double, double>>& published,
    const std::string& dump_name, int rate) {
    const auto& committed = load.committed;
    const auto& commit_us = load.commit_us;
    const double measured_from = load.measured_from;
    constexpr double warmup_s = latency_warmup_s;
    bench::samples latency_us;       // commit->ack, measured part
    bench::samples with_warmup_us;   // commit->ack, warm-up included
    bench::samples mark_latency_us;  // commit->mark, measured part
    long missing = 0;
    // FERRY_BENCH_LATENCY_DUMP=<dir>: every message's commit and ledger times, one file per
    // run (<schema>.tsv), to see where a tail comes from (clustered in time or spread).
    std::ofstream dump;
    if (const char* dir = std::getenv("FERRY_BENCH_LATENCY_DUMP")) {
        dump.open(std::string(dir) + "/" + dump_name + ".tsv");
        dump << std::fixed << std::setprecision(6);
    }
    for (const auto& per_producer : committed) {
        for (const auto& [id, commit_s] : per_producer) {
            const auto it = published.find(id);
            if (it == published.end()) {
                ++missing;
                continue;
            }
            const auto [acked_s, marked_s] = it->second;
            const double ack_us = std::max(0.0, (acked_s - commit_s) * 1e6);
            with_warmup_us.add(ack_us);
            if (commit_s >= measured_from) {
                latency_us.add(ack_us);
                mark_latency_us.add(std::max(0.0, (marked_s - commit_s) * 1e6));
            }
            if (dump.is_open()) {
                dump << commit_s << '\t' << acked_s << '\t' << marked_s << '\t'
                     << (commit_s >= measured_from ? 1 : 0) << '\n';
            }
        }
    }
    bench::samples producer_tx;
    for (const auto& c : commit_us) producer_tx.add(c);
    return {{"offered_msgs_per_s", rate},
            {"producer_tx_p50_ms", producer_tx.percentile(50) / 1000},
            {"producer_tx_p99_ms", producer_tx.percentile(99) / 1000},
            {"achieved_msgs_per_s", static_cast<double>(load.sent) / load.offered_s},
            {"sent", load.sent},
            {"published", static_cast<long>(published.size())},
            {"unpublished_after_drain", missing},
            {"warmup_s", warmup_s},
            {"measured_messages", static_cast<long>(latency_us.size())},
            {"p50_ms", latency_us.percentile(50) / 1000},
            {"p99_ms", latency_us.percentile(99) / 1000},
            {"max_ms", latency_us.percentile(100) / 1000},
            {"p99_ms_with_warmup", with_warmup_us.percentile(99) / 1000},
            {"mark_p50_ms", mark_latency_us.percentile(50) / 1000},
            {"mark_p99_ms", mark_latency_us.percentile(99) / 1000}};
}

nlohmann::json run_latency(pqxx::connection& conn, const std::string& bin, const std::string& dsn,
                           const std::string& brokers, int rate, std::chrono::seconds duration,
                           bool wal_mode = false, bool snapshot_mode = false) {
    auto s = fresh_schema(conn,
                          std::string(wal_mode        ? "bench_relay_wlat_"
                                      : snapshot_mode ? "bench_relay_slat_"
                                                      : "bench_relay_lat_") +
                              std::to_string(rate),
                          wal_mode);
    s.snapshot = snapshot_mode;
    relay_process relay(bin, dsn, brokers, s);
    // Warm up: the first message of a new topic waits for its metadata (about a second on the
    // embedded Kafka); that is start-up, not steady state.
    {
        const auto w = writer_for(s);
        outbox::message m;
        m.topic = s.topic;
        m.key = "warm-up";
        pqxx::work tx{conn};
        (void)w.enqueue(tx, m);
        tx.commit();
        const auto deadline = clock_type::now() + 30s;
        while (published_rows(conn, s) == 0 && clock_type::now() < deadline)
            std::this_thread::sleep_for(10ms);
        pqxx::work clear{conn};
        clear.exec("TRUNCATE " + s.name + ".published, " + s.name + ".published_batch, " + s.name +
                   ".snapshot_batch");
        clear.commit();
    }
    const auto load = offer_load(dsn, s, rate, duration);
    const auto drain_deadline = clock_type::now() + 60s;
    while (published_rows(conn, s) < load.sent && clock_type::now() < drain_deadline)
        std::this_thread::sleep_for(20ms);
    // message id -> (acked_at, published_at), epoch seconds
    std::unordered_map<std::string, std::pair<double, double>> published;
    {
        pqxx::nontransaction tx{conn};
        for (const auto& row : tx.exec("SELECT message_id::text, extract(epoch FROM "
                                       "acked_at)::float8, extract(epoch FROM "
                                       "published_at)::float8 FROM " +
                                       s.name + ".ledger")) {
            if (row[1].is_null()) {
                std::cerr << "bench_relay: a ledger row without acked_at in " << s.name << "\n";
                std::exit(1);
            }
            published.emplace(row[0].c_str(),
                              std::make_pair(row[1].as<double>(), row[2].as<double>()));
        }
    }
    return latency_report(load, published, s.name, rate);
}

// S's commit->ack at `rate` msg/s offered: run_latency's producers write with the table writer
// into ADR 0080's outbox while S runs on it, and each message's ack is its batch's acked_at in
// S's ledger.
nlohmann::json run_snapshot_latency(pqxx::connection& conn, const std::string& dsn,
                                    const std::string& brokers, int rate,
                                    std::chrono::seconds duration) {
    const auto s = fresh_schema(conn, "bench_relay_slat_" + std::to_string(rate));
    drop_shard_index(conn, s.name);
    create_snapshot_bookkeeping(conn, s.name);
    producer p(brokers, "1");  // ferry-relay's linger (relay/src/kafka_sink.cpp): S never flushes
    p.warm_up(s.topic);
    std::atomic<bool> stop{false};
    std::thread relay([&] { (void)snapshot_relay(p, dsn, s.name, s.name + ".outbox", &stop); });
    const auto load = offer_load(dsn, s, rate, duration);
    stop = true;
    relay.join();
    std::unordered_map<std::string, std::pair<double, double>> published;
    pqxx::nontransaction tx{conn};
    for (const auto& row :
         tx.exec("SELECT o.message_id::text, extract(epoch FROM l.acked_at)::float8, "
                 "extract(epoch FROM l.published_at)::float8 FROM " +
                 s.name + ".snap_ledger l CROSS JOIN LATERAL unnest(l.ids) AS u(id) JOIN " +
                 s.name + ".outbox o ON o.id = u.id")) {
        published.emplace(row[0].c_str(), std::make_pair(row[1].as<double>(), row[2].as<double>()));
    }
    return latency_report(load, published, s.name, rate);
}

// --- enqueue cost: the WAL emit path against a plain INSERT -------------------------------------
// Three writers of the same 200-byte message, each for `per_mode` per round, rounds alternating:
//   plain  INSERT into a plain table of the same columns (uuid, text, text, bytea, jsonb,
//          timestamptz), no Ferry: a prepared single-row INSERT, or a prepared INSERT ... SELECT
//          FROM unnest(arrays) for 1000 rows;
//   table  the C++ writer into the outbox table (polling mode);
//   wal    the C++ writer in WAL mode (emit_wal: frame encoding plus the slot guard in SQL).
// 1 message per transaction (each commit waits for its WAL flush) and 1000 per statement.
double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

nlohmann::json run_enqueue_cost(pqxx::connection& conn, std::chrono::seconds per_mode, int rounds) {
    const auto table_s = fresh_schema(conn, "bench_relay_emit_t");
    const auto wal_s = fresh_schema(conn, "bench_relay_emit_w", true);
    // The outbox before migration 0109 (no txid column, no (txid, id) index), with the same
    // table writer: what 0109 costs producers.
    const auto snap_s = fresh_schema(conn, "bench_relay_emit_s");
    remove_0109(conn, snap_s.name);
    {
        pqxx::work tx{conn};
        tx.exec("DROP SCHEMA IF EXISTS bench_relay_plain CASCADE");
        tx.exec("CREATE SCHEMA bench_relay_plain");
        tx.exec(
            "CREATE TABLE bench_relay_plain.msgs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY "
            "KEY, message_id uuid NOT NULL, topic text NOT NULL, key text NOT NULL, payload bytea "
            "NOT NULL, headers jsonb NOT NULL, created_at timestamptz NOT NULL)");
        tx.commit();
    }
    conn.prepare("bench_plain_one",
                 "INSERT INTO bench_relay_plain.msgs (message_id, topic, key, payload, headers, "
                 "created_at) VALUES ($1::uuid, $2, $3, $4::bytea, $5::jsonb, clock_timestamp())");
    conn.prepare("bench_plain_batch",
                 "INSERT INTO bench_relay_plain.msgs (message_id, topic, key, payload, headers, "
                 "created_at) SELECT u.m, u.t, u.k, u.p, u.h, clock_timestamp() FROM "
                 "unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::jsonb[]) AS u(m, t, "
                 "k, p, h)");
    const auto table_w = writer_for(table_s);
    const auto wal_w = writer_for(wal_s);
    const auto snap_w = writer_for(snap_s);
    const std::string payload(200, 'x');
    std::string hex = "\\x";
    for (const unsigned char c : payload) {
        static constexpr char d[] = "0123456789abcdef";
        hex += d[c >> 4];
        hex += d[c & 0xf];
    }
    const auto message_of = [&](const std::string& topic, long i) {
        outbox::message m;
        m.topic = topic;
        m.key = "key-" + std::to_string(i % 1000);
        m.payload = payload;
        return m;
    };
    enum class kind { plain, table, wal, snapshot };
    const auto run_mode = [&](kind k, int per_tx) {
        const auto t0 = clock_type::now();
        long n = 0;
        while (clock_type::now() - t0 < per_mode) {
            pqxx::work tx{conn};
            if (k == kind::plain) {
                if (per_tx == 1) {
                    tx.exec_prepared("bench_plain_one", outbox::message_id::generate().to_string(),
                                     "bench.plain", "key-" + std::to_string(n % 1000),
                                     hex.substr(1), "{}");
                } else {
                    std::string ids = "{", topics = "{", keys = "{", payloads = "{", headers = "{";
                    for (int i = 0; i < per_tx; ++i) {
                        const char* sep = i == 0 ? "" : ",";
                        ids += sep + outbox::message_id::generate().to_string();
                        topics += std::string(sep) + "\"bench.plain\"";
                        keys += std::string(sep) + "\"key-" + std::to_string((n + i) % 1000) + "\"";
                        payloads += std::string(sep) + "\"" + hex + "\"";
                        headers += std::string(sep) + "\"{}\"";
                    }
                    tx.exec_prepared("bench_plain_batch", ids + "}", topics + "}", keys + "}",
                                     payloads + "}", headers + "}");
                }
            } else {
                const auto& w = k == kind::table ? table_w : k == kind::wal ? wal_w : snap_w;
                const auto& topic = k == kind::table ? table_s.topic
                                    : k == kind::wal ? wal_s.topic
                                                     : snap_s.topic;
                if (per_tx == 1) {
                    (void)w.enqueue(tx, message_of(topic, n));
                } else {
                    std::vector<outbox::message> batch;
                    batch.reserve(static_cast<std::size_t>(per_tx));
                    for (int i = 0; i < per_tx; ++i) batch.push_back(message_of(topic, n + i));
                    (void)w.enqueue_batch(tx, batch);
                }
            }
            tx.commit();
            n += per_tx;
        }
        return static_cast<double>(n) /
               std::chrono::duration<double>(clock_type::now() - t0).count();
    };
    nlohmann::json out;
    for (const int per_tx : {1, 1000}) {
        std::map<std::string, std::vector<double>> rates;
        for (int round = 0; round < std::max(1, rounds); ++round) {
            rates["plain"].push_back(run_mode(kind::plain, per_tx));
            rates["table"].push_back(run_mode(kind::table, per_tx));
            rates["wal"].push_back(run_mode(kind::wal, per_tx));
            rates["pre_0109_table"].push_back(run_mode(kind::snapshot, per_tx));
        }
        const double plain = median_of(rates["plain"]), table = median_of(rates["table"]),
                     walr = median_of(rates["wal"]), snap = median_of(rates["pre_0109_table"]);
        out[per_tx == 1 ? "one_per_tx" : "batch_1000"] = {
            {"plain_insert_msgs_per_s", plain},
            {"table_writer_msgs_per_s", table},
            {"wal_writer_msgs_per_s", walr},
            {"rounds", rates},
            // cost per message relative to a plain INSERT (time per message ratio)
            {"wal_cost_vs_plain_insert", walr > 0 ? plain / walr : 0},
            {"table_cost_vs_plain_insert", table > 0 ? plain / table : 0},
            // the outbox before migration 0109 with the table writer: today's table writer's
            // cost per message relative to it (> 1: 0109 made enqueue dearer)
            {"pre_0109_table_writer_msgs_per_s", snap},
            {"table_cost_vs_pre_0109", table > 0 ? snap / table : 0}};
    }
    {
        pqxx::work tx{conn};
        tx.exec("DROP SCHEMA IF EXISTS bench_relay_plain CASCADE");
        tx.commit();
    }
    drop_wal_objects(conn, wal_s.name);
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    const auto a = bench::args::parse(argc, argv);
    const auto dsn = env_or_die("FERRY_TEST_PG_DSN");
    const auto brokers = env_or_die("FERRY_TEST_KAFKA_BROKERS");
    const std::string relay_bin =
        std::getenv("FERRY_RELAY_BIN") ? std::getenv("FERRY_RELAY_BIN") : FERRY_RELAY_PATH;
    const long long n = a.scaled(200000);
    const std::string run = bench::utc_now();
    pqxx::connection conn{dsn};

    // FERRY_BENCH_ONLY=latency skips the drain part (for iterating on latency).
    const std::string only = std::getenv("FERRY_BENCH_ONLY") ? std::getenv("FERRY_BENCH_ONLY") : "";
    const bool latency_only = only == "latency";
    const bool drain_only = only == "drain";
    const bool cost_only = only == "enqueue_cost";
    // Rounds alternate ferry-relay and B1 on fresh backlogs, so slow phases of this noisy
    // machine hit both; each reports the median round.
    const int rounds =
        std::getenv("FERRY_BENCH_ROUNDS") ? std::atoi(std::getenv("FERRY_BENCH_ROUNDS")) : 3;
    drain_result ferry, b1, b0, walr, ferry_np, walr_np, k1, kmax, snap, snap_relay;
    nlohmann::json rounds_json = nlohmann::json::array();
    nlohmann::json dead_polling, dead_wal;
    if (!latency_only && !cost_only) {
        std::vector<drain_result> ferry_rounds, b1_rounds, b0_rounds, wal_rounds, ferry_np_rounds,
            wal_np_rounds, k1_rounds, kmax_rounds, snap_rounds, snap_relay_rounds;
        // FERRY_BENCH_DRAIN_MODES (default "polling wal polling_nopay wal_nopay b1 b0 kafka
        // snapshot snapshot_relay") picks the drains to run, for iterating on one of them; the
        // committed results run them all ("kafka": K1 and Kmax, Kafka alone; "snapshot": S, the
        // reference row; "snapshot_relay": ferry-relay with relay.source: snapshot).
        const std::string modes =
            std::getenv("FERRY_BENCH_DRAIN_MODES")
                ? std::getenv("FERRY_BENCH_DRAIN_MODES")
                : "polling wal polling_nopay wal_nopay b1 b0 kafka snapshot snapshot_relay";
        const auto wanted = [&](const std::string& m) {
            return (" " + modes + " ").find(" " + m + " ") != std::string::npos;
        };
        const auto last_or_empty = [](const std::vector<drain_result>& v) {
            return v.empty() ? drain_result{} : v.back();
        };
        for (int round = 1; round <= std::max(1, rounds); ++round) {
            if (wanted("polling")) {
                std::cout << "round " << round << ": filling " << n
                          << " messages for ferry-relay..." << std::endl;
                auto s = fresh_schema(conn, "bench_relay_ferry");
                fill(conn, s, static_cast<int>(n));
                ferry_rounds.push_back(run_ferry(conn, s, relay_bin, dsn, brokers, n));
                dead_polling = dead_tuples(conn, s);
            }
            if (wanted("snapshot_relay")) {
                std::cout << "round " << round << ": filling " << n
                          << " messages for ferry-relay, relay.source: snapshot..." << std::endl;
                auto s = fresh_schema(conn, "bench_relay_snapsrc");
                s.snapshot = true;
                fill(conn, s, static_cast<int>(n));
                snap_relay_rounds.push_back(run_ferry(conn, s, relay_bin, dsn, brokers, n));
            }
            if (wanted("wal")) {
                std::cout << "round " << round << ": emitting " << n
                          << " messages for ferry-relay in WAL mode..." << std::endl;
                auto s = fresh_schema(conn, "bench_relay_wal", true);
                fill(conn, s, static_cast<int>(n));
                wal_rounds.push_back(run_ferry(conn, s, relay_bin, dsn, brokers, n));
                dead_wal = dead_tuples(conn, s);
                drop_wal_objects(conn, s.name);
            }
            // Both sources again with relay.ledger_payloads: false (the ledger keeps no payload
            // copies; reconciliation can then report a lost message but not re-drive it).
            for (const bool wal_mode : {false, true}) {
                if (!wanted(wal_mode ? "wal_nopay" : "polling_nopay")) continue;
                std::cout << "round " << round << ": " << n << " messages for ferry-relay"
                          << (wal_mode ? " in WAL mode" : "")
                          << " without payloads in the ledger..." << std::endl;
                auto s = fresh_schema(conn, wal_mode ? "bench_relay_wal_np" : "bench_relay_np",
                                      wal_mode);
                s.ledger_payloads = false;
                fill(conn, s, static_cast<int>(n));
                (wal_mode ? wal_np_rounds : ferry_np_rounds)
                    .push_back(run_ferry(conn, s, relay_bin, dsn, brokers, n));
                if (wal_mode) drop_wal_objects(conn, s.name);
            }
            if (wanted("b1")) {
                std::cout << "round " << round << ": filling " << n << " messages for B1..."
                          << std::endl;
                auto s = fresh_schema(conn, "bench_relay_b1");
                fill(conn, s, static_cast<int>(n));
                b1_rounds.push_back(run_b1(conn, s, brokers));
            }
            if (wanted("snapshot")) {
                std::cout << "round " << round << ": filling " << n
                          << " messages for S (snapshot batches)..." << std::endl;
                auto s = fresh_schema(conn, "bench_relay_snap");
                fill(conn, s, static_cast<int>(n));
                prepare_snapshot_table(conn, s);
                snap_rounds.push_back(run_snapshot(conn, dsn, s, brokers));
            }
            if (wanted("kafka")) {
                std::cout << "round " << round << ": Kafka alone (K1, Kmax), " << n
                          << " messages..." << std::endl;
                auto s = fresh_schema(conn, "bench_relay_kafka");
                fill(conn, s, static_cast<int>(n));
                k1_rounds.push_back(run_kafka_only(conn, s, brokers, 1000));
                kmax_rounds.push_back(
                    run_kafka_only(conn, s, brokers, std::numeric_limits<std::size_t>::max()));
            }
            if (wanted("b0")) {
                std::cout << "round " << round << ": B0 (time-boxed 5 s)..." << std::endl;
                auto s = fresh_schema(conn, "bench_relay_b0");
                fill(conn, s, 20000);
                b0_rounds.push_back(run_b0(conn, s, brokers, 5s));
            }
            const auto f = last_or_empty(ferry_rounds), w = last_or_empty(wal_rounds),
                       b = last_or_empty(b1_rounds), z = last_or_empty(b0_rounds);
            rounds_json.push_back(
                {{"ferry_msgs_per_s", f.rate()},
                 {"wal_msgs_per_s", w.rate()},
                 {"ferry_no_ledger_payloads_msgs_per_s", last_or_empty(ferry_np_rounds).rate()},
                 {"wal_no_ledger_payloads_msgs_per_s", last_or_empty(wal_np_rounds).rate()},
                 {"b1_msgs_per_s", b.rate()},
                 {"b0_msgs_per_s", z.rate()},
                 {"k1_msgs_per_s", last_or_empty(k1_rounds).rate()},
                 {"kmax_msgs_per_s", last_or_empty(kmax_rounds).rate()},
                 {"s_snapshot_msgs_per_s", last_or_empty(snap_rounds).rate()},
                 {"snapshot_relay_msgs_per_s", last_or_empty(snap_relay_rounds).rate()},
                 {"ferry_vs_b1", f.rate() / std::max(1.0, b.rate())}});
            std::cout << "  ferry " << f.rate() << " msg/s (" << f.cpu_ms_per_1k()
                      << " ms CPU/1k), WAL " << w.rate() << " msg/s (" << w.cpu_ms_per_1k()
                      << " ms CPU/1k), B1 " << b.rate() << " msg/s, B0 " << z.rate()
                      << " msg/s; busy cores: ferry " << f.to_json()["machine_busy_cores"]
                      << ", WAL " << w.to_json()["machine_busy_cores"] << ", B1 "
                      << b.to_json()["machine_busy_cores"] << std::endl;
        }
        ferry = median_round(ferry_rounds);
        walr = median_round(wal_rounds);
        ferry_np = median_round(ferry_np_rounds);
        walr_np = median_round(wal_np_rounds);
        b1 = median_round(b1_rounds);
        b0 = median_round(b0_rounds);
        k1 = median_round(k1_rounds);
        kmax = median_round(kmax_rounds);
        snap = median_round(snap_rounds);
        snap_relay = median_round(snap_relay_rounds);
    }
    nlohmann::json lat5k = {{"achieved_msgs_per_s", 0.0}, {"p50_ms", 0.0}, {"p99_ms", 0.0}};
    nlohmann::json lat20k = lat5k;
    nlohmann::json wal_lat5k = lat5k;
    nlohmann::json slat5k = lat5k, slat20k = lat5k, srlat5k = lat5k, srlat20k = lat5k;
    nlohmann::json emit_cost = {
        {"one_per_tx", {{"wal_cost_vs_plain_insert", 0.0}, {"table_cost_vs_plain_insert", 0.0}}},
        {"batch_1000", {{"wal_cost_vs_plain_insert", 0.0}, {"table_cost_vs_plain_insert", 0.0}}}};
    if (!drain_only) {
        // Each latency figure is the round with the median p99 of `rounds` rounds (a p99 over
        // 10 s swings with this machine's noise: 11-67 ms at 20k msg/s in single runs); every
        // round's p50 and p99 are kept beside it.
        const auto median_latency = [](std::vector<nlohmann::json> runs) {
            std::vector<double> p50s, p99s;
            for (const auto& r : runs) {
                p50s.push_back(r["p50_ms"].get<double>());
                p99s.push_back(r["p99_ms"].get<double>());
            }
            std::sort(runs.begin(), runs.end(), [](const auto& x, const auto& y) {
                return x["p99_ms"].template get<double>() < y["p99_ms"].template get<double>();
            });
            auto out = runs[runs.size() / 2];
            out["rounds"] = runs.size();
            out["round_p50_ms"] = p50s;
            out["round_p99_ms"] = p99s;
            return out;
        };
        std::vector<nlohmann::json> wal5k_runs, lat5k_runs, lat20k_runs, s5k_runs, s20k_runs,
            sr5k_runs, sr20k_runs;
        // FERRY_BENCH_SNAPSHOT_RELAY_LATENCY=0 leaves ferry-relay's snapshot source out.
        const bool with_snapshot_relay_latency =
            !std::getenv("FERRY_BENCH_SNAPSHOT_RELAY_LATENCY") ||
            std::string(std::getenv("FERRY_BENCH_SNAPSHOT_RELAY_LATENCY")) != "0";
        // FERRY_BENCH_SNAPSHOT_LATENCY=0 leaves S out of the latency rounds.
        const bool with_snapshot_latency =
            !std::getenv("FERRY_BENCH_SNAPSHOT_LATENCY") ||
            std::string(std::getenv("FERRY_BENCH_SNAPSHOT_LATENCY")) != "0";
        for (int round = 1; round <= (cost_only ? 0 : std::max(1, rounds)); ++round) {
            std::cout << "round " << round << ": WAL mode latency at 5k msg/s offered..."
                      << std::endl;
            wal5k_runs.push_back(run_latency(conn, relay_bin, dsn, brokers, 5000,
                                             std::chrono::seconds(a.scaled(10)), true));
            drop_wal_objects(conn, "bench_relay_wlat_5000");
            std::cout << "round " << round << ": latency at 5k and 20k msg/s offered..."
                      << std::endl;
            lat5k_runs.push_back(run_latency(conn, relay_bin, dsn, brokers, 5000,
                                             std::chrono::seconds(a.scaled(10))));
            lat20k_runs.push_back(run_latency(conn, relay_bin, dsn, brokers, 20000,
                                              std::chrono::seconds(a.scaled(10))));
            if (with_snapshot_relay_latency) {
                std::cout << "round " << round
                          << ": relay.source: snapshot latency at 5k and 20k msg/s offered..."
                          << std::endl;
                sr5k_runs.push_back(run_latency(conn, relay_bin, dsn, brokers, 5000,
                                                std::chrono::seconds(a.scaled(10)), false, true));
                sr20k_runs.push_back(run_latency(conn, relay_bin, dsn, brokers, 20000,
                                                 std::chrono::seconds(a.scaled(10)), false, true));
                std::cout << "  snapshot source p99: 5k " << sr5k_runs.back()["p99_ms"]
                          << " ms, 20k " << sr20k_runs.back()["p99_ms"] << " ms" << std::endl;
            }
            if (with_snapshot_latency) {
                std::cout << "round " << round << ": S latency at 5k and 20k msg/s offered..."
                          << std::endl;
                s5k_runs.push_back(run_snapshot_latency(conn, dsn, brokers, 5000,
                                                        std::chrono::seconds(a.scaled(10))));
                s20k_runs.push_back(run_snapshot_latency(conn, dsn, brokers, 20000,
                                                         std::chrono::seconds(a.scaled(10))));
                std::cout << "  S p99: 5k " << s5k_runs.back()["p99_ms"] << " ms, 20k "
                          << s20k_runs.back()["p99_ms"] << " ms" << std::endl;
            }
            std::cout << "  p99: WAL 5k " << wal5k_runs.back()["p99_ms"] << " ms, 5k "
                      << lat5k_runs.back()["p99_ms"] << " ms, 20k " << lat20k_runs.back()["p99_ms"]
                      << " ms" << std::endl;
        }
        if (!cost_only) {
            wal_lat5k = median_latency(wal5k_runs);
            lat5k = median_latency(lat5k_runs);
            lat20k = median_latency(lat20k_runs);
            if (with_snapshot_latency) {
                slat5k = median_latency(s5k_runs);
                slat20k = median_latency(s20k_runs);
            }
            if (with_snapshot_relay_latency) {
                srlat5k = median_latency(sr5k_runs);
                srlat20k = median_latency(sr20k_runs);
            }
        }
        std::cout << "enqueue cost: WAL emit vs plain INSERT..." << std::endl;
        emit_cost = run_enqueue_cost(conn, std::chrono::seconds(a.scaled(3)), std::max(1, rounds));
    }

    const double vs_b1 = b1.rate() > 0 ? ferry.rate() / b1.rate() : 0,
                 vs_b0 = b0.rate() > 0 ? ferry.rate() / b0.rate() : 0,
                 wal_vs_b1 = b1.rate() > 0 ? walr.rate() / b1.rate() : 0;
    const auto mark_p99 = [](const nlohmann::json& lat) {
        return lat.contains("mark_p99_ms") ? lat["mark_p99_ms"].get<double>() : 0.0;
    };
    const auto cost = [&](const char* form) {
        return emit_cost[form]["wal_cost_vs_plain_insert"].get<double>();
    };
    bench::print_table(
        "relay benchmark (" + std::to_string(n) + " x 200 B backlog, embedded Kafka)",
        {{"ferry-relay drain", ferry.rate(), "msg/s"},
         {"B1 (DELETE..SKIP LOCKED LIMIT 1000) drain", b1.rate(), "msg/s"},
         {"B0 (per-message) drain", b0.rate(), "msg/s"},
         {"ferry / B1 (target >= 1.5)", vs_b1, "x"},
         {"ferry / B0 (target >= 50)", vs_b0, "x"},
         {"ferry-relay CPU per 1k msgs (target <= 5)", ferry.cpu_ms_per_1k(), "ms"},
         {"WAL mode drain", walr.rate(), "msg/s"},
         {"WAL mode / B1 (target >= 2)", wal_vs_b1, "x"},
         {"WAL mode CPU per 1k msgs", walr.cpu_ms_per_1k(), "ms"},
         {"polling, ledger without payloads: drain", ferry_np.rate(), "msg/s"},
         {"  / B1", b1.rate() > 0 ? ferry_np.rate() / b1.rate() : 0, "x"},
         {"WAL mode, ledger without payloads: drain", walr_np.rate(), "msg/s"},
         {"  / B1", b1.rate() > 0 ? walr_np.rate() / b1.rate() : 0, "x"},
         {"WAL mode 5k/s offered: p50 commit->ack", wal_lat5k["p50_ms"].get<double>(), "ms"},
         {"WAL mode 5k/s offered: p99 commit->ack", wal_lat5k["p99_ms"].get<double>(), "ms"},
         {"  p99 commit->mark", mark_p99(wal_lat5k), "ms"},
         {"emit cost / plain INSERT, 1 per tx (target <= 1.2)", cost("one_per_tx"), "x"},
         {"emit cost / plain INSERT, 1000 per stmt (target <= 1.2)", cost("batch_1000"), "x"},
         {"table writer / before migration 0109, 1 per tx",
          emit_cost["one_per_tx"].value("table_cost_vs_pre_0109", 0.0), "x"},
         {"table writer / before migration 0109, 1000 per stmt",
          emit_cost["batch_1000"].value("table_cost_vs_pre_0109", 0.0), "x"},
         {"B1 CPU per 1k msgs", b1.cpu_ms_per_1k(), "ms"},
         {"Kafka alone, K1 (B1 without the database)", k1.rate(), "msg/s"},
         {"Kafka alone, Kmax (one flush at the end)", kmax.rate(), "msg/s"},
         {"ferry-relay, relay.source: snapshot: drain", snap_relay.rate(), "msg/s"},
         {"  / B1", b1.rate() > 0 ? snap_relay.rate() / b1.rate() : 0, "x"},
         {"  CPU per 1k msgs", snap_relay.cpu_ms_per_1k(), "ms"},
         {"  5k/s offered: p99 commit->ack", srlat5k["p99_ms"].get<double>(), "ms"},
         {"  20k/s offered: achieved", srlat20k["achieved_msgs_per_s"].get<double>(), "msg/s"},
         {"  20k/s offered: p99 commit->ack", srlat20k["p99_ms"].get<double>(), "ms"},
         {"S, snapshot batches (ADR 0080, database work only)", snap.rate(), "msg/s"},
         {"  / B1", b1.rate() > 0 ? snap.rate() / b1.rate() : 0, "x"},
         {"S 5k/s offered: p99 commit->ack", slat5k["p99_ms"].get<double>(), "ms"},
         {"S 20k/s offered: p99 commit->ack", slat20k["p99_ms"].get<double>(), "ms"},
         {"5k/s offered: achieved", lat5k["achieved_msgs_per_s"].get<double>(), "msg/s"},
         {"5k/s offered: p50 commit->ack", lat5k["p50_ms"].get<double>(), "ms"},
         {"5k/s offered: p99 commit->ack (target <= 10)", lat5k["p99_ms"].get<double>(), "ms"},
         {"  p99 commit->mark", mark_p99(lat5k), "ms"},
         {"20k/s offered: achieved", lat20k["achieved_msgs_per_s"].get<double>(), "msg/s"},
         {"20k/s offered: p50 commit->ack", lat20k["p50_ms"].get<double>(), "ms"},
         {"20k/s offered: p99 commit->ack (target <= 25)", lat20k["p99_ms"].get<double>(), "ms"},
         {"  p99 commit->mark", mark_p99(lat20k), "ms"}});
    bench::write_json(
        a, {{"bench", "relay"},
            {"run", run},
            {"backlog_messages", n},
            {"payload_bytes", 200},
            {"drain",
             {{"ferry_relay", ferry.to_json()},
              {"ferry_relay_wal", walr.to_json()},
              {"ferry_relay_no_ledger_payloads", ferry_np.to_json()},
              {"ferry_relay_wal_no_ledger_payloads", walr_np.to_json()},
              {"b1_skip_locked_batch", b1.to_json()},
              {"b0_per_message", b0.to_json()},
              {"kafka_alone_k1", k1.to_json()},
              {"kafka_alone_kmax", kmax.to_json()},
              {"s_snapshot_batches", snap.to_json()},
              {"ferry_relay_snapshot", snap_relay.to_json()}}},
            {"ratios",
             {{"ferry_vs_b1", vs_b1},
              {"ferry_vs_b0", vs_b0},
              {"wal_vs_b1", wal_vs_b1},
              {"no_ledger_payloads_vs_b1", b1.rate() > 0 ? ferry_np.rate() / b1.rate() : 0},
              {"wal_no_ledger_payloads_vs_b1", b1.rate() > 0 ? walr_np.rate() / b1.rate() : 0},
              {"s_snapshot_vs_b1", b1.rate() > 0 ? snap.rate() / b1.rate() : 0},
              {"snapshot_relay_vs_b1", b1.rate() > 0 ? snap_relay.rate() / b1.rate() : 0},
              {"wal_emit_cost_vs_plain_insert_one_per_tx", cost("one_per_tx")},
              {"wal_emit_cost_vs_plain_insert_batch_1000", cost("batch_1000")}}},
            {"wal_latency_5k", wal_lat5k},
            {"snapshot_latency", {slat5k, slat20k}},
            {"snapshot_relay_latency", {srlat5k, srlat20k}},
            {"enqueue_cost", emit_cost},
            {"dead_tuples_after_drain", {{"polling", dead_polling}, {"wal", dead_wal}}},
            {"rounds", rounds_json},
            {"latency", {lat5k, lat20k}},
            {"targets",
             {{"ferry_vs_b1", 1.5},
              {"ferry_vs_b0", 50.0},
              {"p99_ms_at_5k", 10.0},
              {"p99_ms_at_20k", 25.0},
              {"cpu_ms_per_1k", 5.0},
              {"wal_vs_b1", 2.0},
              {"wal_emit_cost_vs_plain_insert", 1.2}}},
            {"latency_note",
             "p50_ms, p99_ms, max_ms: commit->ack, from the producer's COMMIT returning to the "
             "ledger's acked_at (the batch's last delivery report, relay clock), over the "
             "messages committed after a 2 s warm-up; p99_ms_with_warmup: the same over every "
             "message; mark_p50_ms, mark_p99_ms: commit->mark, to the ledger's published_at "
             "(the start of the mark that recorded the batch)"}});
    for (const char* name :
         {"bench_relay_ferry", "bench_relay_b1", "bench_relay_b0", "bench_relay_lat_5000",
          "bench_relay_lat_20000", "bench_relay_wal", "bench_relay_np", "bench_relay_wal_np",
          "bench_relay_wlat_5000", "bench_relay_emit_t", "bench_relay_emit_w", "bench_relay_snap",
          "bench_relay_kafka"}) {
        pqxx::work tx{conn};
        tx.exec(std::string("DROP SCHEMA IF EXISTS ") + name + " CASCADE");
        tx.commit();
    }
    return 0;
}
