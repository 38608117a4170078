// ferry-relay's HTTP surface, against the real binary and servers: the bearer token on /reports
// and /metrics (probes stay open), request size limits, strict `limit`, error bodies without
// libpq text, and the bounded pool of report connections.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <future>
#include <pqxx/pqxx>
#include <sstream>
#include <thread>
#include <vector>

#include "ferry/outbox/migrate.hpp"
#include "ferry/test/child_process.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/scoped_schema.hpp"
#include "ferry/test/unique_name.hpp"

namespace {

using namespace std::chrono_literals;

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// One ferry-relay with the given `http:` keys (and DSN), on a free port.
class relay_process {
public:
    relay_process(const std::string& schema, const std::string& http_keys,
                  std::map<std::string, std::string> env = {},
                  const std::string& dsn = ferry::test::pg_dsn()) {
        _config = "/tmp/" + ferry::test::unique_name("relay_http") + ".yaml";
        _log = "/tmp/" + ferry::test::unique_name("relay_http") + ".log";
        std::ofstream f(_config);
        f << "postgres:\n  dsn: \"" << dsn << "\"\n  schema: " << schema
          << "\nkafka:\n  brokers: \"" << ferry::test::kafka_brokers()
          << "\"\nhttp:\n  listen: 127.0.0.1:0\n"
          << http_keys;
        f.close();
        ferry::test::child_options o;
        o.env = std::move(env);
        o.stderr_path = _log;
        _child = std::make_unique<ferry::test::child_process>(
            FERRY_RELAY_PATH, std::vector<std::string>{"--config", _config}, o);
        const auto listen = _child->wait_for_prefix("http.listen=", 60s);
        if (!listen) throw std::runtime_error("ferry-relay did not listen:\n" + slurp(_log));
        port = std::stoi(listen->substr(listen->rfind(':') + 1));
    }
    ~relay_process() {
        _child->shutdown(10s);
        std::remove(_config.c_str());
        std::remove(_log.c_str());
    }
    relay_process(const relay_process&) = delete;
    relay_process& operator=(const relay_process&) = delete;

    [[nodiscard]] httplib::Client client() const {
        httplib::Client c("127.0.0.1", port);
        c.set_read_timeout(60, 0);
        return c;
    }
    [[nodiscard]] std::string log() const { return slurp(_log); }

    int port = 0;

private:
    std::string _config, _log;
    std::unique_ptr<ferry::test::child_process> _child;
};

class RelayHttpTest : public ::testing::Test {
protected:
    void SetUp() override {
        pqxx::connection c{ferry::test::pg_dsn()};
        (void)ferry::outbox::migrate(c, _schema.name());
    }
    ferry::test::scoped_schema _schema{"rhttp"};
};

httplib::Headers bearer(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }

TEST_F(RelayHttpTest, BearerTokenGuardsReportsAndMetricsNotProbes) {
    const std::string var = "FERRY_TEST_TOKEN_" + ferry::test::unique_name("t");
    const std::string token = "tok-" + ferry::test::unique_name("secret") + "-0123456789";
    relay_process relay(_schema.name(), "  token_env: " + var + "\n  token_for_metrics: true\n",
                        {{var, token}});
    auto http = relay.client();
    for (const char* path : {"/reports", "/reports/1", "/metrics"}) {
        SCOPED_TRACE(path);
        auto res = http.Get(path);
        ASSERT_TRUE(res);
        EXPECT_EQ(res->status, 401);
        EXPECT_EQ(res->get_header_value("WWW-Authenticate").rfind("Bearer", 0), 0u);
        EXPECT_NE(res->body.find("\"code\":\"http.unauthorized\""), std::string::npos);
        res = http.Get(path, bearer(token + "x"));
        ASSERT_TRUE(res);
        EXPECT_EQ(res->status, 401);
        EXPECT_NE(res->get_header_value("WWW-Authenticate").find("invalid_token"),
                  std::string::npos);
        res = http.Get(path, bearer(token.substr(0, token.size() - 1)));
        ASSERT_TRUE(res);
        EXPECT_EQ(res->status, 401);
        res = http.Get(path, {{"Authorization", "Basic " + token}});
        ASSERT_TRUE(res);
        EXPECT_EQ(res->status, 401);
    }
    auto res = http.Get("/reports", bearer(token));
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
    EXPECT_NE(res->body.find("\"runs\""), std::string::npos) << res->body;
    res = http.Get("/reports/999999999", {{"authorization", "bearer " + token}});
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 404) << res->body;
    res = http.Get("/metrics", bearer(token));
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    EXPECT_NE(res->body.find("ferry_relay"), std::string::npos);
    res = http.Get("/healthz");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    res = http.Get("/readyz");
    ASSERT_TRUE(res);
    EXPECT_NE(res->status, 401);
    EXPECT_EQ(relay.log().find(token), std::string::npos) << "the token reached the log";

    // Negative control: without token_env the same request is served without credentials.
    relay_process open(_schema.name(), "");
    auto plain = open.client();
    res = plain.Get("/reports");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
}

TEST_F(RelayHttpTest, MissingOrShortTokenStopsTheRelayAtStart) {
    const std::string var = "FERRY_TEST_TOKEN_" + ferry::test::unique_name("t");
    for (const auto& env : std::vector<std::map<std::string, std::string>>{{}, {{var, "short"}}}) {
        EXPECT_THROW(relay_process(_schema.name(), "  token_env: " + var + "\n", env),
                     std::runtime_error);
    }
}

TEST_F(RelayHttpTest, OversizedRequestsAreRefused) {
    relay_process relay(_schema.name(), "  max_body_bytes: 4KiB\n  max_uri_bytes: 1024\n");
    auto http = relay.client();
    auto res = http.Get(("/reports?kind=" + std::string(2000, 'a')).c_str());
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 414);
    EXPECT_NE(res->body.find("http.uri_too_long"), std::string::npos) << res->body;
    res = http.Get(("/healthz?" + std::string(2000, 'a')).c_str());
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 414);
    res = http.Post("/healthz", std::string(64 * 1024, 'x'), "text/plain");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 413);
    // Controls: a short target and a small body pass the limits (a POST has no route).
    res = http.Get(("/reports?kind=" + std::string(100, 'a')).c_str());
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
    res = http.Post("/healthz", std::string(100, 'x'), "text/plain");
    ASSERT_TRUE(res);
    EXPECT_NE(res->status, 413);
}

TEST_F(RelayHttpTest, LimitIsParsedStrictlyAndCapped) {
    relay_process relay(_schema.name(), "  reports_max_limit: 50\n");
    auto http = relay.client();
    for (const std::string bad : {"abc", "0", "-1", "51", "10abc", " 5", "5.0", "+5",
                                  "99999999999999999999999", "0x10", ""}) {
        SCOPED_TRACE("limit=" + bad);
        auto res = http.Get(("/reports?limit=" + bad).c_str());
        ASSERT_TRUE(res);
        EXPECT_EQ(res->status, 400) << res->body;
        EXPECT_NE(res->body.find("limit must be a whole number from 1 to 50"), std::string::npos)
            << res->body;
        EXPECT_NE(res->body.find("http.bad_limit"), std::string::npos) << res->body;
    }
    for (const std::string good : {"1", "50", "007"}) {
        auto res = http.Get(("/reports?limit=" + good).c_str());
        ASSERT_TRUE(res);
        EXPECT_EQ(res->status, 200) << good << ": " << res->body;
    }
    auto res = http.Get("/reports/1?limit=51");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400);
    res = http.Get("/reports?colour=blue");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400);
    EXPECT_NE(res->body.find("unknown query parameter"), std::string::npos) << res->body;
}

TEST_F(RelayHttpTest, ErrorBodiesCarryNoLibpqText) {
    // A database that refuses the connection: nothing listens on port 1.
    const std::string user = "ferry_secret_user";
    const std::string db = "ferry_secret_db";
    relay_process relay(_schema.name(), "", {},
                        "postgresql://" + user + "@127.0.0.1:1/" + db + "?connect_timeout=2");
    auto http = relay.client();
    for (const char* path : {"/reports", "/reports/1"}) {
        SCOPED_TRACE(path);
        auto res = http.Get(path);
        ASSERT_TRUE(res);
        EXPECT_EQ(res->status, 503) << res->body;
        EXPECT_EQ(res->get_header_value("Retry-After"), "1");
        for (const std::string& leak :
             {user, db, std::string("127.0.0.1"), std::string("port 1"), std::string("refused"),
              std::string("connection to server"), std::string("postgres")}) {
            EXPECT_EQ(res->body.find(leak), std::string::npos) << leak << " in " << res->body;
        }
        EXPECT_NE(res->body.find("\"ref\":"), std::string::npos) << res->body;
    }
    // The detail is in the relay's log, under the ref, for the operator.
    std::string log;
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < until) {
        log = relay.log();
        if (log.find("event=http_error ref=") != std::string::npos) break;
        std::this_thread::sleep_for(100ms);
    }
    EXPECT_NE(log.find("event=http_error ref="), std::string::npos) << log;
}

// Reports are served from at most report_connections PostgreSQL sessions, counted in
// pg_stat_activity (ground truth: sessions of application "ferry-reports" whose statements name
// this test's schema). While a lock holds the first two requests, the others wait at most
// report_pool_wait and get 503; without the lock, more requests than connections all get 200.
TEST_F(RelayHttpTest, ReportsUseABoundedPoolOfConnections) {
    relay_process relay(_schema.name(), "  report_connections: 2\n  report_pool_wait: 700ms\n");
    pqxx::connection admin{ferry::test::pg_dsn()};
    const auto sessions = [&] {
        pqxx::nontransaction tx{admin};
        return tx
            .exec_params1(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ferry-reports' "
                "AND strpos(query, $1) > 0",
                "\"" + _schema.name() + "\"")[0]
            .as<int>();
    };
    const auto burst = [&](int n) {
        std::vector<std::future<std::pair<int, std::string>>> out;
        for (int i = 0; i < n; ++i) {
            out.push_back(std::async(std::launch::async, [&] {
                auto c = relay.client();
                auto res = c.Get("/reports");
                return res ? std::pair<int, std::string>{res->status, res->body}
                           : std::pair<int, std::string>{-1, ""};
            }));
        }
        return out;
    };

    // Phase 1: the run table is locked, so the first requests hold their connections.
    int max_sessions = 0;
    std::vector<std::future<std::pair<int, std::string>>> held;
    {
        pqxx::connection locker{ferry::test::pg_dsn()};
        pqxx::work lock{locker};
        lock.exec("LOCK TABLE \"" + _schema.name() + "\".reconcile_run IN ACCESS EXCLUSIVE MODE");
        held = burst(8);
        const auto until = std::chrono::steady_clock::now() + 4s;
        while (std::chrono::steady_clock::now() < until) {
            max_sessions = std::max(max_sessions, sessions());
            std::this_thread::sleep_for(100ms);
        }
        lock.abort();
    }
    int ok = 0, exhausted = 0;
    for (auto& f : held) {
        ASSERT_EQ(f.wait_for(60s), std::future_status::ready) << "a request never answered";
        const auto [status, body] = f.get();
        if (status == 200) ++ok;
        if (status == 503 && body.find("http.pool_exhausted") != std::string::npos) ++exhausted;
    }
    EXPECT_EQ(ok, 2);
    EXPECT_EQ(exhausted, 6);
    EXPECT_EQ(max_sessions, 2) << "two requests should have held the two connections";

    // Phase 2: 12 requests, 2 connections, no lock: all answered 200, the sessions reused.
    auto free_run = burst(12);
    for (auto& f : free_run) {
        ASSERT_EQ(f.wait_for(60s), std::future_status::ready);
        const auto [status, body] = f.get();
        EXPECT_EQ(status, 200) << body;
    }
    EXPECT_LE(sessions(), 2);
}

}  // namespace
