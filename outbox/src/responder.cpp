#include "ferry/outbox/responder.hpp"

#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"

namespace ferry::outbox {

std::string_view to_string(check_decision d) noexcept {
    switch (d) {
        case check_decision::commit:
            return "commit";
        case check_decision::rollback:
            return "rollback";
        case check_decision::unknown:
            return "unknown";
    }
    return "unknown";
}

struct checkback_responder::impl {
    responder_options options;
    check_function check;
    std::string schema;  // quoted
    writer half_reader;  // only its options are used, for find_half()
    std::thread thread;
    std::mutex mu;
    std::condition_variable cv;
    bool stopping = false;
    bool running = false;
    std::atomic<std::uint64_t> answered{0};
    std::string last_error;
    std::unique_ptr<pqxx::connection> conn;
    std::chrono::steady_clock::time_point next_heartbeat{};

    impl(responder_options o, check_function fn)
        : options(std::move(o)),
          check(std::move(fn)),
          schema(quote_identifier(options.schema, "schema")),
          half_reader([&] {
              writer_options wo;
              wo.schema = options.schema;
              return wo;
          }()) {}

    void set_error(const std::string& e) {
        std::lock_guard lock(mu);
        last_error = e;
    }

    void connect() {
        conn = std::make_unique<pqxx::connection>(options.dsn);
        next_heartbeat = {};
    }

    void heartbeat() {
        const auto now = std::chrono::steady_clock::now();
        if (now < next_heartbeat) return;
        pqxx::work tx{*conn};
        (void)internal::exec(tx,
                             "INSERT INTO " + schema +
                                 ".producer_instance (producer_group, instance_id) VALUES ($1, $2) "
                                 "ON CONFLICT (producer_group, instance_id) DO UPDATE "
                                 "SET heartbeat_at = clock_timestamp()",
                             options.producer_group, options.instance_id);
        tx.commit();
        next_heartbeat = now + options.heartbeat_interval;
    }

    // Claims open requests for this instance or its group and answers each. Returns how many.
    int answer_pending() {
        std::vector<std::pair<long long, std::string>> claimed;
        {
            pqxx::work tx{*conn};
            const auto rows = internal::exec(
                tx,
                "UPDATE " + schema +
                    ".check_request AS r SET claimed_by = $2 "
                    "WHERE r.request_id IN (SELECT request_id FROM " +
                    schema +
                    ".check_request "
                    "  WHERE producer_group = $1 AND answered_at IS NULL AND claimed_by IS NULL "
                    "    AND deadline > clock_timestamp() "
                    "    AND (target_instance IS NULL OR target_instance = $2) "
                    "  ORDER BY request_id LIMIT 32 FOR UPDATE SKIP LOCKED) "
                    "RETURNING r.request_id, r.message_id::text",
                options.producer_group, options.instance_id);
            for (const auto& row : rows) {
                claimed.emplace_back(row[0].as<long long>(), row[1].as<std::string>());
            }
            tx.commit();
        }
        for (const auto& [request_id, mid] : claimed) {
            check_decision d = check_decision::unknown;
            std::string detail;
            const auto id = message_id::parse(mid);
            try {
                const auto info = id ? find_half(half_reader, *conn, *id) : std::nullopt;
                if (!info) {
                    detail = "half message not found";
                } else {
                    d = check(*info);
                }
            } catch (const std::exception& e) {
                d = check_decision::unknown;
                detail = std::string("check function threw: ") + e.what();
            }
            pqxx::work tx{*conn};
            (void)internal::exec(
                tx,
                "UPDATE " + schema +
                    ".check_request SET answer = $2, answer_detail = NULLIF($3, ''), "
                    "answered_at = clock_timestamp() WHERE request_id = $1",
                request_id, std::string(to_string(d)), detail);
            tx.commit();
            ++answered;
        }
        return static_cast<int>(claimed.size());
    }

    void deregister() {
        try {
            if (!conn || !conn->is_open()) connect();
            pqxx::work tx{*conn};
            (void)internal::exec(
                tx,
                "DELETE FROM " + schema +
                    ".producer_instance WHERE producer_group = $1 AND instance_id = $2",
                options.producer_group, options.instance_id);
            tx.commit();
        } catch (const std::exception& e) {
            set_error(std::string("deregister: ") + e.what());
        }
    }

    void run() {
        auto backoff = std::chrono::milliseconds(100);
        while (true) {
            {
                std::unique_lock lock(mu);
                if (stopping) break;
            }
            bool busy = false;
            try {
                if (!conn || !conn->is_open()) connect();
                heartbeat();
                busy = answer_pending() > 0;
                backoff = std::chrono::milliseconds(100);
            } catch (const std::exception& e) {
                set_error(e.what());
                conn.reset();
                std::unique_lock lock(mu);
                cv.wait_for(lock, backoff, [&] { return stopping; });
                backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
                continue;
            }
            if (!busy) {
                std::unique_lock lock(mu);
                cv.wait_for(lock, options.poll_interval, [&] { return stopping; });
            }
        }
        deregister();
    }
};

checkback_responder::checkback_responder(responder_options options, check_function check) {
    if (options.instance_id.empty()) options.instance_id = default_instance_id();
    if (!check) {
        throw ferry::error(error_kind::permanent, "outbox.invalid_options",
                           "checkback_responder: a check function is required", "check");
    }
    if (options.producer_group.empty()) {
        throw ferry::error(error_kind::permanent, "outbox.invalid_producer_group",
                           "producer_group: must not be empty", "producer_group");
    }
    _impl = std::make_unique<impl>(std::move(options), std::move(check));
}

checkback_responder::~checkback_responder() { stop(); }

void checkback_responder::start() {
    std::lock_guard lock(_impl->mu);
    if (_impl->running) return;
    try {
        _impl->connect();
        _impl->heartbeat();
    } catch (...) {
        _impl->conn.reset();
        internal::rethrow_translated("checkback responder start", "outbox");
    }
    _impl->stopping = false;
    _impl->running = true;
    _impl->thread = std::thread([this] { _impl->run(); });
}

void checkback_responder::stop() {
    if (!_impl) return;
    {
        std::lock_guard lock(_impl->mu);
        if (!_impl->running) return;
        _impl->stopping = true;
    }
    _impl->cv.notify_all();
    if (_impl->thread.joinable()) _impl->thread.join();
    std::lock_guard lock(_impl->mu);
    _impl->running = false;
}

const std::string& checkback_responder::instance_id() const noexcept {
    return _impl->options.instance_id;
}

std::uint64_t checkback_responder::answered() const noexcept { return _impl->answered.load(); }

std::string checkback_responder::last_error() const {
    std::lock_guard lock(_impl->mu);
    return _impl->last_error;
}

std::string checkback_responder::default_instance_id() {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "host");
    return std::string(host) + "-" + std::to_string(getpid());
}

}  // namespace ferry::outbox
