#pragma once
// Resolvers answer a check-back: given a half message nobody decided in time, was its local
// transaction committed, rolled back, or is that still unknown? (ADR 0004)
//
//   callback  the producer's own responder (ferry::outbox::checkback_responder), reached through
//             the database mailbox: first the instance that prepared the message, then any live
//             instance of its producer group;
//   http      POST a JSON description to a URL; the JSON reply names the decision;
//   sql       run a configured query on a configured database with tx_ref as $1.
//
// `unknown`, a timeout and an unreachable producer are all the same outcome: one check spent,
// retried at the next interval (parked after the last one). A resolver never throws for those;
// it returns unknown with a detail string saying why.
//
// The rule every resolver and every check a service writes must follow: answer `rollback` only
// when the local transaction is proven rolled back (aborted, or it can no longer commit). "Not
// found" while the transaction may still be running is `unknown`: rolling back a message whose
// transaction then commits refuses the producer's commit (FH001) and loses the message (issue 10,
// hole 8). The sql resolver therefore reads boolean false as unknown, and the http resolver
// rolls back only on the word "rollback". checkback/README.md shows safe checks.
//
// Thread-safety: a resolver instance is used by one scheduler thread at a time.

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "ferry/outbox/responder.hpp"

namespace ferry::checkback {

using ferry::outbox::check_decision;

struct check_request {
    std::string message_id;
    std::string topic;
    std::string key;
    std::string tx_ref;
    std::string producer_group;
    std::optional<std::string> producer_instance;
    int check_number = 0;  // 1 for the first check
    int max_checks = 0;
    std::string prepared_at;  // RFC 3339, UTC, from the database
};

struct check_result {
    check_decision decision = check_decision::unknown;
    std::string detail;  // why unknown: "timeout", "HTTP 503", "no live instance", ...
};

class resolver {
public:
    virtual ~resolver() = default;
    [[nodiscard]] virtual check_result check(const check_request& request) = 0;
    [[nodiscard]] virtual std::string_view kind() const noexcept = 0;
};

struct callback_options {
    std::string dsn;  // the outbox database (where the mailbox lives)
    std::string schema = "ferry";
    std::chrono::milliseconds timeout{5000};  // per check, both routing steps together
    std::chrono::milliseconds liveness{
        5000};  // an instance is live if it heartbeated this recently
};

struct http_options {
    std::string url;
    std::chrono::milliseconds timeout{5000};
    std::chrono::milliseconds connect_timeout{2000};
    std::map<std::string, std::string> headers;  // e.g. Authorization (secret: never logged)
    std::string ca_file;                         // TLS: trust these CAs instead of the system store
    std::string client_cert;                     // TLS client certificate (PEM file)
    std::string client_key;                      // and its key
    bool verify_tls = true;
};

struct sql_options {
    std::string dsn;  // the producer's database
    /// $1 = tx_ref. One row, one column: text 'commit' | 'rollback' | 'unknown', or NULL
    /// (unknown), or a boolean (true = commit, false = unknown: never a rollback).
    std::string query;
    std::chrono::milliseconds timeout{5000};  // statement_timeout
};

[[nodiscard]] std::unique_ptr<resolver> make_callback_resolver(callback_options options);
[[nodiscard]] std::unique_ptr<resolver> make_http_resolver(http_options options);
[[nodiscard]] std::unique_ptr<resolver> make_sql_resolver(sql_options options);

/// Parses "commit" / "rollback" / "unknown" (case-insensitive; also committed, rolled_back).
/// nullopt for anything else, booleans included (see the rule above).
[[nodiscard]] std::optional<check_decision> parse_decision(std::string_view text) noexcept;

}  // namespace ferry::checkback
