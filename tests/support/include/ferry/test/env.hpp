#pragma once

// Where the test servers are. tests/support/servers (run by scripts/test) starts throw-away
// PostgreSQL, Redis and ferry-dev-kafka and exports their addresses as FERRY_TEST_* variables;
// docker-compose runs set the same variables to real servers instead.
//
// A test that needs a server it cannot get must fail, never skip: every accessor here throws
// missing_server_error (which GoogleTest reports as a failure) when its variable is unset.
// All functions are thread-safe (they only read the environment).

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

namespace ferry::test {

// Thrown when a FERRY_TEST_* variable is missing. The message says how to get the servers.
class missing_server_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The value of environment variable `name`, or missing_server_error naming the variable and
// the commands that set it (scripts/test, tests/support/servers start).
[[nodiscard]] std::string required_env(const char* name);

// FERRY_TEST_PG_DSN, e.g. postgresql://ferrytest@127.0.0.1:PORT/ferry_test
[[nodiscard]] std::string pg_dsn();
// FERRY_TEST_REDIS_URL, e.g. redis://127.0.0.1:PORT/0
[[nodiscard]] std::string redis_url();
// FERRY_TEST_KAFKA_BROKERS, e.g. 127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
[[nodiscard]] std::string kafka_brokers();

// FERRY_TEST_REDIS_URL split into its parts (redis://[:password@]host:port[/db]).
struct redis_endpoint {
    std::string host;
    int port = 6379;
    int db = 0;
    std::string password;
};
[[nodiscard]] redis_endpoint redis_address();

// Runs pg_ctl on the harness's PostgreSQL as the user that owns its data directory (via
// FERRY_TEST_PG_CTL, tests/support/pg_ctl_wrapper), e.g. {"stop", "-m", "immediate"} or
// {"start"}. Returns pg_ctl's exit code. Throws missing_server_error when the suite runs against
// a PostgreSQL the harness did not start (docker-compose): such tests cannot restart it.
[[nodiscard]] int run_pg_ctl(const std::vector<std::string>& args,
                             std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace ferry::test
