#pragma once
// Builds reconcile_options from the loaded configuration (the `reconcile:` section plus
// postgres/redis defaults). Header-only so ferry::reconcile itself never depends on
// ferry::config; ferryctl and ferry-relay, which already link both, include it.

#include "ferry/config/config.hpp"
#include "ferry/reconcile/reconcile.hpp"

namespace ferry::reconcile {

inline reconcile_options options_from_config(const ferry::config::ferry_config& c) {
    reconcile_options o;
    o.dsn = c.postgres.dsn;
    o.schema = c.postgres.schema;
    o.connect_timeout = c.postgres.connect_timeout;
    o.window = c.reconcile.window;
    o.grace = c.reconcile.grace;
    o.stuck_unpublished = c.reconcile.stuck_unpublished;
    o.redrive = c.reconcile.redrive;
    o.redrive_cap = static_cast<std::int64_t>(c.reconcile.redrive_cap);
    o.chunk_size = static_cast<std::int64_t>(c.reconcile.chunk_size);
    o.retention = c.reconcile.retention;
    for (const auto& [name, g] : c.reconcile.groups) {
        group_options go;
        go.group = name;
        go.topics = g.topics;
        go.dsn = g.dsn.empty() ? c.postgres.dsn : g.dsn;
        go.schema = g.schema.empty() ? c.postgres.schema : g.schema;
        go.redis_only = g.dedup == "redis";
        if (g.dedup != "inbox") go.redis_url = g.redis_url.empty() ? c.redis.url : g.redis_url;
        go.redis_key_prefix = g.redis_key_prefix;
        o.groups.push_back(std::move(go));
    }
    return o;
}

}  // namespace ferry::reconcile
