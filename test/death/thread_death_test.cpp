// weft::thread's terminate rules (std::thread's contract) and the report of
// an exception escaping a thread's function.
#include <csignal>
#include <cstdlib>
#include <stdexcept>
#include <utility>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

// libstdc++'s default terminate handler prints "terminate called ...", so the
// regex tells std::terminate() apart from a plain abort().
TEST(ThreadDeathTest, DestroyingAJoinableThreadTerminates) {
    EXPECT_EXIT(
        {
            weft::thread t([] {});
        },
        testing::KilledBySignal(SIGABRT), "terminate called");
}

TEST(ThreadDeathTest, MoveAssigningOverAJoinableThreadTerminates) {
    EXPECT_EXIT(
        {
            weft::thread a([] {});
            weft::thread b([] {});
            a = std::move(b);
        },
        testing::KilledBySignal(SIGABRT), "terminate called");
}

// The control for the two tests above: the same code, done right, exits cleanly.
TEST(ThreadDeathTest, JoinedOrDetachedThreadsDestroyCleanly) {
    EXPECT_EXIT(
        {
            weft::thread a([] {});
            weft::thread b([] {});
            a.join();
            a = std::move(b);
            a.detach();
            std::exit(0);
        },
        testing::ExitedWithCode(0), "");
}

TEST(ThreadDeathTest, UncaughtExceptionTerminatesNamingTheFiber) {
    EXPECT_DEATH(
        {
            weft::thread t([] {
                weft::this_fiber::set_name("thrower");
                throw std::runtime_error("boom");
            });
            t.join();
        },
        "weft: uncaught exception in fiber [0-9]+ 'thrower': boom");
}

TEST(ThreadDeathTest, UncaughtExceptionInAJthreadTerminates) {
    EXPECT_DEATH(
        {
            weft::jthread t([] { throw std::logic_error("jthread boom"); });
        },
        "uncaught exception in fiber [0-9]+ .*jthread boom");
}
