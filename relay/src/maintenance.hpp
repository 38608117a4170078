#pragma once
// Private: the relay's maintenance thread (maintenance.cpp): refreshes the outbox gauges
// (pending, oldest age, parked, expired, dead tuples; in WAL mode the slot's lag and health) and
// keeps the published ledger's
// retention by range partitions (migration 0010, ADR 0010), on its own session. With
// relay.source: snapshot it also trims the outbox rows that are published and past retention.

#include <chrono>
#include <pqxx/pqxx>
#include <string>

#include "ferry/relay/options.hpp"
#include "pg_session.hpp"
#include "relay_metrics.hpp"
#include "relay_state.hpp"
#include "wal_source.hpp"

namespace ferry::relay::detail {

struct unpublished_backlog {
    double pending = 0;         // rows not yet published
    double oldest_seconds = 0;  // age of the oldest of them (0 when there are none)
};

/// The outbox's unpublished rows: every row, or with relay.source: snapshot (`snapshot`) the
/// rows no position calls finished, read from the two index ranges that can hold them.
unpublished_backlog count_unpublished(pqxx::transaction_base& tx, const std::string& quoted_schema,
                                      bool snapshot);

class maintenance {
public:
    /// `wal`: the WAL source's series (WAL mode only; nullptr otherwise), whose slot gauges
    /// this thread refreshes.
    maintenance(const relay_options& options, std::string quoted_schema, relay_state& state,
                relay_metrics& metrics, wal_metrics* wal = nullptr);
    /// The thread's body: returns after stop().
    void run();

private:
    void refresh_stats(pqxx::connection& conn);
    void refresh_wal_slot(pqxx::connection& conn);
    void maintain_ledger(pqxx::connection& conn);
    void trim_snapshot_outbox(pqxx::connection& conn);
    [[nodiscard]] std::chrono::milliseconds ledger_width() const;

    const relay_options& _o;
    std::string _q;
    relay_state& _state;
    relay_metrics& _m;
    wal_metrics* _wal;
    bool _slot_lost_logged = false;
    bool _outbox_rows_logged = false;
    pg_session _session;
};

}  // namespace ferry::relay::detail
