#pragma once

// Reads what actually arrived in a Kafka topic, from the beginning, so relay and fault tests can
// compare it with what they committed.
//
// Lifecycle: the constructor only configures a consumer; the first read assigns every partition
// of the topic at the beginning (waiting for the topic to exist, up to the read's timeout).
// Caveat: librdkafka's mock cluster auto-creates a topic (4 partitions) on the reader's first
// metadata request, so create topics before reading when the partition count matters. No
// consumer group is joined and no offsets are committed, so readers never disturb each other or
// the system under test. Records accumulate across reads. One thread at a time.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct rd_kafka_s;

namespace ferry::test {

struct kafka_header {
    std::string name;
    std::optional<std::string> value;  // nullopt for a null header value
};

struct kafka_record {
    std::string topic;
    int32_t partition = -1;
    int64_t offset = -1;
    std::optional<std::string> key;    // nullopt for a null key
    std::optional<std::string> value;  // nullopt for a null value (tombstone)
    std::vector<kafka_header> headers;
    int64_t timestamp_ms = -1;

    // Value of the last header named `name` (Kafka allows repeats), or nullopt if absent or null.
    [[nodiscard]] std::optional<std::string> header(std::string_view name) const;
};

struct kafka_reader_options {
    // Empty means kafka_brokers() (FERRY_TEST_KAFKA_BROKERS).
    std::string brokers{};
    // read_committed hides aborted transactional records, as a real consumer would.
    std::string isolation_level = "read_committed";
    // Extra librdkafka consumer properties (override the defaults above).
    std::map<std::string, std::string> config{};
};

class kafka_reader {
public:
    explicit kafka_reader(std::string topic, const kafka_reader_options& options = {});
    ~kafka_reader();
    kafka_reader(const kafka_reader&) = delete;
    kafka_reader& operator=(const kafka_reader&) = delete;

    // Consumes until at least `count` records were collected in total or `timeout` passed, and
    // returns all records collected so far (possibly fewer than `count`: check the size).
    std::vector<kafka_record> read(std::size_t count, std::chrono::milliseconds timeout);

    // Consumes until every partition reached its end and nothing new arrived for `quiet`, or
    // `timeout` passed. Use after read() to catch duplicates that trail the expected records.
    std::vector<kafka_record> read_all(
        std::chrono::milliseconds quiet = std::chrono::milliseconds(500),
        std::chrono::milliseconds timeout = std::chrono::seconds(30));

    [[nodiscard]] const std::vector<kafka_record>& records() const { return _records; }
    [[nodiscard]] const std::string& topic() const { return _topic; }
    // Partition count found at assignment (0 before the first read assigned).
    [[nodiscard]] int partitions() const { return _partition_count; }
    // The last transient consumer or metadata error seen (for failure messages), or empty.
    [[nodiscard]] const std::string& last_error() const { return _last_error; }

private:
    bool assign(std::chrono::steady_clock::time_point deadline);
    // Polls once; returns true if a record was added.
    bool poll_once(std::chrono::milliseconds wait);

    std::string _topic;
    rd_kafka_s* _rk = nullptr;
    int _partition_count = 0;
    std::vector<bool> _at_eof;
    std::vector<kafka_record> _records;
    std::string _last_error;
};

}  // namespace ferry::test
