#pragma once
// Managing a logical replication slot and the publication a WAL-mode relay streams from, over an
// ordinary (non-replication) connection. Used by ferryctl and by the relay at start-up.
//
// A lost slot (missing, or wal_status = 'lost' after PostgreSQL removed WAL it still needed) is
// reported as ferry::error(permanent, "wal.slot_lost"): messages committed between its confirmed
// position and the loss may never be published, so Ferry never recreates it on its own. An
// operator decides (ferryctl; docs/operations.md runbook).
//
// Errors: wal.invalid_name (permanent, field "slot"/"publication"), wal.slot_exists,
// wal.slot_lost, wal.slot_invalid (a slot of another plugin or database),
// wal.slot_in_use (retryable: drop refused while a connection streams from it), and the usual
// wal.connection / wal.database translations of libpqxx errors.
// Thread-safety: free functions; each uses the connection it is given.

#include <cstdint>
#include <optional>
#include <pqxx/pqxx>
#include <string>

#include "ferry/wal/lsn.hpp"

namespace ferry::wal {

struct slot_info {
    std::string name;
    std::string plugin;
    std::string database;
    bool active = false;
    std::optional<int> active_pid;
    std::optional<lsn> restart_lsn;
    std::optional<lsn> confirmed_flush_lsn;
    /// reserved | extended | unreserved | lost (PostgreSQL 13+)
    std::string wal_status;
    /// Bytes of WAL written after confirmed_flush_lsn: what the relay has yet to confirm.
    std::optional<std::int64_t> lag_bytes;
    /// Bytes left before the slot is in danger of being lost (max_slot_wal_keep_size), if set.
    std::optional<std::int64_t> safe_wal_size;

    [[nodiscard]] bool lost() const noexcept {
        return wal_status == "lost" || !confirmed_flush_lsn.has_value();
    }
};

/// Throws wal.invalid_name unless `name` is a valid slot name ([a-z0-9_], 1-63 characters).
void validate_slot_name(const std::string& name);

/// Creates the slot with the pgoutput plugin in the connection's database. Returns the LSN from
/// which it decodes. Throws wal.slot_exists if it exists.
lsn create_slot(pqxx::connection& conn, const std::string& slot);

/// The slot, or nullopt when it does not exist.
[[nodiscard]] std::optional<slot_info> inspect_slot(pqxx::connection& conn,
                                                    const std::string& slot);

/// The slot, checked for streaming: throws wal.slot_lost if it is missing or lost, and
/// wal.slot_invalid if it is not a pgoutput slot of this database.
slot_info check_slot(pqxx::connection& conn, const std::string& slot);

/// Drops the slot. Returns false if it did not exist. Throws wal.slot_in_use while a connection
/// streams from it.
bool drop_slot(pqxx::connection& conn, const std::string& slot);

/// Registers `slot` as a slot the WAL-mode relays of `schema` stream from (migration 0071):
/// <schema>.enqueue_wal / emit_wal refuse to emit unless a registered slot exists and is not
/// lost, so no message is written that no relay would decode. Idempotent.
void register_slot(pqxx::connection& conn, const std::string& schema, const std::string& slot);

/// True when `slot` is registered for `schema` (register_slot).
[[nodiscard]] bool slot_registered(pqxx::connection& conn, const std::string& schema,
                                   const std::string& slot);

/// Removes the registration (before dropping the slot deliberately). Returns false if absent.
bool unregister_slot(pqxx::connection& conn, const std::string& schema, const std::string& slot);

/// Creates the publication if it is missing (an empty one: logical messages need no table).
/// Returns true when it created it.
bool ensure_publication(pqxx::connection& conn, const std::string& publication);

/// Drops the publication. Returns false if it did not exist.
bool drop_publication(pqxx::connection& conn, const std::string& publication);

[[nodiscard]] bool publication_exists(pqxx::connection& conn, const std::string& publication);

}  // namespace ferry::wal
