#pragma once

// Runs another program (ferry-relay, ferry-dev-kafka, a service) as a child of the test, so fault
// tests can kill -9, SIGSTOP/SIGCONT or SIGTERM it and look at what it printed.
//
// Lifecycle and ownership: the constructor starts the process (throwing if it cannot be
// executed) in its own process group; the destructor SIGKILLs that group if the child is still
// running (grandchildren included) and reaps the child. signal() and friends reach the child
// only, as `kill -9 PID` would. The child also
// gets SIGKILL if the thread that created it exits (PR_SET_PDEATHSIG), so a crashed test leaves
// no orphans: create child_process objects on the test's main thread.
// stdout is read continuously by an internal thread into a line buffer (the child never blocks
// on a full pipe); stderr goes to the test's stderr unless redirected to a file.
// Thread-safety: read_line()/lines() may be called from any thread; the other methods from one
// thread at a time.

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace ferry::test {

struct child_options {
    // Variables added to (or overriding) the inherited environment.
    std::map<std::string, std::string> env{};
    // When false, the child gets only `env`.
    bool inherit_env = true;
    // Empty: stderr goes to the test's stderr. Otherwise appended to this file.
    std::string stderr_path{};
    // Copy each stdout line to the test's stderr, prefixed with "[name] ", for debugging.
    bool echo_stdout = false;
    // Working directory; empty means the test's.
    std::string working_dir{};
};

// How a child ended.
struct exit_status {
    bool exited = false;  // normal exit: see code
    int code = -1;        // exit code if exited
    int signal = 0;       // terminating signal if !exited
    [[nodiscard]] bool success() const { return exited && code == 0; }
    [[nodiscard]] std::string describe() const;
};

class child_process {
public:
    // `path` is searched in PATH when it has no '/'. args exclude argv[0].
    child_process(const std::string& path, const std::vector<std::string>& args,
                  const child_options& options = {});
    ~child_process();
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    [[nodiscard]] pid_t pid() const { return _pid; }
    [[nodiscard]] const std::string& name() const { return _name; }

    // Next stdout line not yet returned by read_line(), waiting up to `timeout`. nullopt on
    // timeout, or when stdout closed and every line was returned.
    std::optional<std::string> read_line(std::chrono::milliseconds timeout);
    // Reads lines until one satisfies `match` (lines before it are consumed), or nullopt.
    std::optional<std::string> wait_for_line(const std::function<bool(std::string_view)>& match,
                                             std::chrono::milliseconds timeout);
    // Convenience: the first unread line starting with `prefix`, with the prefix removed.
    std::optional<std::string> wait_for_prefix(std::string_view prefix,
                                               std::chrono::milliseconds timeout);
    // Every stdout line read so far (including consumed ones).
    [[nodiscard]] std::vector<std::string> lines() const;

    // Sends `sig` to the child if it has not been reaped yet.
    void signal(int sig);
    void kill() { signal(SIGKILL); }
    void terminate() { signal(SIGTERM); }
    void stop() { signal(SIGSTOP); }
    void cont() { signal(SIGCONT); }

    // Waits up to `timeout` for the child to end; nullopt if it is still running.
    std::optional<exit_status> wait(std::chrono::milliseconds timeout);
    // SIGTERM, wait up to `grace`, then SIGKILL; returns how it ended.
    exit_status shutdown(std::chrono::milliseconds grace = std::chrono::seconds(10));
    // True until the child has been reaped (a stopped child is running).
    [[nodiscard]] bool running();
    // How it ended, once reaped.
    [[nodiscard]] std::optional<exit_status> status() const { return _status; }

private:
    void reader_loop(int fd);
    bool try_reap(bool block);

    std::string _name;
    pid_t _pid = -1;
    std::optional<exit_status> _status;
    bool _echo = false;
    int _wake[2] = {-1, -1};
    std::thread _reader;
    mutable std::mutex _mutex;
    std::condition_variable _cv;
    std::vector<std::string> _lines;
    std::size_t _next_unread = 0;
    bool _eof = false;
};

}  // namespace ferry::test
