#include "ferry/consumer/from_config.hpp"

#include "ferry/common/error.hpp"

namespace ferry::consumer {
namespace {

dedup_mode dedup_of(const std::string& mode) {
    if (mode == "none") return dedup_mode::none;
    if (mode == "redis") return dedup_mode::redis;
    if (mode == "inbox") return dedup_mode::inbox;
    if (mode == "redis_and_inbox") return dedup_mode::redis_and_inbox;
    throw ferry::error(error_kind::permanent, "consumer.config",
                       "dedup must be one of none, redis, inbox, redis_and_inbox", "dedup");
}

}  // namespace

consumer_options to_options(const config::ferry_config& cfg, const config::consumer_config& e) {
    consumer_options o;
    o.brokers = cfg.kafka.brokers;
    o.group = e.group;
    o.instance_id = e.instance_id;
    o.kafka_properties = e.kafka_properties;
    o.auto_offset_reset = e.auto_offset_reset;
    o.session_timeout = e.session_timeout;

    o.dsn = e.dsn.empty() ? cfg.postgres.dsn : e.dsn;
    o.schema = e.schema.empty() ? cfg.postgres.schema : e.schema;
    o.connect_timeout = cfg.postgres.connect_timeout;

    o.dedup = dedup_of(e.dedup);
    o.redis_url = e.redis_url.empty() ? cfg.redis.url : e.redis_url;
    o.redis_key_prefix = e.redis_key_prefix;
    o.done_window = e.done_window;
    o.lease = e.lease;
    o.inbox_lock_wait = e.inbox.lock_wait;

    o.lanes = e.lanes;
    o.max_batch = e.poll_batch;
    o.max_queued = e.max_queued;
    o.max_queued_bytes = e.max_queued_bytes;
    o.max_headers = e.max_headers;
    o.max_header_bytes = e.max_header_bytes;
    o.tx_batch_max = e.batch_max;
    o.tx_batch_max_time = e.batch_max_time;
    o.poll_timeout = e.poll_timeout;
    o.commit_interval = e.commit_interval;
    o.revoke_timeout = e.revoke_timeout;
    o.shutdown_timeout = e.shutdown_timeout;

    o.retry.immediate_tries = static_cast<int>(e.retry.immediate_tries);
    o.retry.immediate_delay = e.retry.immediate_delay;
    o.retry.base_delay = e.retry.base_delay;
    o.retry.max_delay = e.retry.max_delay;
    o.retry.max_attempts = static_cast<int>(e.retry.max_attempts);
    o.retry_workers = e.retry.workers;
    o.retry_poll = e.retry.poll;
    o.retry_batch = static_cast<int>(e.retry.batch);
    o.retry_claim_ttl = e.retry.claim_ttl;

    o.inbox_retention = e.inbox.retention;
    o.inbox_prune_interval = e.inbox.prune_interval;
    o.inbox_prune_batch = static_cast<long long>(e.inbox.prune_batch);

    o.dead_letter_topic = e.dead_letter_topic;
    return o;
}

std::vector<std::string> kafka_topics(const config::ferry_config& cfg,
                                      const config::consumer_config& entry) {
    std::vector<std::string> out;
    out.reserve(entry.topics.size());
    for (const auto& t : entry.topics) out.push_back(config::kafka_topic(cfg.kafka, t));
    return out;
}

http_options to_http_options(const config::http_config& http, const config::env_lookup& env) {
    http_options o;
    o.listen = http.listen;
    o.token_for_metrics = http.token_for_metrics;
    o.max_body_bytes = http.max_body_bytes;
    o.max_uri_bytes = http.max_uri_bytes;
    if (!http.token_env.empty()) {
        const auto token = env ? env(http.token_env) : std::nullopt;
        if (!token || token->empty()) {
            // The variable's name only: its value is the secret.
            throw ferry::error(
                error_kind::permanent, "consumer.http_token",
                "http.token_env names " + http.token_env + ", which is unset or empty",
                "http.token_env");
        }
        o.token = *token;
        // As ferry-relay: a token shorter than this is not a secret worth the name.
        constexpr std::size_t k_min_token = 16;
        if (o.token.size() < k_min_token) {
            throw ferry::error(error_kind::permanent, "consumer.http_token",
                               "http.token_env: the token in " + http.token_env +
                                   " is shorter than " + std::to_string(k_min_token) +
                                   " characters",
                               "http.token_env");
        }
    }
    return o;
}

}  // namespace ferry::consumer
