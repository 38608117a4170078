#pragma once

// Unique identifiers that isolate one test's data from every other test sharing the servers
// (ctest runs suites in parallel against one PostgreSQL, one Redis and one Kafka).

#include <string>
#include <string_view>

namespace ferry::test {

// Returns `<prefix>_<pid>_<counter>_<random>`: lower case, [a-z0-9_] only, starting with a
// letter, at most 63 characters. That is valid as an unquoted PostgreSQL identifier (schema),
// a Kafka topic, a consumer group and a Redis key prefix. The prefix is lower-cased, other
// characters become '_', and it is shortened if needed; an empty prefix becomes "t".
// Unique across threads and processes (pid + process-wide counter + 32 random bits).
[[nodiscard]] std::string unique_name(std::string_view prefix);

}  // namespace ferry::test
