// Unit tests of child_process against /bin/sh: no server involved.
#include "ferry/test/child_process.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "ferry/test/unique_name.hpp"

namespace {

using namespace std::chrono_literals;
using ferry::test::child_options;
using ferry::test::child_process;

TEST(ChildProcessTest, ReadsStdoutLinesAndExitCode) {
    child_process sh("sh", {"-c", "echo first; echo second; printf tail; exit 3"});
    EXPECT_EQ(sh.read_line(10s), "first");
    EXPECT_EQ(sh.read_line(10s), "second");
    EXPECT_EQ(sh.read_line(10s), "tail");
    auto status = sh.wait(10s);
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(status->exited);
    EXPECT_EQ(status->code, 3);
    EXPECT_FALSE(sh.read_line(100ms).has_value());
    EXPECT_EQ(sh.lines().size(), 3u);
}

TEST(ChildProcessTest, PassesArgumentsAndEnvironment) {
    child_options options;
    options.env["FERRY_CHILD_TEST"] = "hello world";
    child_process sh("/bin/sh", {"-c", "echo \"$FERRY_CHILD_TEST|$0|$1\"", "zero", "one two"},
                     options);
    EXPECT_EQ(sh.read_line(10s), "hello world|zero|one two");
    EXPECT_TRUE(sh.wait(10s)->success());
}

TEST(ChildProcessTest, WaitForPrefixSkipsOtherLines) {
    child_process sh("sh", {"-c", "echo noise; echo bootstrap.servers=a:1,b:2; exec sleep 30"});
    EXPECT_EQ(sh.wait_for_prefix("bootstrap.servers=", 10s), "a:1,b:2");
    EXPECT_TRUE(sh.running());
}

TEST(ChildProcessTest, KillNineIsReportedAsSignal) {
    child_process sh("sh", {"-c", "echo ready; exec sleep 30"});
    ASSERT_EQ(sh.read_line(10s), "ready");
    sh.kill();
    auto status = sh.wait(10s);
    ASSERT_TRUE(status.has_value());
    EXPECT_FALSE(status->exited);
    EXPECT_EQ(status->signal, SIGKILL);
    EXPECT_NE(status->describe().find("KILL"), std::string::npos) << status->describe();
}

TEST(ChildProcessTest, StopAndContinue) {
    // The child counts; while stopped it prints nothing, after SIGCONT it resumes.
    child_process sh("sh", {"-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done"});
    ASSERT_TRUE(sh.read_line(10s).has_value());
    sh.stop();
    std::this_thread::sleep_for(200ms);  // let a line written just before SIGSTOP arrive
    const auto before = sh.lines().size();
    std::this_thread::sleep_for(500ms);
    EXPECT_EQ(sh.lines().size(), before) << "a stopped child kept printing";
    EXPECT_TRUE(sh.running());
    sh.cont();
    std::this_thread::sleep_for(500ms);
    EXPECT_GT(sh.lines().size(), before);
    const auto status = sh.shutdown(5s);
    EXPECT_EQ(status.signal, SIGTERM) << status.describe();
}

TEST(ChildProcessTest, ShutdownEscalatesToKill) {
    child_process sh("sh", {"-c", "trap '' TERM; echo ready; while true; do sleep 0.05; done"});
    ASSERT_EQ(sh.read_line(10s), "ready");
    const auto status = sh.shutdown(300ms);
    EXPECT_EQ(status.signal, SIGKILL) << status.describe();
}

TEST(ChildProcessTest, MissingExecutableThrows) {
    EXPECT_THROW(child_process("/nonexistent/ferry-no-such-binary", {}), std::runtime_error);
}

TEST(ChildProcessTest, StderrGoesToFile) {
    const std::string path = "/tmp/" + ferry::test::unique_name("child_stderr") + ".log";
    child_options options;
    options.stderr_path = path;
    {
        child_process sh("sh", {"-c", "echo oops >&2"}, options);
        EXPECT_TRUE(sh.wait(10s)->success());
    }
    std::ifstream in(path);
    std::stringstream content;
    content << in.rdbuf();
    EXPECT_EQ(content.str(), "oops\n");
    std::remove(path.c_str());
}

TEST(ChildProcessTest, DestructorAlsoKillsGrandchildren) {
    pid_t grandchild = 0;
    {
        // The shell starts a background sleep and reports its pid, then waits.
        child_process sh("sh", {"-c", "sleep 30 & echo $!; wait"});
        auto line = sh.read_line(10s);
        ASSERT_TRUE(line.has_value());
        grandchild = std::stoi(*line);
        ASSERT_EQ(::kill(grandchild, 0), 0);
    }
    // The grandchild was re-parented and may linger as a zombie until init reaps it; it must
    // not be running.
    bool running = false;
    for (int i = 0; i < 200; ++i) {
        std::ifstream stat("/proc/" + std::to_string(grandchild) + "/stat");
        std::string pid, comm, state;
        if (!(stat >> pid >> comm >> state) || state == "Z") {
            running = false;
            break;
        }
        running = true;
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_FALSE(running) << "grandchild " << grandchild << " survived its child_process";
}

TEST(ChildProcessTest, DestructorKillsARunningChild) {
    pid_t pid = 0;
    {
        child_process sh("sh", {"-c", "exec sleep 30"});
        pid = sh.pid();
    }
    // The destructor killed and reaped it: there is no child left to wait for.
    errno = 0;
    EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
}

}  // namespace
