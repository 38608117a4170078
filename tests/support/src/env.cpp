#include "ferry/test/env.hpp"

#include <cstdlib>
#include <string_view>

#include "ferry/test/child_process.hpp"

namespace ferry::test {

std::string required_env(const char* name) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') {
        throw missing_server_error(
            std::string(name) +
            " is not set: this test needs the servers from tests/support. Run the suite with "
            "scripts/test, or start them yourself with `tests/support/servers start "
            "/tmp/ferry.env && source /tmp/ferry.env` (stop with `tests/support/servers stop "
            "/tmp/ferry.env`).");
    }
    return value;
}

std::string pg_dsn() { return required_env("FERRY_TEST_PG_DSN"); }

std::string redis_url() { return required_env("FERRY_TEST_REDIS_URL"); }

std::string kafka_brokers() { return required_env("FERRY_TEST_KAFKA_BROKERS"); }

redis_endpoint redis_address() {
    const std::string url = redis_url();
    std::string_view rest = url;
    constexpr std::string_view k_scheme = "redis://";
    if (!rest.starts_with(k_scheme)) {
        throw std::invalid_argument("FERRY_TEST_REDIS_URL must start with redis://, got " + url);
    }
    rest.remove_prefix(k_scheme.size());
    redis_endpoint ep;
    if (auto at = rest.rfind('@'); at != std::string_view::npos) {
        std::string_view auth = rest.substr(0, at);
        if (auto colon = auth.find(':'); colon != std::string_view::npos) {
            auth.remove_prefix(colon + 1);  // user:password -> password
        }
        ep.password = std::string(auth);
        rest.remove_prefix(at + 1);
    }
    std::string_view hostport = rest;
    if (auto slash = rest.find('/'); slash != std::string_view::npos) {
        hostport = rest.substr(0, slash);
        std::string_view db = rest.substr(slash + 1);
        if (!db.empty()) {
            ep.db = std::stoi(std::string(db));
        }
    }
    if (auto colon = hostport.rfind(':'); colon != std::string_view::npos) {
        ep.host = std::string(hostport.substr(0, colon));
        ep.port = std::stoi(std::string(hostport.substr(colon + 1)));
    } else {
        ep.host = std::string(hostport);
    }
    if (ep.host.empty()) {
        throw std::invalid_argument("FERRY_TEST_REDIS_URL has no host: " + url);
    }
    return ep;
}

int run_pg_ctl(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
    const char* wrapper = std::getenv("FERRY_TEST_PG_CTL");
    if (wrapper == nullptr || *wrapper == '\0') {
        throw missing_server_error(
            "FERRY_TEST_PG_CTL is not set: this test stops and restarts PostgreSQL, which only "
            "works with the throw-away server that tests/support/servers starts (scripts/test), "
            "not with an external FERRY_TEST_PG_DSN.");
    }
    child_process pg_ctl(wrapper, args);
    auto status = pg_ctl.wait(timeout);
    if (!status) {
        pg_ctl.kill();
        throw std::runtime_error("pg_ctl did not finish within " + std::to_string(timeout.count()) +
                                 " ms");
    }
    return status->exited ? status->code : 128 + status->signal;
}

}  // namespace ferry::test
