#pragma once
// The default identity of a Ferry process (relay lease owner, consumer member, check-back
// responder) when the configuration names none: "<hostname>-<pid>-<6 hex digits>", for example
// "web-7f9c-4312-0a93fe". The host and pid tell an operator where it runs; the random suffix
// keeps two incarnations apart when a container restarts with the same hostname and pid 1, and
// two components of one process (two relays in a test, a relay and a responder) apart: every call
// returns a new suffix. Private (not installed); the one copy in Ferry.

#include <string>

namespace ferry::internal {

[[nodiscard]] std::string default_instance_id();

}  // namespace ferry::internal
