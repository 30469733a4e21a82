// weft::thread's terminate rules (std::thread's contract) and the report of
// an exception escaping a thread's function.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>

#include <unistd.h>

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

// runtime::shutdown() cancels a weft::thread parked in a blocking call: its
// stack unwinds with operation_cancelled, which ends the thread quietly (a
// std->weft rename must not turn a clean shutdown into a terminate).
TEST(ThreadDeathTest, AThreadCancelledByShutdownEndsQuietly) {
    EXPECT_EXIT(
        {
            weft::runtime rt(weft::runtime_options{.workers = 2});
            rt.block_on([] {
                weft::channel<int> ch;
                weft::thread t([ch] {
                    for (int v : ch) (void)v;
                });
                t.detach();
                for (int i = 0; i < 5; ++i) weft::this_fiber::yield();
            });
            rt.shutdown();
            std::exit(0);
        },
        testing::ExitedWithCode(0), "");
}

// Cancelled detached fibers are not logged as errors at shutdown (a server
// would print one line per connection); a real unjoined exception still is.
// The child reads its own stderr back: exit 0 if right, 3/4 otherwise.
TEST(ShutdownLogDeathTest, CancelledDetachedFibersAreNotLoggedAsErrors) {
    EXPECT_EXIT(
        {
            std::fflush(stderr);
            std::FILE* log = std::tmpfile();
            if (!log || ::dup2(::fileno(log), 2) < 0) std::exit(5);
            {
                weft::runtime rt(weft::runtime_options{.workers = 2});
                rt.block_on([] {
                    weft::channel<int> ch;
                    for (int i = 0; i < 20; ++i)
                        weft::spawn([ch] {
                            for (int v : ch) (void)v;
                        }).detach();
                    weft::spawn([] { throw std::runtime_error("a real failure"); }).detach();
                    for (int i = 0; i < 20; ++i) weft::this_fiber::yield();
                });
                rt.shutdown();
            }
            std::fflush(stderr);
            std::string text;
            std::rewind(log);
            for (int c; (c = std::fgetc(log)) != EOF;) text.push_back(static_cast<char>(c));
            if (text.find("nobody joined: a real failure") == std::string::npos) std::exit(3);
            if (text.find("cancelled") != std::string::npos) std::exit(4);
            std::exit(0);
        },
        testing::ExitedWithCode(0), "");
}
