#pragma once
// Half messages (RocketMQ-style transactional messages) for local transactions that do not live
// in the outbox's database: prepare, run the local transaction anywhere, then commit or roll
// back. If no decision arrives in time, the relay checks back with the producer (ADR 0004).
//
// A half message is invisible to the relay and to consumers until it is committed; committing
// moves it into the outbox under the same id. Each half message reaches exactly one terminal
// state (committed, rolled back, or parked when its checks run out); every transition is a
// compare-and-set in the database, so concurrent decisions cannot both win.
//
// Thread-safety: free functions and value types; each call uses the connection or transaction
// it is given.

#include <chrono>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/common/error.hpp"  // every call here throws ferry::error
#include "ferry/outbox/message.hpp"
#include "ferry/outbox/message_id.hpp"
#include "ferry/outbox/writer.hpp"

namespace ferry::outbox {

enum class half_state { pending, committed, rolled_back, parked };

[[nodiscard]] std::string_view to_string(half_state s) noexcept;

/// Per-message check-back settings; unset fields take the defaults of the schema (first check
/// 6 s after prepare, then every 30 s, at most 15 checks).
struct half_options {
    /// Producer group whose resolver answers check-backs (relay config checkback.groups).
    std::string producer_group = "default";
    /// Instance that prepared the message; check-backs go to it first.
    std::optional<std::string> producer_instance;
    std::optional<std::chrono::milliseconds> check_first_after;
    std::optional<std::chrono::milliseconds> check_interval;
    std::optional<int> max_checks;
};

/// A half message as stored.
struct half_message_info {
    message_id id;
    std::string topic;
    std::string key;
    std::string tx_ref;
    std::string producer_group;
    half_state state = half_state::pending;
    std::optional<std::string> decided_by;  // producer | checkback | operator
    int check_count = 0;
    int max_checks = 0;
    std::optional<std::string> last_check_result;
    std::optional<std::string> producer_instance;
    std::string prepared_at;  // RFC 3339 UTC, whole seconds
};

/// Which half messages list_half() returns; an unset field matches every message.
struct half_filter {
    std::optional<half_state> state;
    std::optional<std::string> producer_group;
    int limit = 100;  // 1..100000
};

enum class half_decision { commit, rollback };

/// Parses "pending", "committed", "rolled_back" or "parked"; nullopt otherwise.
[[nodiscard]] std::optional<half_state> parse_half_state(std::string_view text) noexcept;

/// Prepares a half message in `tx` (it exists once `tx` commits). `tx_ref` identifies the local
/// transaction to the resolver (1-1024 characters). Validation is the writer's.
[[nodiscard]] message_id prepare(const writer& w, pqxx::transaction_base& tx, const message& m,
                                 const std::string& tx_ref, const half_options& options = {});
/// Same, in a transaction of its own that is committed before returning: the usual call, since
/// the half message must be durable before the local transaction starts.
[[nodiscard]] message_id prepare(const writer& w, pqxx::connection& conn, const message& m,
                                 const std::string& tx_ref, const half_options& options = {});

/// Commits a half message: it enters the outbox and will be published. Idempotent: committing a
/// committed message returns committed. Throws ferry::error code "outbox.half_conflict" when
/// the message was already rolled back (for example by a check-back), and
/// "outbox.half_unknown" for an id that was never prepared.
[[nodiscard]] half_state commit(const writer& w, pqxx::transaction_base& tx, const message_id& id);
[[nodiscard]] half_state commit(const writer& w, pqxx::connection& conn, const message_id& id);

/// Rolls a half message back; it is never published. Idempotent; "outbox.half_conflict" when it
/// was already committed.
[[nodiscard]] half_state rollback(const writer& w, pqxx::transaction_base& tx,
                                  const message_id& id);
[[nodiscard]] half_state rollback(const writer& w, pqxx::connection& conn, const message_id& id);

/// An operator's decision (ferryctl half commit|rollback), recorded with decided_by "operator".
/// Like commit()/rollback() it may also resolve a parked half message (check-backs ran out).
/// Same errors: "outbox.half_conflict", "outbox.half_unknown".
[[nodiscard]] half_state decide_as_operator(const writer& w, pqxx::connection& conn,
                                            const message_id& id, half_decision decision);

/// Half messages matching `filter`, oldest prepared first, at most filter.limit of them.
/// Throws ferry::error "outbox.invalid_limit" (field "limit") for a limit outside 1..100000.
[[nodiscard]] std::vector<half_message_info> list_half(const writer& w, pqxx::connection& conn,
                                                       const half_filter& filter = {});

/// Reads a half message; nullopt when the id is unknown.
[[nodiscard]] std::optional<half_message_info> find_half(const writer& w, pqxx::connection& conn,
                                                         const message_id& id);

}  // namespace ferry::outbox
