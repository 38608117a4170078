// Runs a piece of work in a forked child with a time and a memory limit, and reports
// whether it finished. config/ uses it to prove that yaml-cpp's parse of an untrusted text
// terminates before the process parses that text itself (ADR 0050, third amendment).
//
// Private to config/ (and its tests). Threads: any thread may call run_isolated, but calls that
// run yaml-cpp must hold yaml_mutex() (see there). Work run in the child must not start threads,
// log, or touch locks that another thread of the parent could hold (see run_isolated).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FERRY_PARSE_GUARD_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define FERRY_PARSE_GUARD_SANITIZED 1
#endif
#endif

namespace ferry::config::detail {

/// Whether isolation_limits::memory is applied in this build (see there).
#ifdef FERRY_PARSE_GUARD_SANITIZED
inline constexpr bool k_memory_limit_applies = false;
#else
inline constexpr bool k_memory_limit_applies = true;
#endif

struct isolation_limits {
    /// CPU time the child may use before its verdict (checked from /proc at 10 ms
    /// resolution once this much wall time has passed), and at most 10 times this in wall
    /// time, so a child starved by a loaded machine is not taken for a hang and one that waits
    /// forever is still stopped.
    std::chrono::milliseconds time{2000};
    /// Address space the child may add to what the parent had mapped at the fork
    /// (RLIMIT_AS). Not applied in a sanitizer build: ASan and TSan reserve terabytes of
    /// shadow memory up front, so any RLIMIT_AS would fail their next mapping at once.
    std::size_t memory = 0;
};

enum class isolation_status {
    finished,       ///< the work returned (or threw something other than std::bad_alloc)
    timed_out,      ///< no verdict within the time limits; the child was killed (SIGKILL)
    out_of_memory,  ///< the work threw std::bad_alloc under the memory limit
    crashed,        ///< the child died without a verdict (a signal, or an exit of its own)
    unavailable,    ///< no child could be started (pipe or fork failed); nothing ran
};

struct isolation_outcome {
    isolation_status status = isolation_status::unavailable;
    /// crashed: the signal that ended the child (0 when it exited); its exit code is in `code`.
    int signal = 0;
    int code = 0;
    /// unavailable: what failed, with errno's text ("fork: Resource temporarily unavailable").
    std::string reason;
    /// From fork to the verdict (or to the kill).
    std::chrono::milliseconds elapsed{0};
};

/// Forks; the child applies the memory limit, runs `work` and writes a one-byte verdict to a
/// pipe, then leaves with _exit (no atexit handlers, no stdio flush, no leak check). The parent
/// waits for the verdict within `limits.time` (see there), kills the child when it does not come,
/// and always reaps it.
///
/// Forking a process with threads: the child has only the calling thread, and any lock another
/// thread held at the fork stays locked in the child forever. glibc makes malloc fork-safe and
/// unwinds exceptions without the loader lock (_dl_find_object), so allocating and throwing are
/// safe; `work` must not take other locks that a thread of the parent might hold. Should it do
/// so anyway, the result is a false `timed_out`, never a wrong `finished`.
[[nodiscard]] isolation_outcome run_isolated(const std::function<void()>& work,
                                             const isolation_limits& limits);

/// Held by every use of yaml-cpp in config/. yaml-cpp initialises function-local statics (its
/// scanner's character classes) on first use; a fork while another thread is inside such an
/// initialisation would leave the child waiting on it forever. Holding this mutex around the
/// fork and around every parse or emit keeps other threads of config/ out of yaml-cpp then.
[[nodiscard]] std::mutex& yaml_mutex();

}  // namespace ferry::config::detail
