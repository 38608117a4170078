#pragma once
// Private: the relay's series on the project's metrics registry (ferry/common/metrics.hpp), and
// this instance's own totals for relay::counts() (the registry may be shared by several relays
// in one process, the process registry, so its series are not per instance).

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "ferry/common/metrics.hpp"

namespace ferry::relay::detail {

struct relay_metrics {
    explicit relay_metrics(ferry::metrics::registry& m, int lease_groups);

    ferry::metrics::counter published;
    ferry::metrics::counter errors_transient;
    ferry::metrics::counter errors_permanent;
    ferry::metrics::counter errors_fatal;
    ferry::metrics::histogram batch_size;
    ferry::metrics::histogram commit_to_ack;
    ferry::metrics::counter parked_total;
    ferry::metrics::gauge parked_gauge;
    ferry::metrics::counter expired_total;
    ferry::metrics::gauge expired_gauge;
    ferry::metrics::gauge pending;
    ferry::metrics::gauge oldest;
    ferry::metrics::gauge dead_tuples;
    ferry::metrics::gauge groups_held;
    ferry::metrics::counter fenced;
    ferry::metrics::counter pg_reconnects;
    ferry::metrics::counter producer_restarts;
    ferry::metrics::counter invalid_headers;
    ferry::metrics::counter held_after_failure;
    ferry::metrics::counter pipelined_batches;
    ferry::metrics::counter claims_prefetched;
    ferry::metrics::counter prefetched_claims_dropped;
    std::vector<ferry::metrics::gauge> epoch;  // per lease group

    // This instance's totals (relay::counts()).
    std::atomic<std::uint64_t> n_published{0}, n_parked{0}, n_expired{0}, n_fenced{0}, n_batches{0};
};

}  // namespace ferry::relay::detail
