#pragma once
// Private: the polling source. It reads the outbox table: the visible rows of a lease group's
// shards in id order, with no cursor (a row whose transaction commits late becomes visible to
// the next claim; nothing ever moves past it, ADR 0002), and marks a batch by moving its rows
// to the published ledger, parked or expired (marker.hpp), fenced by the lease row.

#include <memory>
#include <string>
#include <vector>

#include "binary_session.hpp"
#include "ferry/common/metrics.hpp"
#include "ferry/relay/options.hpp"
#include "pg_session.hpp"
#include "source.hpp"

namespace ferry::relay::detail {

class poll_source final : public source {
public:
    /// `quoted_schema`: the schema, already validated and quoted.
    poll_source(const relay_options& options, std::string quoted_schema,
                ferry::metrics::counter reconnects);

    claim_result claim(int group, std::int64_t epoch, std::size_t limit,
                       const std::vector<std::int64_t>& exclude, double min_remaining_ms,
                       bool may_wait) override;
    mark_outcome mark(const mark_request& request, std::size_t lane) override;
    void reset_claim_session() noexcept override { _claim.reset(); }
    void reset_mark_session(std::size_t lane) noexcept override { _marks.at(lane)->reset(); }

private:
    const relay_options& _o;
    std::string _q;
    std::string _claim_sql;
    binary_session _claim;       // binary results (the payloads as bytes)
    bool _mode_checked = false;  // the schema is not a snapshot relay's (checked once)
    std::vector<std::unique_ptr<pg_session>> _marks;  // one per mark lane
};

}  // namespace ferry::relay::detail
