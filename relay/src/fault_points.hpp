#pragma once
// Private: the relay's named fault points. They exist only in test builds (FERRY_FAULT_POINTS);
// elsewhere every function here is an empty inline that the compiler drops.
//
// Each point fires once per process, on its first batch with rows, when its environment
// variable is set: it logs `event=fault_point name=<name> ...` and sleeps that many ms, so a
// fault test can SIGSTOP or kill -9 the relay exactly there.
//   before_produce  FERRY_RELAY_FAULT_BEFORE_PRODUCE_MS  after the lease check and claim
//   after_produce   FERRY_RELAY_FAULT_AFTER_PRODUCE_MS   every row handed to librdkafka, no
//                                                        delivery report read yet
//   before_mark     FERRY_RELAY_FAULT_BEFORE_MARK_MS     after Kafka's acks, before the mark
//   during_mark     FERRY_RELAY_FAULT_DURING_MARK_MS     inside the mark transaction, after its
//                                                        fence check and statements, before
//                                                        COMMIT (holding the lease row's lock)
// fatal_producer (FERRY_RELAY_FAULT_FATAL_PRODUCER): the first round over two or more held
// groups raises a fatal producer error just before its first batch with rows produces.
// FERRY_RELAY_UNSAFE_NO_PRODUCE_GUARD switches the zombie produce guard off (the negative
// control of the zombie test). FERRY_RELAY_UNSAFE_WAL_CONFIRM_ON_RECEIPT makes the WAL source
// confirm the slot as soon as it has read messages, before producing them (the negative control
// of "confirm only what is recorded"). FERRY_RELAY_UNSAFE_SNAPSHOT_NO_IN_PROGRESS makes the
// snapshot source read an epoch as the txids between the two snapshots' xmax only, leaving out
// those in progress in S0 (the negative control of "every committed row is in one epoch").

#include <cstddef>
#include <cstdint>

namespace ferry::relay::detail::fault {

#ifdef FERRY_FAULT_POINTS
void sleep_point(const char* name, const char* env_name, int group, std::int64_t epoch,
                 std::size_t rows);
bool produce_guard_enabled();
bool fatal_producer_armed(std::size_t groups);
bool wal_confirm_on_receipt();
bool snapshot_without_in_progress();
/// during_mark is set and has not fired yet: the next mark must be a transaction with a moment
/// before its COMMIT (the WAL source otherwise marks in one statement).
bool during_mark_pending();
#else
inline void sleep_point(const char*, const char*, int, std::int64_t, std::size_t) {}
inline bool produce_guard_enabled() { return true; }
inline bool fatal_producer_armed(std::size_t) { return false; }
inline bool wal_confirm_on_receipt() { return false; }
inline bool snapshot_without_in_progress() { return false; }
inline bool during_mark_pending() { return false; }
#endif

inline void before_produce(int group, std::int64_t epoch, std::size_t rows) {
    sleep_point("before_produce", "FERRY_RELAY_FAULT_BEFORE_PRODUCE_MS", group, epoch, rows);
}
inline void after_produce(int group, std::int64_t epoch, std::size_t rows) {
    sleep_point("after_produce", "FERRY_RELAY_FAULT_AFTER_PRODUCE_MS", group, epoch, rows);
}
inline void before_mark(int group, std::int64_t epoch, std::size_t rows) {
    sleep_point("before_mark", "FERRY_RELAY_FAULT_BEFORE_MARK_MS", group, epoch, rows);
}
inline void during_mark(int group, std::int64_t epoch, std::size_t rows) {
    sleep_point("during_mark", "FERRY_RELAY_FAULT_DURING_MARK_MS", group, epoch, rows);
}

}  // namespace ferry::relay::detail::fault
