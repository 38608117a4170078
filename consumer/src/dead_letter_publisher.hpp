#pragma once
// Dead-letter publishing (private): every dead letter is also produced to a Kafka topic when
// `consumer_options::dead_letter_topic` is set, with the record's headers, key and payload and a
// `ferry-dlq-reason` header. Best effort: the dead_letter table stays the record, a failed
// produce is logged and counted by librdkafka, never retried here.
//
// Lifecycle: owns the producer handle it is given; the destructor flushes (up to 2 s) and
// destroys it. Threads: publish() may be called from any thread (lanes and retry workers).
#include <librdkafka/rdkafka.h>

#include <mutex>
#include <string>

#include "ferry/consumer/consumer.hpp"

namespace ferry::consumer::detail {

class dead_letter_publisher {
public:
    /// Takes ownership of `producer` (a librdkafka producer handle, not null).
    dead_letter_publisher(rd_kafka_t* producer, std::string topic);
    ~dead_letter_publisher();
    dead_letter_publisher(const dead_letter_publisher&) = delete;
    dead_letter_publisher& operator=(const dead_letter_publisher&) = delete;

    void publish(const message& m, const std::string& reason);

private:
    rd_kafka_t* _producer;
    std::string _topic;
    std::mutex _mutex;
};

}  // namespace ferry::consumer::detail
