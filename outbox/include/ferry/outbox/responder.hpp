#pragma once
// The producer side of the `callback` check-back resolver (ADR 0004).
//
// A service that prepares half messages runs one responder per process. It registers the
// instance in the database (producer_instance, with a heartbeat) and answers the relay's check
// requests for its producer group by calling the service's `check` function, which looks at the
// service's own state (did the payment go through?) and says commit, rollback or unknown.
// Requests are addressed first to the instance that prepared the message, then to any live
// instance of the group, so a crashed producer's messages are still resolved by its peers.
//
// Lifecycle: start() launches one background thread with its own PostgreSQL connection;
// stop() (or the destructor) ends it and removes the instance's registration. The check
// function runs on that thread, one request at a time; it must be thread-safe with respect to
// the rest of the service. An exception from it answers `unknown` (the relay checks again later).
// Connection failures are retried with backoff; last_error() reports the latest one.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "ferry/outbox/half.hpp"

namespace ferry::outbox {

enum class check_decision { commit, rollback, unknown };

[[nodiscard]] std::string_view to_string(check_decision d) noexcept;

struct responder_options {
    std::string dsn;
    std::string schema = "ferry";
    std::string producer_group = "default";
    /// Defaults to "<hostname>-<pid>". Pass the same value in half_options::producer_instance
    /// when preparing, so check-backs come to this instance first.
    std::string instance_id;
    std::chrono::milliseconds poll_interval{100};
    std::chrono::milliseconds heartbeat_interval{1000};
};

using check_function = std::function<check_decision(const half_message_info&)>;

class checkback_responder {
public:
    checkback_responder(responder_options options, check_function check);
    ~checkback_responder();
    checkback_responder(const checkback_responder&) = delete;
    checkback_responder& operator=(const checkback_responder&) = delete;

    /// Registers the instance and starts answering. Throws ferry::error when the first
    /// connection fails (later failures are retried in the background).
    void start();
    /// Stops answering and deregisters. Idempotent.
    void stop();

    [[nodiscard]] const std::string& instance_id() const noexcept;
    /// Requests answered so far.
    [[nodiscard]] std::uint64_t answered() const noexcept;
    /// The most recent background error, empty when none.
    [[nodiscard]] std::string last_error() const;

    /// "<hostname>-<pid>".
    [[nodiscard]] static std::string default_instance_id();

private:
    struct impl;
    std::unique_ptr<impl> _impl;
};

}  // namespace ferry::outbox
