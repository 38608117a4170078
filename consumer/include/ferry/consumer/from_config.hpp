#pragma once
// Turns ferry::config's plain structs into the consumer's options: one `consumers:` entry into
// consumer_options, the `http:` section into http_options. Only config/ reads YAML; this maps
// fields, fills what the entry leaves empty from the shared sections (postgres.dsn/schema/
// connect_timeout, kafka.brokers, redis.url) and never throws for values config/ validated.
//
// Thread-safety: pure functions.

#include <string>
#include <vector>

#include "ferry/config/config.hpp"
#include "ferry/consumer/consumer.hpp"
#include "ferry/consumer/http.hpp"

namespace ferry::consumer {

/// consumer_options for `entry` (an element of cfg.consumers). Throws ferry::error(permanent,
/// "consumer.config") only for a dedup value config/ would have refused.
[[nodiscard]] consumer_options to_options(const config::ferry_config& cfg,
                                          const config::consumer_config& entry);

/// The Kafka topics `entry` subscribes to (kafka.topic_prefix and kafka.topic_map applied).
[[nodiscard]] std::vector<std::string> kafka_topics(const config::ferry_config& cfg,
                                                    const config::consumer_config& entry);

/// http_options from the `http:` section. The bearer token is read from the environment
/// variable http.token_env names (`env`, default the process environment); throws
/// ferry::error(permanent, "consumer.http_token") when that variable is unset or empty.
[[nodiscard]] http_options to_http_options(const config::http_config& http,
                                           const config::env_lookup& env = config::process_env());

}  // namespace ferry::consumer
