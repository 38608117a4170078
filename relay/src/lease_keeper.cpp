#include "lease_keeper.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <vector>

#include "ferry/internal/pg_array.hpp"
#include "ferry/internal/pq.hpp"

namespace ferry::relay::detail {

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;
using clock = std::chrono::steady_clock;

lease_keeper::lease_keeper(const relay_options& options, std::string quoted_schema,
                           relay_state& state, relay_metrics& metrics)
    : _o(options),
      _q(std::move(quoted_schema)),
      _state(state),
      _m(metrics),
      _session(options, metrics.pg_reconnects, "lease_keeper") {}

void lease_keeper::run() {
    ms backoff = 100ms;
    const ms period = std::max<ms>(_o.lease_ttl / 3, 10ms);
    while (!_state.stopping()) {
        try {
            const bool fresh = !_session.connected();
            auto& conn = _session.get();
            if (fresh) ensure_rows(conn);
            cycle(conn);
            _state.set_pg_ok(true);
            backoff = 100ms;
            _state.sleep_for(period);
        } catch (const std::exception& e) {
            _state.set_pg_ok(false);
            _session.reset();
            spdlog::warn("event=lease_keeper_error error=\"{}\" retry_in_ms={}", e.what(),
                         backoff.count());
            _state.sleep_for(backoff);
            backoff = std::min<ms>(backoff * 2, period);
        }
    }
    // Wait for the publisher to finish (and mark) its batches, then release every lease so a
    // peer can take over at once instead of after the ttl.
    _state.wait_publisher_done();
    release_all();
}

void lease_keeper::drop(int group, std::int64_t epoch, const char* why) {
    if (_state.drop_lease(group, epoch)) {
        spdlog::warn("event=lease_dropped group={} epoch={} reason={}", group, epoch, why);
    }
    _m.groups_held.set(static_cast<double>(_state.groups_held()));
}

void lease_keeper::ensure_rows(pqxx::connection& conn) {
    pqxx::work tx{conn};
    (void)internal::exec(tx,
                         "INSERT INTO " + _q +
                             ".relay_lease (lease_group) SELECT g FROM generate_series(0, $1 - 1) "
                             "AS g ON CONFLICT (lease_group) DO NOTHING",
                         _o.lease_groups);
    tx.commit();
}

void lease_keeper::cycle(pqxx::connection& conn) {
    const std::string ttl = std::to_string(_o.lease_ttl.count());
    // Heartbeat and count live instances (this one included).
    long live = 1;
    long disagreeing = 0;
    {
        pqxx::work tx{conn};
        (void)internal::exec(tx,
                             "INSERT INTO " + _q +
                                 ".relay_instance (instance_id, lease_groups) VALUES ($1, $2) "
                                 "ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = "
                                 "clock_timestamp(), lease_groups = excluded.lease_groups",
                             _o.instance_id, _o.lease_groups);
        (void)internal::exec(tx,
                             "DELETE FROM " + _q +
                                 ".relay_instance WHERE heartbeat_at < clock_timestamp() - "
                                 "10 * $1::bigint * interval '1 millisecond'",
                             ttl);
        const auto r = internal::exec(
            tx,
            "SELECT count(*), count(*) FILTER (WHERE lease_groups <> $2) FROM " + _q +
                ".relay_instance WHERE heartbeat_at > clock_timestamp() - $1::bigint * "
                "interval '1 millisecond'",
            ttl, _o.lease_groups);
        live = r[0][0].as<long>();
        disagreeing = r[0][1].as<long>();
        tx.commit();
    }
    if (disagreeing > 0) {
        // Two group counts would map one key to two owners and break per-key order: keep
        // what is held (renewed below), acquire nothing until the operator fixes it.
        const auto now = clock::now();
        if (now - _last_mismatch_log > 30s) {
            spdlog::error(
                "event=lease_groups_mismatch lease_groups={} disagreeing_instances={} "
                "action=acquire_nothing (every instance sharing schema {} must use "
                "the same relay.lease_groups)",
                _o.lease_groups, disagreeing, _o.schema);
            _last_mismatch_log = now;
        }
    }
    live = std::max<long>(live, 1);
    const int target = static_cast<int>((_o.lease_groups + live - 1) / live);

    // Renew what we hold (epoch must still be ours).
    const auto held = _state.held();
    if (!held.empty()) {
        std::vector<int> groups;
        std::vector<std::int64_t> epochs;
        for (const auto& [g, e] : held) {
            groups.push_back(g);
            epochs.push_back(e);
        }
        pqxx::work tx{conn};
        const auto r = internal::exec(
            tx,
            "UPDATE " + _q +
                ".relay_lease AS l SET expires_at = clock_timestamp() + $2::bigint * "
                "interval '1 millisecond' FROM unnest($3::int[], $4::bigint[]) AS h(g, e) "
                "WHERE l.lease_group = h.g AND l.epoch = h.e AND l.owner = $1 "
                "RETURNING l.lease_group",
            _o.instance_id, ttl, internal::array_literal(groups), internal::array_literal(epochs));
        tx.commit();
        std::set<int> renewed;
        for (const auto& row : r) renewed.insert(row[0].as<int>());
        for (const auto& [g, e] : held) {
            if (renewed.count(g) == 0) drop(g, e, "lost_on_renewal");
        }
    }

    // A release deferred while a batch of the group was in flight stands only while it is
    // still wanted: the fair share moves as instances come and go, and a stale request would
    // keep the publisher off a group this instance still holds and renews, so nobody would
    // ever publish it again. The wanted releases are the highest `excess` groups held.
    {
        const auto now_held = _state.held();
        const long excess = (_state.stopping() || disagreeing > 0)
                                ? 0
                                : static_cast<long>(now_held.size()) - static_cast<long>(target);
        std::set<int> wanted;
        for (auto it = now_held.rbegin();
             it != now_held.rend() && static_cast<long>(wanted.size()) < excess; ++it) {
            wanted.insert(it->first);
        }
        for (const int g : _state.cancel_unwanted_releases(wanted)) {
            spdlog::info(
                "event=lease_release_cancelled group={} reason=fair_share_changed "
                "(live_instances={} fair_share={})",
                g, live, target);
        }
    }

    // Release extras beyond the fair share (highest groups first).
    for (;;) {
        const auto now_held = _state.held();
        if (static_cast<int>(now_held.size()) <= target || _state.stopping() || disagreeing > 0) {
            break;  // (a mismatch freezes the assignment: nobody would take them)
        }
        const int group = now_held.rbegin()->first;
        const std::int64_t epoch = now_held.rbegin()->second;
        // A group with a batch in flight (possibly waiting out a broker outage) is released on
        // a later cycle: never block renewals of the other groups behind it.
        if (!release_group(conn, group, epoch, "rebalance")) break;
    }

    // Acquire free or expired groups up to the fair share.
    int have = _state.groups_held();
    if (have < target && disagreeing == 0 && !_state.stopping()) {
        std::vector<int> candidates;
        {
            pqxx::work tx{conn};
            const auto r = internal::exec(
                tx,
                "SELECT lease_group FROM " + _q +
                    ".relay_lease WHERE lease_group < $1 AND (owner IS NULL OR expires_at IS "
                    "NULL OR expires_at < clock_timestamp() OR owner = $2) ORDER BY random()",
                _o.lease_groups, _o.instance_id);
            tx.commit();
            for (const auto& row : r) candidates.push_back(row[0].as<int>());
        }
        for (int g : candidates) {
            if (have >= target || _state.stopping()) break;
            if (_state.holds(g)) continue;
            pqxx::work tx{conn};
            const auto r = internal::exec(
                tx,
                "UPDATE " + _q +
                    ".relay_lease SET owner = $2, epoch = epoch + 1, expires_at = "
                    "clock_timestamp() + $3::bigint * interval '1 millisecond', acquired_at = "
                    "clock_timestamp() WHERE lease_group = $1 AND (owner IS NULL OR expires_at "
                    "IS NULL OR expires_at < clock_timestamp() OR owner = $2) RETURNING epoch",
                g, _o.instance_id, ttl);
            tx.commit();
            if (r.empty()) continue;
            const auto epoch = r[0][0].as<std::int64_t>();
            _state.add_lease(g, epoch);
            _m.groups_held.set(static_cast<double>(_state.groups_held()));
            _m.epoch[static_cast<std::size_t>(g)].set(static_cast<double>(epoch));
            ++have;
            spdlog::info(
                "event=lease_acquired group={} epoch={} instance={} live_instances={} "
                "fair_share={}",
                g, epoch, _o.instance_id, live, target);
        }
    }
}

// Returns false when a batch of the group is in flight (the release is deferred).
bool lease_keeper::release_group(pqxx::connection& conn, int group, std::int64_t epoch,
                                 const char* why) {
    switch (_state.begin_release(group)) {
        case relay_state::release_step::deferred_new:
            spdlog::info(
                "event=lease_release_deferred group={} epoch={} reason={} "
                "(a batch of the group is running)",
                group, epoch, why);
            return false;
        case relay_state::release_step::deferred_again:
            return false;
        case relay_state::release_step::release_now:
            break;
    }
    _m.groups_held.set(static_cast<double>(_state.groups_held()));
    pqxx::work tx{conn};
    (void)internal::exec(tx,
                         "UPDATE " + _q +
                             ".relay_lease SET owner = NULL, expires_at = NULL WHERE "
                             "lease_group = $1 AND owner = $2 AND epoch = $3",
                         group, _o.instance_id, epoch);
    tx.commit();
    spdlog::info("event=lease_released group={} epoch={} reason={}", group, epoch, why);
    return true;
}

void lease_keeper::release_all() {
    const auto held = _state.take_all();
    _m.groups_held.set(0);
    try {
        auto& conn = _session.get();
        pqxx::work tx{conn};
        for (const auto& [g, e] : held) {
            (void)internal::exec(tx,
                                 "UPDATE " + _q +
                                     ".relay_lease SET owner = NULL, expires_at = NULL WHERE "
                                     "lease_group = $1 AND owner = $2 AND epoch = $3",
                                 g, _o.instance_id, e);
        }
        (void)internal::exec(tx, "DELETE FROM " + _q + ".relay_instance WHERE instance_id = $1",
                             _o.instance_id);
        tx.commit();
        spdlog::info("event=leases_released count={} instance={}", held.size(), _o.instance_id);
    } catch (const std::exception& e) {
        spdlog::warn("event=lease_release_failed error=\"{}\" (the leases expire after the ttl)",
                     e.what());
    }
}

}  // namespace ferry::relay::detail
