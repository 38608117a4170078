#include "parse_guard.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

namespace ferry::config::detail {
namespace {

// The child's verdicts, one byte each.
constexpr char k_finished = 'F';
constexpr char k_out_of_memory = 'M';
constexpr int k_wall_factor = 10;

std::string errno_text(const char* what, int err) {
    return std::string(what) + ": " + std::strerror(err);
}

// The parent's mapped address space in bytes (/proc/self/statm, first field), or 0 if unknown.
// Read before the fork: in the child only system calls follow.
std::size_t mapped_bytes() {
    std::FILE* f = std::fopen("/proc/self/statm", "re");
    if (f == nullptr) return 0;
    unsigned long pages = 0;
    const bool ok = std::fscanf(f, "%lu", &pages) == 1;
    std::fclose(f);
    const long page = ::sysconf(_SC_PAGESIZE);
    return ok && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) : 0;
}

// How long the child has run on a CPU (user + system, /proc/PID/stat), or a value past any
// limit when that cannot be read, so the wall-clock limit applies then.
std::chrono::milliseconds cpu_time(pid_t pid) {
    const auto unknown = std::chrono::milliseconds::max();
    const std::string path = "/proc/" + std::to_string(pid) + "/stat";
    std::FILE* f = std::fopen(path.c_str(), "re");
    if (f == nullptr) return unknown;
    char buf[1024];
    const auto n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    // Fields after the command name, which is in parentheses and may hold anything.
    const char* rest = std::strrchr(buf, ')');
    unsigned long utime = 0, stime = 0;
    if (rest == nullptr ||
        std::sscanf(rest + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                    &stime) != 2) {
        return unknown;
    }
    const long ticks = ::sysconf(_SC_CLK_TCK);
    if (ticks <= 0) return unknown;
    return std::chrono::milliseconds(static_cast<long long>(utime + stime) * 1000 / ticks);
}

void write_verdict(int fd, char verdict) {
    while (::write(fd, &verdict, 1) < 0 && errno == EINTR) {
    }
}

// Waits for the child and decodes how it ended; ECHILD (SIGCHLD ignored by the host process, so
// the kernel reaped it already) leaves the status at "exited 0".
void reap(pid_t pid, isolation_outcome& out) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return;
    }
    if (WIFSIGNALED(status)) {
        out.signal = WTERMSIG(status);
    } else if (WIFEXITED(status)) {
        out.code = WEXITSTATUS(status);
    }
}

}  // namespace

std::mutex& yaml_mutex() {
    static std::mutex m;
    return m;
}

isolation_outcome run_isolated(const std::function<void()>& work, const isolation_limits& limits) {
    isolation_outcome out;
    std::size_t address_limit = 0;
    if (k_memory_limit_applies && limits.memory > 0) {
        if (const auto mapped = mapped_bytes(); mapped > 0) address_limit = mapped + limits.memory;
    }
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        out.reason = errno_text("pipe", errno);
        return out;
    }
    const auto t0 = std::chrono::steady_clock::now();
    const pid_t pid = ::fork();
    if (pid < 0) {
        out.reason = errno_text("fork", errno);
        ::close(fds[0]);
        ::close(fds[1]);
        return out;
    }
    if (pid == 0) {
        // The child: one thread, the caller's. Only the work itself, then _exit.
        ::close(fds[0]);
        if (address_limit > 0) {
            const rlimit rl{address_limit, address_limit};
            ::setrlimit(RLIMIT_AS, &rl);
        }
        char verdict = k_finished;
        try {
            work();
        } catch (const std::bad_alloc&) {
            verdict = k_out_of_memory;
        } catch (...) {
            // The work ended; what it threw is the parent's to see when it runs the work itself.
        }
        write_verdict(fds[1], verdict);
        ::_exit(0);
    }

    ::close(fds[1]);
    // The limit is on the child's CPU time, checked when that much wall time has passed: on a
    // loaded machine a starved child has not used its time yet and gets more, up to
    // k_wall_factor times the limit (the backstop for a child that waits instead of working).
    const auto wall_deadline = t0 + limits.time * k_wall_factor;
    auto next_check = t0 + limits.time;
    char verdict = 0;
    bool timed_out = false;
    for (;;) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= wall_deadline) {
            timed_out = true;
            break;
        }
        if (now >= next_check) {
            const auto used = cpu_time(pid);
            if (used >= limits.time) {
                timed_out = true;
                break;
            }
            next_check = now + std::max(limits.time - used, std::chrono::milliseconds(10));
            continue;
        }
        const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::min(next_check, wall_deadline) - now);
        pollfd p{fds[0], POLLIN, 0};
        const int ready = ::poll(&p, 1, static_cast<int>(std::max<long long>(wait.count(), 1)));
        if (ready < 0 && errno == EINTR) continue;
        if (ready == 0) continue;
        // Readable, hung up or an error: read says which (a verdict byte, or 0 at EOF).
        ssize_t n = 0;
        while ((n = ::read(fds[0], &verdict, 1)) < 0 && errno == EINTR) {
        }
        if (n != 1) verdict = 0;
        break;
    }
    out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    if (timed_out) ::kill(pid, SIGKILL);
    ::close(fds[0]);
    reap(pid, out);
    if (timed_out) {
        out.signal = 0;  // our own SIGKILL says nothing about the work
        out.status = isolation_status::timed_out;
    } else if (verdict == k_finished) {
        out.status = isolation_status::finished;
    } else if (verdict == k_out_of_memory) {
        out.status = isolation_status::out_of_memory;
    } else {
        out.status = isolation_status::crashed;
    }
    return out;
}

}  // namespace ferry::config::detail
