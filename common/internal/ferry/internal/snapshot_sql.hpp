#pragma once
// Private: whether an outbox row is still unpublished under relay.source: snapshot, as a SQL
// condition. Migration 0109's snapshot_finished() says the same, but as a SQL function with a
// subquery it cannot be inlined: called once per row it cost 1.3 s per 200k retained rows.
// Written out, the planner runs it as an anti-join against snapshot_position (ADR 0080,
// nineteenth amendment). Every scan over many outbox rows uses this one; single-row lookups
// may call the function.

#include <string>

namespace ferry::internal {

/// True when no snapshot position calls the outbox row `alias` finished: its transaction is
/// not visible in its group's s0, and not in the open epoch's s1 at or below after_id. True for
/// every row while no snapshot relay ever ran on the schema. `quoted_schema` is already quoted;
/// `alias` names the outbox row in the caller's statement (not `sp`).
inline std::string snapshot_unfinished(const std::string& quoted_schema, const std::string& alias) {
    const auto& a = alias;
    return "NOT EXISTS (SELECT 1 FROM " + quoted_schema +
           ".snapshot_position sp WHERE sp.lease_group = " + a +
           ".shard % sp.lease_groups AND "
           "(pg_visible_in_snapshot(" +
           a + ".txid, sp.s0) OR (sp.s1 IS NOT NULL AND " + a +
           ".id <= sp.after_id AND pg_visible_in_snapshot(" + a + ".txid, sp.s1))))";
}

}  // namespace ferry::internal
