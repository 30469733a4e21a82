// Misuse of weft's mutexes that std leaves undefined and weft turns into an
// abort with a message: unlock of a mutex that is not locked, unlock by a
// fiber or thread that does not own it, one unlock too many of a recursive
// mutex. The message names the caller and the owner.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <weft/mutex.hpp>
#include <weft/weft.hpp>

namespace {
// What every report says; the owner part differs between the cases.
constexpr const char* not_owner = "unlock of weft mutex 0x[0-9a-f]+ by (fiber|thread) [0-9]+ .*, which does not own it";
}  // namespace

TEST(MutexDeathTest, UnlockOfAMutexNotLockedAborts) {
    EXPECT_EXIT(
        {
            weft::mutex m;
            m.unlock();
        },
        testing::KilledBySignal(SIGABRT), std::string(not_owner) + " \\(owner: nobody \\(it is not locked\\)\\)");
}

TEST(MutexDeathTest, UnlockOfAMutexNotLockedOnAFiberAborts) {
    EXPECT_EXIT(
        {
            weft::runtime rt(weft::runtime_options{.workers = 1});
            rt.block_on([] {
                weft::this_fiber::set_name("unlocker");
                weft::timed_mutex m;
                m.unlock();
            });
        },
        testing::KilledBySignal(SIGABRT), "by fiber [0-9]+ 'unlocker', which does not own it \\(owner: nobody");
}

TEST(MutexDeathTest, UnlockByAFiberThatDoesNotOwnItAborts) {
    EXPECT_EXIT(
        {
            weft::runtime rt(weft::runtime_options{.workers = 2});
            weft::mutex m;
            rt.block_on([&m] {
                m.lock();
                weft::spawn([&m] {
                    weft::this_fiber::set_name("intruder");
                    m.unlock();
                }).join();
            });
        },
        testing::KilledBySignal(SIGABRT),
        "by fiber [0-9]+ 'intruder', which does not own it \\(owner: fiber/thread [0-9]+\\)");
}

TEST(MutexDeathTest, UnlockByAPlainThreadOfAMutexAFiberHoldsAborts) {
    EXPECT_EXIT(
        {
            weft::runtime rt(weft::runtime_options{.workers = 1});
            weft::mutex m;
            rt.block_on([&m] { m.lock(); });  // the fiber ends still holding it
            m.unlock();
        },
        testing::KilledBySignal(SIGABRT), "by thread [0-9]+ .*which does not own it \\(owner: fiber/thread [0-9]+\\)");
}

TEST(MutexDeathTest, UnlockByAFiberOfAMutexAPlainThreadHoldsAborts) {
    EXPECT_EXIT(
        {
            weft::runtime rt(weft::runtime_options{.workers = 1});
            weft::recursive_timed_mutex m;
            m.lock();
            rt.block_on([&m] { m.unlock(); });
        },
        testing::KilledBySignal(SIGABRT), "by fiber [0-9]+ .*which does not own it \\(owner: fiber/thread [0-9]+\\)");
}

TEST(MutexDeathTest, RecursiveMutexUnlockedOnceTooOftenAborts) {
    EXPECT_EXIT(
        {
            weft::recursive_mutex m;
            m.lock();
            m.lock();
            m.unlock();
            m.unlock();
            m.unlock();
        },
        testing::KilledBySignal(SIGABRT), "which does not own it \\(owner: nobody");
}

// The control for the tests above: the same calls, done right, exit cleanly.
TEST(MutexDeathTest, MatchedLocksAndUnlocksExitCleanly) {
    EXPECT_EXIT(
        {
            weft::runtime rt(weft::runtime_options{.workers = 2});
            weft::mutex m;
            weft::recursive_mutex r;
            rt.block_on([&] {
                m.lock();
                weft::spawn([&] {
                    std::lock_guard g(r);
                    std::lock_guard again(r);
                }).join();
                m.unlock();
            });
            std::thread([&] {
                std::lock_guard g(m);
            }).join();
            rt.shutdown();
            std::exit(0);
        },
        testing::ExitedWithCode(0), "");
}

// weft::timer: destroying a pending timer while a fiber waits on it (a
// cancelled or expired one may be destroyed: its waiters are leaving).
TEST(TimerDeathTest, DestroyingAPendingTimerWithAWaiterAborts) {
    EXPECT_EXIT(
        {
            weft::runtime rt(weft::runtime_options{.workers = 1});
            rt.block_on([] {
                auto t = std::make_unique<weft::timer>(std::chrono::hours(1));
                weft::spawn([p = t.get()] { (void)p->wait(); }).detach();
                for (int i = 0; i < 5; ++i) weft::this_fiber::yield();  // let it park
                t.reset();
            });
        },
        testing::KilledBySignal(SIGABRT), "destroying a timer that a fiber or thread waits on");
}

// runtime::shutdown() cancels a fiber that owns a pending timer and the fiber
// waiting on it: whichever unwinds first, the owner's ~timer must not take
// the cancelled waiter for a misuse (timer.cpp M3).
TEST(TimerDeathTest, ShutdownUnwindingATimersOwnerAndItsWaiterExitsCleanly) {
    EXPECT_EXIT(
        {
            for (std::size_t workers : {1, 2, 4}) {
                for (int round = 0; round < 100; ++round) {
                    weft::runtime rt(weft::runtime_options{.workers = workers});
                    std::atomic<bool> ready{false};
                    rt.spawn([&ready] {
                        weft::timer t(std::chrono::hours(1));
                        auto h = weft::spawn([&t] { (void)t.wait(); });
                        for (int i = 0; i < 5; ++i) weft::this_fiber::yield();
                        ready.store(true);
                        h.join();  // cancelled: ~timer runs while unwinding, maybe before the waiter left
                    }).detach();
                    while (!ready.load()) std::this_thread::yield();
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                    rt.shutdown();
                }
            }
            std::exit(0);
        },
        testing::ExitedWithCode(0), "");
}
