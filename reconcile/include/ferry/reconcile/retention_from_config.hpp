#pragma once
// Every retained table of a schema, with the windows of the loaded configuration, in the order
// the retention job runs them (docs/operations.md, "Retention"). Each table's statements live in
// the module that owns it; this only collects them. Header-only, like from_config.hpp, so
// ferry::reconcile itself links none of those modules: ferry-relay and ferryctl, which run the
// job, link ferry::outbox, ferry::checkback, ferry::retry and ferry::reconcile.

#include <vector>

#include "ferry/checkback/retention.hpp"
#include "ferry/common/retention.hpp"
#include "ferry/config/config.hpp"
#include "ferry/outbox/retention.hpp"
#include "ferry/reconcile/retention.hpp"
#include "ferry/retry/retention.hpp"

namespace ferry::reconcile {

inline std::vector<retention::table> retained_tables(const ferry::config::ferry_config& c) {
    const auto& s = c.postgres.schema;
    const auto& r = c.retention;
    std::vector<retention::table> t{
        ferry::outbox::half_message_retention(s, r.half_message),
        ferry::outbox::expired_retention(s, r.expired),
        ferry::outbox::parked_measure(s),
        ferry::retry::dead_letter_retention(s, r.dead_letter),
        ferry::checkback::check_request_retention(s, r.check_request),
    };
    for (auto& x : report_retention(s, c.reconcile.retention)) t.push_back(std::move(x));
    return t;
}

inline ferry::outbox::retention_runner_options retention_options(
    const ferry::config::ferry_config& c) {
    ferry::outbox::retention_runner_options o;
    o.batch = static_cast<long long>(c.retention.batch);
    return o;
}

}  // namespace ferry::reconcile
