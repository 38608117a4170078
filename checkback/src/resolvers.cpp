#include <curl/curl.h>

#include <algorithm>
#include <mutex>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <thread>

#include "ferry/checkback/resolver.hpp"
#include "ferry/common/error.hpp"
#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"

namespace ferry::checkback {
namespace {

using namespace std::chrono_literals;

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::string first_line(const std::string& s) {
    auto out = s.substr(0, s.find('\n'));
    if (out.rfind("ERROR:  ", 0) == 0) out.erase(0, 8);
    return out;
}

// ---------------------------------------------------------------------------------------------
class callback_resolver final : public resolver {
public:
    explicit callback_resolver(callback_options o)
        : _o(std::move(o)), _schema(quote_identifier(_o.schema, "checkback.schema")) {}

    std::string_view kind() const noexcept override { return "callback"; }

    check_result check(const check_request& req) override {
        try {
            if (!_conn || !_conn->is_open()) {
                internal::session_settings ss;
                ss.statement_timeout = std::max<std::chrono::milliseconds>(_o.timeout, 1000ms);
                ss.application_name = "ferry-checkback";
                _conn = internal::connect_unique(_o.dsn, ss, "checkback");
            }
            std::vector<std::string> live;
            long long request_id = 0;
            std::optional<std::string> target;
            {
                pqxx::work tx{*_conn};
                for (const auto& row : internal::exec(
                         tx,
                         "SELECT instance_id FROM " + _schema +
                             ".producer_instance WHERE producer_group = $1 "
                             "AND heartbeat_at > clock_timestamp() - $2::bigint * interval '1 "
                             "millisecond'",
                         req.producer_group, static_cast<long long>(_o.liveness.count()))) {
                    live.push_back(row[0].as<std::string>());
                }
                if (live.empty()) {
                    return {check_decision::unknown,
                            "no live instance of producer group " + req.producer_group};
                }
                // The instance that prepared the message knows best; ask it first.
                if (req.producer_instance &&
                    std::find(live.begin(), live.end(), *req.producer_instance) != live.end()) {
                    target = req.producer_instance;
                }
                request_id = internal::exec(
                                 tx,
                                 "INSERT INTO " + _schema +
                                     ".check_request (message_id, producer_group, target_instance, "
                                     "deadline) VALUES ($1::uuid, $2, NULLIF($3, ''), "
                                     "clock_timestamp() + $4::bigint * interval '1 millisecond') "
                                     "RETURNING request_id",
                                 req.message_id, req.producer_group, target.value_or(""),
                                 static_cast<long long>(_o.timeout.count()))[0][0]
                                 .as<long long>();
                tx.commit();
            }
            const auto start = std::chrono::steady_clock::now();
            bool retargeted = !target.has_value() || live.size() < 2;
            while (std::chrono::steady_clock::now() - start < _o.timeout) {
                pqxx::work tx{*_conn};
                if (!retargeted && std::chrono::steady_clock::now() - start > _o.timeout / 2) {
                    // The preparing instance did not take it in time: open it to the group.
                    (void)internal::exec(tx,
                                         "UPDATE " + _schema +
                                             ".check_request SET target_instance = NULL "
                                             "WHERE request_id = $1 AND claimed_by IS NULL",
                                         request_id);
                    retargeted = true;
                }
                const auto r = internal::exec(
                    tx,
                    "SELECT answer, coalesce(answer_detail, ''), claimed_by FROM " + _schema +
                        ".check_request WHERE request_id = $1 "
                        "AND answered_at IS NOT NULL",
                    request_id);
                tx.commit();
                if (!r.empty()) {
                    const auto d = parse_decision(r[0][0].as<std::string>());
                    std::string detail = "answered by " + r[0][2].as<std::string>("?");
                    if (!r[0][1].as<std::string>().empty())
                        detail += ": " + r[0][1].as<std::string>();
                    return {d.value_or(check_decision::unknown), detail};
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
            return {check_decision::unknown, "timeout: no answer from producer group " +
                                                 req.producer_group + " within " +
                                                 std::to_string(_o.timeout.count()) + " ms"};
        } catch (const std::exception& e) {
            _conn.reset();
            return {check_decision::unknown, "mailbox database error: " + first_line(e.what())};
        }
    }

private:
    callback_options _o;
    std::string _schema;
    std::unique_ptr<pqxx::connection> _conn;
};

// ---------------------------------------------------------------------------------------------
std::size_t append_body(char* data, std::size_t size, std::size_t n, void* user) {
    auto* body = static_cast<std::string*>(user);
    if (body->size() + size * n > 64 * 1024) return 0;  // a reply is a few bytes; refuse floods
    body->append(data, size * n);
    return size * n;
}

class http_resolver final : public resolver {
public:
    explicit http_resolver(http_options o) : _o(std::move(o)) {
        static std::once_flag once;
        std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
        if (_o.url.empty()) {
            throw ferry::error(error_kind::permanent, "checkback.invalid_options",
                               "http resolver: url must not be empty", "url");
        }
    }

    std::string_view kind() const noexcept override { return "http"; }

    check_result check(const check_request& req) override {
        const nlohmann::json request = {
            {"message_id", req.message_id},
            {"topic", req.topic},
            {"key", req.key},
            {"tx_ref", req.tx_ref},
            {"producer_group", req.producer_group},
            {"producer_instance",
             req.producer_instance ? nlohmann::json(*req.producer_instance) : nlohmann::json()},
            {"check_number", req.check_number},
            {"max_checks", req.max_checks},
            {"prepared_at", req.prepared_at}};
        const auto body = request.dump();
        std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(),
                                                                 curl_easy_cleanup);
        if (!curl) return {check_decision::unknown, "curl_easy_init failed"};
        curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
        for (const auto& [k, v] : _o.headers)
            headers = curl_slist_append(headers, (k + ": " + v).c_str());
        std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_guard(
            headers, curl_slist_free_all);
        std::string reply;
        auto* h = curl.get();
        curl_easy_setopt(h, CURLOPT_URL, _o.url.c_str());
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(_o.timeout.count()));
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                         static_cast<long>(_o.connect_timeout.count()));
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &reply);
        if (!_o.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, _o.ca_file.c_str());
        if (!_o.client_cert.empty()) curl_easy_setopt(h, CURLOPT_SSLCERT, _o.client_cert.c_str());
        if (!_o.client_key.empty()) curl_easy_setopt(h, CURLOPT_SSLKEY, _o.client_key.c_str());
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, _o.verify_tls ? 1L : 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, _o.verify_tls ? 2L : 0L);
        const auto rc = curl_easy_perform(h);
        if (rc != CURLE_OK) {
            return {check_decision::unknown,
                    std::string("HTTP request failed: ") + curl_easy_strerror(rc)};
        }
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (status != 200) return {check_decision::unknown, "HTTP " + std::to_string(status)};
        try {
            const auto j = nlohmann::json::parse(reply);
            const auto d = parse_decision(j.at("decision").get<std::string>());
            if (!d) return {check_decision::unknown, "reply has an unrecognised decision"};
            return {*d, "HTTP 200"};
        } catch (const std::exception&) {
            return {check_decision::unknown, "reply is not JSON with a \"decision\" string"};
        }
    }

private:
    http_options _o;
};

// ---------------------------------------------------------------------------------------------
class sql_resolver final : public resolver {
public:
    explicit sql_resolver(sql_options o) : _o(std::move(o)) {
        if (_o.query.empty()) {
            throw ferry::error(error_kind::permanent, "checkback.invalid_options",
                               "sql resolver: query must not be empty", "query");
        }
    }

    std::string_view kind() const noexcept override { return "sql"; }

    check_result check(const check_request& req) override {
        try {
            if (!_conn || !_conn->is_open()) {
                internal::session_settings ss;
                ss.statement_timeout = _o.timeout;
                ss.application_name = "ferry-checkback";
                ss.read_only = true;
                _conn = internal::connect_unique(_o.dsn, ss, "checkback");
            }
            pqxx::read_transaction tx{*_conn};
            const auto r = internal::exec(tx, _o.query, req.tx_ref);
            if (r.empty()) return {check_decision::unknown, "query returned no row"};
            if (r[0][0].is_null()) return {check_decision::unknown, "query returned NULL"};
            const auto d = parse_decision(r[0][0].c_str());
            if (!d) return {check_decision::unknown, "query returned an unrecognised value"};
            return {*d, "sql"};
        } catch (const std::exception& e) {
            _conn.reset();
            return {check_decision::unknown, "sql resolver: " + first_line(e.what())};
        }
    }

private:
    sql_options _o;
    std::unique_ptr<pqxx::connection> _conn;
};

}  // namespace

std::optional<check_decision> parse_decision(std::string_view text) noexcept {
    try {
        const auto t = lower(text);
        if (t == "commit" || t == "committed" || t == "t" || t == "true")
            return check_decision::commit;
        if (t == "rollback" || t == "rolled_back" || t == "f" || t == "false")
            return check_decision::rollback;
        if (t == "unknown") return check_decision::unknown;
    } catch (...) {
    }
    return std::nullopt;
}

std::unique_ptr<resolver> make_callback_resolver(callback_options o) {
    return std::make_unique<callback_resolver>(std::move(o));
}
std::unique_ptr<resolver> make_http_resolver(http_options o) {
    return std::make_unique<http_resolver>(std::move(o));
}
std::unique_ptr<resolver> make_sql_resolver(sql_options o) {
    return std::make_unique<sql_resolver>(std::move(o));
}

}  // namespace ferry::checkback
