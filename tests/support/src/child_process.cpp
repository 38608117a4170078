#include "ferry/test/child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>

extern char** environ;

namespace ferry::test {

namespace {

using steady = std::chrono::steady_clock;

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// Resolves a bare program name through PATH in the parent, so the child between fork and exec
// only makes async-signal-safe calls.
std::string resolve(const std::string& path) {
    if (path.find('/') != std::string::npos) {
        return path;
    }
    const char* env_path = std::getenv("PATH");
    std::string dirs = env_path != nullptr ? env_path : "/usr/bin:/bin";
    std::size_t start = 0;
    while (start <= dirs.size()) {
        std::size_t end = dirs.find(':', start);
        if (end == std::string::npos) {
            end = dirs.size();
        }
        std::string dir = dirs.substr(start, end - start);
        std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + path;
        if (::access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
        start = end + 1;
    }
    return path;  // execve will fail with ENOENT and the constructor reports it.
}

std::string base_name(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string exit_status::describe() const {
    if (exited) {
        return "exited with code " + std::to_string(code);
    }
    const char* name = ::sigabbrev_np(signal);
    return "killed by signal " + std::to_string(signal) +
           (name != nullptr ? std::string(" (SIG") + name + ")" : std::string());
}

child_process::child_process(const std::string& path, const std::vector<std::string>& args,
                             const child_options& options)
    : _name(base_name(path)), _echo(options.echo_stdout) {
    const std::string exe = resolve(path);

    // Everything the child needs is prepared before fork(): after it, a multi-threaded parent's
    // child may only make async-signal-safe calls.
    std::vector<std::string> argv_storage;
    argv_storage.reserve(args.size() + 1);
    argv_storage.push_back(path);
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    argv.reserve(argv_storage.size() + 1);
    for (auto& a : argv_storage) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);

    std::map<std::string, std::string> env_map;
    if (options.inherit_env) {
        for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
            std::string_view kv(*e);
            const auto eq = kv.find('=');
            if (eq != std::string_view::npos) {
                env_map.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
            }
        }
    }
    for (const auto& [k, v] : options.env) {
        env_map[k] = v;
    }
    std::vector<std::string> env_storage;
    env_storage.reserve(env_map.size());
    for (const auto& [k, v] : env_map) {
        env_storage.push_back(k);
        env_storage.back().append("=").append(v);
    }
    std::vector<char*> envp;
    envp.reserve(env_storage.size() + 1);
    for (auto& e : env_storage) {
        envp.push_back(e.data());
    }
    envp.push_back(nullptr);

    int out[2];
    int exec_err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
        throw std::runtime_error(errno_text("child_process: pipe2"));
    }
    if (::pipe2(exec_err, O_CLOEXEC) != 0 || ::pipe2(_wake, O_CLOEXEC) != 0) {
        throw std::runtime_error(errno_text("child_process: pipe2"));
    }
    int err_fd = -1;
    if (!options.stderr_path.empty()) {
        err_fd =
            ::open(options.stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (err_fd < 0) {
            throw std::runtime_error(errno_text("child_process: open " + options.stderr_path));
        }
    }
    const char* work_dir = options.working_dir.empty() ? nullptr : options.working_dir.c_str();
    const pid_t parent = ::getpid();

    _pid = ::fork();
    if (_pid < 0) {
        throw std::runtime_error(errno_text("child_process: fork"));
    }
    if (_pid == 0) {
        // Child. Die with the creating thread, so a crashed test leaves no orphan relays.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) {
            ::_exit(127);
        }
        // Own process group, so that cleanup can also reach grandchildren that would otherwise
        // keep the test's stderr (and ctest's pipe) open long after the test ended.
        ::setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::signal(SIGPIPE, SIG_DFL);
        ::dup2(out[1], STDOUT_FILENO);
        if (err_fd >= 0) {
            ::dup2(err_fd, STDERR_FILENO);
        }
        // Descriptors the test holds (sockets, files) must not leak into the child; the exec
        // error pipe is already close-on-exec, so marking everything else so is enough.
        ::syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */);
        if (work_dir != nullptr && ::chdir(work_dir) != 0) {
            const int e = errno;
            (void)!::write(exec_err[1], &e, sizeof(e));
            ::_exit(127);
        }
        ::execve(exe.c_str(), argv.data(), envp.data());
        const int e = errno;
        (void)!::write(exec_err[1], &e, sizeof(e));
        ::_exit(127);
    }

    ::close(out[1]);
    ::close(exec_err[1]);
    if (err_fd >= 0) {
        ::close(err_fd);
    }
    int child_errno = 0;
    ssize_t n;
    do {
        n = ::read(exec_err[0], &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    ::close(exec_err[0]);
    if (n == static_cast<ssize_t>(sizeof(child_errno))) {
        int st = 0;
        ::waitpid(_pid, &st, 0);
        _status = exit_status{true, 127, 0};
        ::close(out[0]);
        ::close(_wake[0]);
        ::close(_wake[1]);
        throw std::runtime_error("child_process: cannot execute " + exe + ": " +
                                 std::strerror(child_errno));
    }
    _reader = std::thread([this, fd = out[0]] { reader_loop(fd); });
}

child_process::~child_process() {
    if (!_status) {
        // While the child is unreaped its pid (= process group id) cannot be reused.
        ::kill(-_pid, SIGKILL);
        ::kill(_pid, SIGKILL);
        try_reap(true);
    }
    if (_reader.joinable()) {
        const char c = 'x';
        (void)!::write(_wake[1], &c, 1);
        _reader.join();
    }
    if (_wake[0] >= 0) {
        ::close(_wake[0]);
        ::close(_wake[1]);
    }
}

void child_process::reader_loop(int fd) {
    std::string partial;
    char buf[4096];
    for (;;) {
        pollfd fds[2] = {{fd, POLLIN, 0}, {_wake[0], POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (fds[1].revents != 0) {
            break;
        }
        const ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        partial.append(buf, static_cast<std::size_t>(n));
        std::vector<std::string> complete;
        for (std::size_t pos; (pos = partial.find('\n')) != std::string::npos;) {
            complete.push_back(partial.substr(0, pos));
            partial.erase(0, pos + 1);
        }
        if (!complete.empty()) {
            std::lock_guard lock(_mutex);
            for (auto& line : complete) {
                if (_echo) {
                    std::cerr << "[" << _name << "] " << line << '\n';
                }
                _lines.push_back(std::move(line));
            }
            _cv.notify_all();
        }
    }
    ::close(fd);
    std::lock_guard lock(_mutex);
    if (!partial.empty()) {
        _lines.push_back(std::move(partial));
    }
    _eof = true;
    _cv.notify_all();
}

std::optional<std::string> child_process::read_line(std::chrono::milliseconds timeout) {
    std::unique_lock lock(_mutex);
    _cv.wait_for(lock, timeout, [&] { return _next_unread < _lines.size() || _eof; });
    if (_next_unread < _lines.size()) {
        return _lines[_next_unread++];
    }
    return std::nullopt;
}

std::optional<std::string> child_process::wait_for_line(
    const std::function<bool(std::string_view)>& match, std::chrono::milliseconds timeout) {
    const auto deadline = steady::now() + timeout;
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
        auto line = read_line(std::max(left, std::chrono::milliseconds(0)));
        if (!line) {
            return std::nullopt;
        }
        if (match(*line)) {
            return line;
        }
    }
}

std::optional<std::string> child_process::wait_for_prefix(std::string_view prefix,
                                                          std::chrono::milliseconds timeout) {
    auto line = wait_for_line([&](std::string_view l) { return l.starts_with(prefix); }, timeout);
    if (line) {
        line->erase(0, prefix.size());
    }
    return line;
}

std::vector<std::string> child_process::lines() const {
    std::lock_guard lock(_mutex);
    return _lines;
}

void child_process::signal(int sig) {
    // Until we reap it, the pid cannot be reused, so this never hits an unrelated process.
    if (!_status && ::kill(_pid, sig) != 0 && errno != ESRCH) {
        throw std::runtime_error(errno_text("child_process: kill " + std::to_string(_pid)));
    }
}

bool child_process::try_reap(bool block) {
    if (_status) {
        return true;
    }
    int st = 0;
    pid_t r;
    do {
        r = ::waitpid(_pid, &st, block ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == _pid) {
        if (WIFEXITED(st)) {
            _status = exit_status{true, WEXITSTATUS(st), 0};
        } else {
            _status = exit_status{false, -1, WTERMSIG(st)};
        }
        return true;
    }
    if (r < 0) {
        // ECHILD: someone else reaped it (e.g. a SIGCHLD handler set to SIG_IGN).
        _status = exit_status{false, -1, 0};
        return true;
    }
    return false;
}

std::optional<exit_status> child_process::wait(std::chrono::milliseconds timeout) {
    const auto deadline = steady::now() + timeout;
    while (!try_reap(false)) {
        if (steady::now() >= deadline) {
            return std::nullopt;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return _status;
}

exit_status child_process::shutdown(std::chrono::milliseconds grace) {
    if (!_status) {
        terminate();
        cont();  // A SIGSTOPped child handles SIGTERM only once continued.
        if (!wait(grace)) {
            ::kill(-_pid, SIGKILL);
            kill();
            try_reap(true);
        }
    }
    return *_status;
}

bool child_process::running() { return !try_reap(false); }

}  // namespace ferry::test
