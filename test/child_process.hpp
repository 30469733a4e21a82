/// @file
/// Runs one test of the current test executable in a child process (for tests
/// that change process-wide state such as RLIMIT_NOFILE, or need more
/// descriptors than one process may hold). The child is the same binary,
/// started with posix_spawn (safe in a multi-threaded parent), a
/// --gtest_filter naming one test and one extra environment variable that
/// the child test reads; without the variable that test skips itself.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

extern char** environ;

namespace weft_test {

struct child_result {
    bool exited = false;    ///< false: killed (by us after `limit`, or by a signal)
    int exit_code = -1;     ///< when exited
    int signal = 0;         ///< when killed by a signal
    bool timed_out = false; ///< we killed it after `limit`
    std::string output;     ///< its stdout and stderr, interleaved
};

/// Runs `/proc/self/exe --gtest_filter=<filter>` with `env` ("NAME=value")
/// added to the environment; collects its output; kills it after `limit`.
inline child_result run_test_in_child(const std::string& filter, const std::string& env,
                                      std::chrono::seconds limit) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    ::posix_spawn_file_actions_adddup2(&actions, fds[1], 2);

    std::string exe = "/proc/self/exe";
    std::string filter_arg = "--gtest_filter=" + filter;
    std::string color_arg = "--gtest_color=no";
    std::vector<char*> argv{exe.data(), filter_arg.data(), color_arg.data(), nullptr};
    std::string env_copy = env;
    std::vector<char*> envp;
    for (char** e = environ; *e; ++e) envp.push_back(*e);
    envp.push_back(env_copy.data());
    envp.push_back(nullptr);

    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), envp.data());
    ::posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (rc != 0) {
        ::close(fds[0]);
        throw std::system_error(rc, std::generic_category(), "posix_spawn");
    }

    child_result res;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    char buf[4096];
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            res.timed_out = true;
            ::kill(pid, SIGKILL);
            break;
        }
        pollfd p{fds[0], POLLIN, 0};
        const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
        if (n < 0 && errno != EINTR) break;
        if (n <= 0) continue;
        const ssize_t r = ::read(fds[0], buf, sizeof buf);
        if (r > 0) {
            res.output.append(buf, static_cast<std::size_t>(r));
        } else if (r == 0 || errno != EINTR) {
            break;  // end of output: the child is exiting
        }
    }
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) {
        res.exited = true;
        res.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        res.signal = WTERMSIG(status);
    }
    return res;
}

/// The child ran its one test to a pass, on time, and exited 0; else says
/// what happened, with the child's output.
inline ::testing::AssertionResult child_passed(const child_result& res) {
    if (res.timed_out) return ::testing::AssertionFailure() << "killed after its time limit\n" << res.output;
    if (!res.exited || res.exit_code != 0)
        return ::testing::AssertionFailure() << "exit code " << res.exit_code << ", signal " << res.signal << "\n"
                                             << res.output;
    if (res.output.find("[  PASSED  ] 1 test") == std::string::npos)
        return ::testing::AssertionFailure() << "its test did not pass (filter or skip?)\n" << res.output;
    return ::testing::AssertionSuccess();
}

}  // namespace weft_test
