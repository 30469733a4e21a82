// Misuse of a runtime that cannot be reported by an exception (and a fork,
// which must stay inside a death test's child).
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>

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
