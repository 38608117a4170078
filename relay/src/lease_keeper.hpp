#pragma once
// Private: the lease keeper, the relay's thread that owns the relay_lease and relay_instance
// tables and does nothing else: it heartbeats this instance, renews the leases it holds every
// lease_ttl / 3, acquires free or expired groups up to its fair share, releases extras (never
// in the middle of a batch: relay_state defers it), and releases everything on stop once the
// publisher is done. Its own session, so slow statements elsewhere never delay a renewal.

#include <chrono>
#include <set>
#include <string>

#include "ferry/relay/options.hpp"
#include "pg_session.hpp"
#include "relay_metrics.hpp"
#include "relay_state.hpp"

namespace ferry::relay::detail {

class lease_keeper {
public:
    lease_keeper(const relay_options& options, std::string quoted_schema, relay_state& state,
                 relay_metrics& metrics);
    /// The thread's body: returns after stop() once every lease was released.
    void run();

private:
    void ensure_rows(pqxx::connection& conn);
    void cycle(pqxx::connection& conn);
    bool release_group(pqxx::connection& conn, int group, std::int64_t epoch, const char* why);
    void release_all();
    void drop(int group, std::int64_t epoch, const char* why);

    const relay_options& _o;
    std::string _q;
    relay_state& _state;
    relay_metrics& _m;
    pg_session _session;
    std::chrono::steady_clock::time_point _last_mismatch_log{};
};

}  // namespace ferry::relay::detail
