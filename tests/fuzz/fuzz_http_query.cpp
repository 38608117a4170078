// Fuzzes the relay's HTTP listener (relay/src/http_server.*) on its report routes, in process:
// real requests over loopback to GET /reports?... and GET /reports/{id}?..., with routes that
// record the query they were given and, when it has a `since`, fail with a ferry::error that
// quotes it (as a database error quoting a bad timestamp would).
//
// The input is a list of (key, value) byte strings, percent-encoded into the query, plus raw
// bytes appended unencoded.
// Invariants, beyond "no crash":
//   1. Every request gets an HTTP/1.1 status line back; the listener never drops a connection
//      or hangs (30 s receive timeout).
//   2. A correctly percent-encoded query reaches the route byte for byte (the last value of a
//      repeated key wins), whatever the bytes are (NUL, CR/LF, invalid UTF-8).
//   3. An error from a route becomes a JSON body a strict parser accepts, with "error" and
//      "code" strings; "error" is the route's message without its control characters.
#include <arpa/inet.h>
#include <fuzzer/FuzzedDataProvider.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "ferry/common/error.hpp"
#include "ferry/common/metrics.hpp"
#include "fuzz_check.hpp"
#include "http_server.hpp"

namespace {

using ferry::fuzz::check;
using ferry::fuzz::fail;
using query = ferry::relay::report_routes::query;

std::mutex seen_mutex;
std::optional<query> seen;  // what the last route call was given

std::pair<int, std::string> record(const query& q) {
    {
        std::lock_guard lock(seen_mutex);
        seen = q;
    }
    if (const auto it = q.find("since"); it != q.end()) {
        throw ferry::error(ferry::error_kind::permanent, "reconcile.since",
                           "since: not a timestamp: \"" + it->second + "\"", "since");
    }
    return {200, "{\"runs\":[]}"};
}

ferry::relay::http_server& server() {
    static auto* s = [] {
        ferry::relay::report_routes routes;
        routes.list = [](const query& q) { return record(q); };
        routes.show = [](std::int64_t, const query& q) { return record(q); };
        // The server keeps a reference to the registry: it lives as long as the server.
        static ferry::metrics::registry metrics;
        return new ferry::relay::http_server(
            "127.0.0.1:0", metrics, [] { return true; }, std::move(routes));
    }();
    return *s;
}

std::string percent_encode(const std::string& s) {
    static const char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 0x0f];
        }
    }
    return out;
}

// Sends one request and returns the whole response (the server closes after it).
std::string exchange(const std::string& request) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    check(fd >= 0, "socket()");
    timeval tv{30, 0};  // generous: the machine may be loaded; a hang is still caught
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(server().port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        fail("the listener accepts connections", "connect() failed");
    }
    std::size_t sent = 0;
    while (sent < request.size()) {
        const auto n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;  // the server may answer and close before reading everything
        sent += static_cast<std::size_t>(n);
    }
    std::string response;
    char buf[4096];
    for (;;) {
        const auto n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        response.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return response;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    const bool show = in.ConsumeBool();
    std::map<std::string, std::string> expected;
    std::string target = show ? "/reports/42" : "/reports";
    std::string q;
    const auto pairs = in.ConsumeIntegralInRange<int>(0, 6);
    for (int i = 0; i < pairs; ++i) {
        auto key = in.ConsumeRandomLengthString(16);
        auto value = in.ConsumeRandomLengthString(48);
        if (key.empty()) continue;  // "=v" is not a pair
        if (!q.empty()) q += '&';
        q += percent_encode(key) + "=" + percent_encode(value);
        expected[key] = value;
    }
    // Raw bytes stay inside the request target: no CR or LF, which would end the request line
    // early and leave the listener (rightly) waiting for the rest of a request.
    std::string raw;
    for (char c : in.ConsumeRemainingBytesAsString()) {
        if (c != '\r' && c != '\n') raw += c;
    }
    if (!q.empty() || !raw.empty()) target += "?" + q;
    if (!raw.empty()) target += (q.empty() ? "" : "&") + raw;

    {
        std::lock_guard lock(seen_mutex);
        seen.reset();
    }
    const auto response =
        exchange("GET " + target + " HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n");
    check(response.rfind("HTTP/1.1 ", 0) == 0 && response.size() >= 12,
          "every request gets a status line", response.substr(0, 200));
    const int status = std::atoi(response.substr(9, 3).c_str());
    const auto body_at = response.find("\r\n\r\n");
    const auto body = body_at == std::string::npos ? std::string() : response.substr(body_at + 4);

    std::optional<query> got;
    {
        std::lock_guard lock(seen_mutex);
        got = seen;
    }
    if (raw.empty() && status != 414) {
        check(got.has_value(), "an encoded query reaches the route", target);
        check(*got == expected, "an encoded query reaches the route byte for byte", target);
    }
    if (got && got->count("since") > 0) {
        check(status == 400, "a permanent route error is a 400", response.substr(0, 200));
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(body);
        } catch (const std::exception& e) {
            fail("a route error is a valid JSON body", body + "\n" + e.what());
        }
        check(j.is_object() && j.contains("error") && j["error"].is_string() &&
                  j.contains("code") && j["code"] == "reconcile.since",
              "a route error has error and code", body);
        std::string message = "since: not a timestamp: \"" + got->at("since") + "\"";
        std::string printable;
        for (char c : message) {
            if (static_cast<unsigned char>(c) >= 0x20) printable += c;
        }
        check(j["error"].get<std::string>() == printable,
              "the error body carries the route's message", body);
    }
    return 0;
}
