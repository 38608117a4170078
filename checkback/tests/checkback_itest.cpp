// Check-back end to end on a real PostgreSQL: each resolver type resolves a half message whose
// producer crashed after prepare, routing prefers the preparing instance, unanswered messages
// are parked after their last check, and checks stop once a decision is recorded.
#include <httplib.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "checkback_fixture.hpp"
#include "ferry/test/unique_name.hpp"

using namespace ferry;
using checkback::check_decision;

class CheckbackTest : public CheckbackFixture {};

// The producer crashed after prepare (it never decides). A peer instance of its group answers
// from the service's own state, and the message ends committed and in the outbox.
TEST_F(CheckbackTest, CallbackResolverResolvesAMessageWhoseProducerCrashed) {
    outbox::half_options o;
    o.producer_group = "payments";
    o.producer_instance = "payments-crashed";
    const auto paid = prepare("paid-1", o);
    const auto failed = prepare("failed-1", o);
    outbox::checkback_responder peer(
        responder_opts("payments-peer"), [](const outbox::half_message_info& h) {
            return h.tx_ref.rfind("paid", 0) == 0 ? outbox::check_decision::commit
                                                  : outbox::check_decision::rollback;
        });
    peer.start();
    auto opts = scheduler_opts();
    opts.groups["payments"] = checkback::make_callback_resolver(callback_opts());
    checkback::scheduler s(opts);
    EXPECT_EQ(s.run_once(), 2);

    const auto a = read(paid), b = read(failed);
    EXPECT_EQ(a.state, "committed");
    EXPECT_EQ(a.decided_by, "checkback");
    EXPECT_EQ(a.in_outbox, 1);
    EXPECT_NE(a.last_check_result.find("answered by payments-peer"), std::string::npos)
        << a.last_check_result;
    EXPECT_EQ(b.state, "rolled_back");
    EXPECT_EQ(b.in_outbox, 0);
    EXPECT_EQ(s.stats().checks_commit.load(), 1u);
    EXPECT_EQ(s.stats().checks_rollback.load(), 1u);
}

// The scheduler's metrics land in the registry it is given, by outcome, without any copying.
TEST_F(CheckbackTest, SchedulerCountsIntoTheRegistryItIsGiven) {
    ferry::metrics::registry reg;
    outbox::half_options o;
    o.producer_group = "payments";
    o.max_checks = 1;
    (void)prepare("paid-1", o);
    (void)prepare("other-1", o);
    outbox::checkback_responder peer(
        responder_opts("peer"), [](const outbox::half_message_info& h) {
            return h.tx_ref.rfind("paid", 0) == 0 ? outbox::check_decision::commit
                                                  : outbox::check_decision::unknown;
        });
    peer.start();
    auto opts = scheduler_opts();
    opts.metrics = &reg;
    opts.groups["payments"] = checkback::make_callback_resolver(callback_opts());
    checkback::scheduler s(opts);
    EXPECT_EQ(s.run_once(), 2);
    const auto text = reg.serialize();
    EXPECT_NE(text.find("ferry_checkback_checks_total{outcome=\"commit\"} 1"), std::string::npos)
        << text;
    EXPECT_NE(text.find("ferry_checkback_checks_total{outcome=\"unknown\"} 1"), std::string::npos)
        << text;
    EXPECT_NE(text.find("ferry_checkback_checks_total{outcome=\"rollback\"} 0"), std::string::npos)
        << text;
    EXPECT_NE(text.find("ferry_checkback_parked_total 1"), std::string::npos) << text;
}

TEST_F(CheckbackTest, CallbackGoesFirstToThePreparingInstance) {
    std::mutex mu;
    std::vector<std::string> answered_by;
    auto make = [&](const std::string& name) {
        return std::make_unique<outbox::checkback_responder>(
            responder_opts(name), [&, name](const outbox::half_message_info&) {
                std::lock_guard lock(mu);
                answered_by.push_back(name);
                return outbox::check_decision::commit;
            });
    };
    auto a = make("inst-a"), b = make("inst-b");
    a->start();
    b->start();
    outbox::half_options o;
    o.producer_group = "payments";
    o.producer_instance = "inst-b";
    for (int i = 0; i < 5; ++i) (void)prepare("tx-" + std::to_string(i), o);
    auto opts = scheduler_opts();
    opts.groups["payments"] = checkback::make_callback_resolver(callback_opts());
    checkback::scheduler s(opts);
    EXPECT_EQ(s.run_once(), 5);
    std::lock_guard lock(mu);
    ASSERT_EQ(answered_by.size(), 5u);
    for (const auto& who : answered_by) EXPECT_EQ(who, "inst-b");
}

// The preparing instance looks alive (fresh heartbeat) but never answers: after half the timeout
// the request opens to the whole group and a peer answers within the same check.
TEST_F(CheckbackTest, CallbackFallsBackToAnyLiveInstance) {
    {
        pqxx::work tx{conn()};
        tx.exec("INSERT INTO \"" + schema() +
                "\".producer_instance (producer_group, instance_id) VALUES ('payments', 'ghost')");
        tx.commit();
    }
    outbox::checkback_responder peer(responder_opts("peer"), [](const outbox::half_message_info&) {
        return outbox::check_decision::rollback;
    });
    peer.start();
    outbox::half_options o;
    o.producer_group = "payments";
    o.producer_instance = "ghost";
    const auto id = prepare("tx-ghost", o);
    auto opts = scheduler_opts();
    opts.groups["payments"] =
        checkback::make_callback_resolver(callback_opts(std::chrono::milliseconds(1500)));
    checkback::scheduler s(opts);
    EXPECT_EQ(s.run_once(), 1);
    const auto r = read(id);
    EXPECT_EQ(r.state, "rolled_back");
    EXPECT_NE(r.last_check_result.find("answered by peer"), std::string::npos)
        << r.last_check_result;
    EXPECT_EQ(r.check_count, 1);
}

// No instance of the group ever comes back: every check is unknown, and after the last one the
// message is parked (never discarded), counted, and visible to the gauges.
TEST_F(CheckbackTest, ResponderDownUntilChecksRunOutParksTheMessage) {
    outbox::half_options o;
    o.producer_group = "payments";
    o.max_checks = 3;
    o.check_interval = std::chrono::milliseconds(50);
    const auto id = prepare("tx-lost", o);
    auto opts = scheduler_opts();
    opts.groups["payments"] =
        checkback::make_callback_resolver(callback_opts(std::chrono::milliseconds(300)));
    checkback::scheduler s(opts);
    s.start();
    EXPECT_TRUE(eventually([&] { return read(id).state == "parked"; }));
    // A few more ticks: a parked message is never checked again.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    s.stop();
    const auto r = read(id);
    EXPECT_EQ(r.state, "parked");
    EXPECT_EQ(r.check_count, 3);
    EXPECT_EQ(r.in_outbox, 0);
    EXPECT_NE(r.last_check_result.find("no live instance"), std::string::npos)
        << r.last_check_result;
    EXPECT_EQ(s.stats().parked.load(), 1u);
    EXPECT_EQ(s.stats().checks_unknown.load(), 3u);
    const auto g = s.read_gauges();
    EXPECT_EQ(g.parked, 1);
    EXPECT_EQ(g.pending, 0);
    // An operator (or the producer, late) can still resolve it.
    EXPECT_EQ(outbox::commit(writer(), conn(), id), outbox::half_state::committed);
    EXPECT_EQ(read(id).in_outbox, 1);
}

TEST_F(CheckbackTest, ChecksStopOnceADecisionIsRecorded) {
    std::atomic<int> calls{0};
    outbox::checkback_responder peer(responder_opts("peer"), [&](const outbox::half_message_info&) {
        ++calls;
        return outbox::check_decision::unknown;
    });
    peer.start();
    outbox::half_options o;
    o.producer_group = "payments";
    o.check_interval = std::chrono::milliseconds(50);
    const auto decided_first = prepare("tx-1", o);
    (void)outbox::commit(writer(), conn(), decided_first);  // decided before any check was due
    const auto decided_later = prepare("tx-2", o);
    auto opts = scheduler_opts();
    opts.groups["payments"] = checkback::make_callback_resolver(callback_opts());
    checkback::scheduler s(opts);
    EXPECT_EQ(s.run_once(), 1);  // only the undecided one
    EXPECT_EQ(calls.load(), 1);
    EXPECT_EQ(read(decided_later).check_count, 1);
    (void)outbox::rollback(writer(), conn(), decided_later);
    for (int i = 0; i < 5; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(60));
        EXPECT_EQ(s.run_once(), 0);
    }
    EXPECT_EQ(calls.load(), 1);
    EXPECT_EQ(read(decided_first).check_count, 0);
    EXPECT_EQ(read(decided_later).check_count, 1);
    EXPECT_EQ(read(decided_later).state, "rolled_back");
}

// A real HTTP server (cpp-httplib on loopback) answers from the request's tx_ref.
TEST_F(CheckbackTest, HttpResolverAgainstARealServer) {
    httplib::Server server;
    std::mutex mu;
    std::vector<nlohmann::json> requests;
    server.Post("/check", [&](const httplib::Request& req, httplib::Response& res) {
        auto body = nlohmann::json::parse(req.body);
        {
            std::lock_guard lock(mu);
            requests.push_back(body);
        }
        if (req.get_header_value("Authorization") != "Bearer s3cret") {
            res.status = 401;
            return;
        }
        const auto tx = body.at("tx_ref").get<std::string>();
        const std::string d = tx == "ok" ? "commit" : tx == "bad" ? "rollback" : "unknown";
        res.set_content(nlohmann::json{{"decision", d}}.dump(), "application/json");
    });
    const int port = server.bind_to_any_port("127.0.0.1");
    std::thread t([&] { server.listen_after_bind(); });
    outbox::half_options o;
    o.producer_group = "payments";
    const auto ok = prepare("ok", o), bad = prepare("bad", o), unsure = prepare("unsure", o);
    checkback::http_options h;
    h.url = "http://127.0.0.1:" + std::to_string(port) + "/check";
    h.headers["Authorization"] = "Bearer s3cret";
    auto opts = scheduler_opts();
    opts.groups["payments"] = checkback::make_http_resolver(h);
    checkback::scheduler s(opts);
    EXPECT_EQ(s.run_once(), 3);
    server.stop();
    t.join();
    EXPECT_EQ(read(ok).state, "committed");
    EXPECT_EQ(read(bad).state, "rolled_back");
    EXPECT_EQ(read(unsure).state, "pending");
    EXPECT_EQ(read(unsure).check_count, 1);
    std::lock_guard lock(mu);
    ASSERT_EQ(requests.size(), 3u);
    for (const auto& r : requests) {
        EXPECT_EQ(r.at("producer_group"), "payments");
        EXPECT_EQ(r.at("topic"), "payments");
        EXPECT_EQ(r.at("check_number"), 1);
        EXPECT_EQ(r.at("message_id").get<std::string>().size(), 36u);
    }
}

TEST_F(CheckbackTest, HttpResolverTreatsAnUnreachableServerAsUnknown) {
    outbox::half_options o;
    o.producer_group = "payments";
    const auto id = prepare("tx", o);
    checkback::http_options h;
    h.url = "http://127.0.0.1:1/check";  // nothing listens on port 1
    h.timeout = std::chrono::milliseconds(500);
    auto opts = scheduler_opts();
    opts.groups["payments"] = checkback::make_http_resolver(h);
    checkback::scheduler s(opts);
    EXPECT_EQ(s.run_once(), 1);
    const auto r = read(id);
    EXPECT_EQ(r.state, "pending");
    EXPECT_NE(r.last_check_result.find("unknown: HTTP request failed"), std::string::npos)
        << r.last_check_result;
}

// The producer's own (second, real) database says what happened to each local transaction.
TEST_F(CheckbackTest, SqlResolverAgainstASecondDatabase) {
    const auto db = test::unique_name("producer_db");
    {
        pqxx::nontransaction admin{conn()};
        admin.exec("CREATE DATABASE " + db);
    }
    const auto base = test::pg_dsn();
    const auto dsn = base.substr(0, base.rfind('/')) + "/" + db;
    {
        pqxx::connection pc{dsn};
        pqxx::work tx{pc};
        tx.exec("CREATE TABLE payments (tx_ref text PRIMARY KEY, status text NOT NULL)");
        tx.exec("INSERT INTO payments VALUES ('p-ok', 'paid'), ('p-bad', 'declined')");
        tx.commit();
    }
    outbox::half_options o;
    o.producer_group = "ledger";
    const auto ok = prepare("p-ok", o), bad = prepare("p-bad", o),
               missing = prepare("p-missing", o);
    checkback::sql_options so;
    so.dsn = dsn;
    so.query = "SELECT status = 'paid' FROM payments WHERE tx_ref = $1";
    auto opts = scheduler_opts();
    opts.groups["ledger"] = checkback::make_sql_resolver(so);
    {
        checkback::scheduler s(opts);
        EXPECT_EQ(s.run_once(), 3);
    }
    opts.groups.clear();
    EXPECT_EQ(read(ok).state, "committed");
    EXPECT_EQ(read(bad).state, "rolled_back");
    EXPECT_EQ(read(missing).state, "pending");
    EXPECT_NE(read(missing).last_check_result.find("no row"), std::string::npos);
    pqxx::nontransaction admin{conn()};
    admin.exec("DROP DATABASE " + db + " WITH (FORCE)");
}

TEST_F(CheckbackTest, GroupWithoutResolverIsUnknownNotDropped) {
    outbox::half_options o;
    o.producer_group = "nobody";
    o.max_checks = 1;
    const auto id = prepare("tx", o);
    checkback::scheduler s(scheduler_opts());
    EXPECT_EQ(s.run_once(), 1);
    const auto r = read(id);
    EXPECT_EQ(r.state, "parked");
    EXPECT_NE(r.last_check_result.find("no resolver configured for producer group nobody"),
              std::string::npos);
}

// The producer commits while the scheduler's check-back rolls back, many times over: each
// message ends in exactly one terminal state and is in the outbox iff committed.
TEST_F(CheckbackTest, ProducerCommitRacingCheckbackHasOneTerminalState) {
    constexpr int n = 120;
    outbox::half_options o;
    o.producer_group = "payments";
    std::vector<outbox::message_id> ids;
    for (int i = 0; i < n; ++i) ids.push_back(prepare("race-" + std::to_string(i), o));
    checkback::http_options h;  // answered by an in-process server that always says rollback
    httplib::Server server;
    server.Post("/check", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(R"({"decision":"rollback"})", "application/json");
    });
    const int port = server.bind_to_any_port("127.0.0.1");
    std::thread t([&] { server.listen_after_bind(); });
    h.url = "http://127.0.0.1:" + std::to_string(port) + "/check";
    auto opts = scheduler_opts();
    opts.batch_size = 4;
    opts.groups["payments"] = checkback::make_http_resolver(h);
    checkback::scheduler s(opts);
    s.start();
    int conflicts = 0;
    {
        pqxx::connection c{test::pg_dsn()};
        for (const auto& id : ids) {
            try {
                (void)outbox::commit(writer(), c, id);
            } catch (const ferry::error& e) {
                ASSERT_EQ(e.code(), "outbox.half_conflict") << e.what();
                ++conflicts;
            }
        }
    }
    s.stop();
    server.stop();
    t.join();
    int committed = 0, rolled_back = 0;
    for (const auto& id : ids) {
        const auto r = read(id);
        ASSERT_TRUE(r.state == "committed" || r.state == "rolled_back") << r.state;
        EXPECT_EQ(r.in_outbox, r.state == "committed" ? 1 : 0);
        committed += r.state == "committed";
        rolled_back += r.state == "rolled_back";
    }
    EXPECT_EQ(committed + rolled_back, n);
    EXPECT_EQ(rolled_back, conflicts)
        << "every refused commit is a message the check-back rolled back first";
}
