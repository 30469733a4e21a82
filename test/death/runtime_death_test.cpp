// Misuse of a runtime that cannot be reported by an exception (and a fork,
// which must stay inside a death test's child).
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

// shutdown() from one of the runtime's own fibers would wait for itself; the
// header promises an abort with a message. The style guide makes fatal
// messages start with the function name.
TEST(RuntimeDeathTest, ShutdownFromItsOwnFiberAborts) {
    EXPECT_EXIT(
        {
            weft::runtime rt(weft::runtime_options{.workers = 1});
            rt.block_on([&rt] { rt.shutdown(); });
        },
        testing::KilledBySignal(SIGABRT), "shutdown");
}

// The same from a spawn_blocking job that one of the runtime's fibers waits
// for: shutdown() would wait for that fiber, which waits for the job (it hung
// in silence before; found by review).
// std::exit() on a fiber of a global runtime runs the runtime's destructor on
// that fiber: it aborted ("would wait for itself") and lost the exit status.
// Now the workers are abandoned, as the default runtime's are at exit.
TEST(RuntimeDeathTest, ExitOnAFiberOfAGlobalRuntimeKeepsItsStatus) {
    EXPECT_EXIT(
        {
            static weft::runtime* global = nullptr;
            alignas(weft::runtime) static unsigned char storage[sizeof(weft::runtime)];
            global = new (storage) weft::runtime(weft::runtime_options{.workers = 2});
            std::atexit([] { global->~runtime(); });  // what a global's destructor is
            global->block_on([] { std::exit(3); });
        },
        testing::ExitedWithCode(3), "");
}

// Fibers of the default runtime, never shut down, still log while static
// destructors run at exit: the logger was destroyed under them (a crash).
TEST(RuntimeDeathTest, DefaultRuntimeFibersMayLogDuringExit) {
    // A fresh process (re-executed), so that the slow exit hook is registered
    // before the logger exists and runs after the logger's static would be gone.
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(
        {
            std::atexit([] { std::this_thread::sleep_for(std::chrono::milliseconds(200)); });  // a slow destructor
            static std::atomic<bool> stop{false};
            weft::spawn([] {
                while (!stop.load()) {
                    weft::spawn([] { throw std::runtime_error("unobserved"); });  // logged at error level
                    weft::this_fiber::sleep_for(std::chrono::microseconds(100));
                }
            });
            weft::this_fiber::sleep_for(std::chrono::milliseconds(20));
            std::exit(0);
        },
        testing::ExitedWithCode(0), "");
}

TEST(RuntimeDeathTest, ShutdownFromABlockingJobOfItsOwnFiberAborts) {
    EXPECT_EXIT(
        {
            weft::runtime rt(weft::runtime_options{.workers = 1});
            rt.block_on([&rt] { weft::spawn_blocking([&rt] { rt.shutdown(); }); });
        },
        testing::KilledBySignal(SIGABRT), "shutdown.*spawn_blocking job");
}

// fork() after the blocking pool was used: the child has none of its threads
// (an idle one lives for the keep-alive), yet spawn_blocking must work there
// (it waited for ever, handing its job to a thread that was not there; found
// by review). In a death test's child, so that the fork stays contained.
// ThreadSanitizer refuses threads after a multi-threaded fork: skipped there.
TEST(RuntimeDeathTest, SpawnBlockingWorksInAForkedChild) {
#if defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "ThreadSanitizer does not support threads after fork()";
#else
    EXPECT_EXIT(
        {
            {
                weft::runtime rt(weft::runtime_options{.workers = 1});
                if (rt.block_on([] { return weft::spawn_blocking([] { return 1; }); }) != 1) std::_Exit(3);
            }
            const pid_t pid = ::fork();
            if (pid == 0) {
                ::alarm(20);  // a hang ends as SIGALRM, not as a stuck test
                weft::runtime rt(weft::runtime_options{.workers = 1});
                std::_Exit(rt.block_on([] { return weft::spawn_blocking([] { return 42; }); }) == 42 ? 0 : 4);
            }
            int status = 0;
            if (pid < 0 || ::waitpid(pid, &status, 0) != pid) std::_Exit(5);
            std::_Exit(WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status));
        },
        testing::ExitedWithCode(0), "");
#endif
}

// Regression: the last reference of a detached fiber used to be dropped in the
// exit hook, so its result's destructor ran on the next fiber's stack (here
// ~jthread joined from the wrong fiber: "a fiber cannot join itself"). Result
// destructors now run on the fiber's own stack or the handle owner's thread.
TEST(RuntimeDeathTest, RegressionDetachedResultIsDestroyedOnItsOwnFiber) {
    EXPECT_EXIT(
        {
            weft::runtime rt(weft::runtime_options{.workers = 1});
            rt.block_on([] {
                weft::spawn([] { return weft::jthread([](std::stop_token) {}); }).detach();
                weft::this_fiber::yield();
            });
            rt.shutdown();
            std::exit(0);
        },
        testing::ExitedWithCode(0), "");
}
