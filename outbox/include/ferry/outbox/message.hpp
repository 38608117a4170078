#pragma once
// An outbox message as a producer writes it.

#include <chrono>
#include <map>
#include <optional>
#include <string>

namespace ferry::outbox {

struct message {
    /// Kafka topic: 1-249 characters of [a-zA-Z0-9._-], not "." or "..".
    std::string topic;
    /// Aggregate key: the Kafka record key, and the unit of ordering. May be empty (no key).
    std::string key;
    /// Opaque bytes, at most writer_options::max_payload_bytes.
    std::string payload;
    /// Flat string map, passed through as Kafka headers (a `traceparent` travels untouched).
    /// Names and values must be valid UTF-8; names must not be empty or start with "ferry-".
    std::map<std::string, std::string> headers;
    /// Publish no earlier than this long after the enqueue (measured on the database's clock).
    std::optional<std::chrono::milliseconds> deliver_after;
    /// Not published once this long has passed since the enqueue; such a message moves to the
    /// expired table instead of being dropped.
    std::optional<std::chrono::milliseconds> expires_after;
};

}  // namespace ferry::outbox
