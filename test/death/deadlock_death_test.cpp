// The "all fibers are asleep" report (src/diag/deadlock.hpp): a process in
// which nothing can wake anyone any more aborts with every wait listed.
// Each case runs in a fresh child (death_test_style threadsafe, test/main.cpp),
// so that the watch's mode is read there and no thread of another test exists.
//
// Skipped under ThreadSanitizer: its background thread is a thread weft does
// not know, so the watch rightly never reports there (Z1). The cases where a
// wake-up can still come, and must not be reported, are in
// test/api/deadlock_test.cpp.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

#include "runtime_fixture.hpp"

namespace {

class DeadlockDeathTest : public testing::TestWithParam<std::size_t> {
protected:
    void SetUp() override {
        if constexpr (weft_test::thread_sanitized) GTEST_SKIP() << "TSan's own thread hides every deadlock";
    }
    // Stall warnings on, whatever WEFT_STALL_MS says: with one worker they are
    // what keeps a monitor thread, which makes the looks.
    weft::runtime_options opts() const {
        return {.workers = GetParam(), .stall_warning = std::chrono::milliseconds(100)};
    }
};

INSTANTIATE_TEST_SUITE_P(Workers, DeadlockDeathTest, testing::Values(1, 2, 4), worker_count_name);

// block_on's fiber waits on a channel that nobody holds a sender of: Go's
// classic "all goroutines are asleep". The report names the wait of every
// fiber and the plain thread in block_on.
TEST_P(DeadlockDeathTest, ReceiveThatNobodySendsToIsReported) {
    EXPECT_EXIT(
        {
            weft::runtime rt(opts());
            weft::channel<int> ch(0);
            rt.block_on([&] {
                weft::this_fiber::set_name("receiver");
                (void)ch.recv();
            });
        },
        testing::KilledBySignal(SIGABRT),
        "all fibers are asleep - deadlock!.*fiber [0-9]+ 'receiver': chan recv.*plain threads blocked in weft "
        "calls:.*: join");
}

// Two fibers take two mutexes in opposite orders.
TEST_P(DeadlockDeathTest, LockOrderInversionIsReported) {
    EXPECT_EXIT(
        {
            weft::runtime rt(opts());
            rt.block_on([] {
                weft::mutex a, b;
                weft::latch both_hold(2);
                auto take = [&both_hold](weft::mutex& first, weft::mutex& second, const char* name) {
                    weft::this_fiber::set_name(name);
                    std::lock_guard<weft::mutex> g1(first);
                    both_hold.arrive_and_wait();
                    std::lock_guard<weft::mutex> g2(second);
                };
                auto x = weft::spawn(take, std::ref(a), std::ref(b), "a-then-b");
                auto y = weft::spawn(take, std::ref(b), std::ref(a), "b-then-a");
                x.join();
                y.join();
            });
        },
        testing::KilledBySignal(SIGABRT), "all fibers are asleep.*'(a-then-b|b-then-a)': mutex.*'(a-then-b|b-then-a)': mutex");
}

// Plain threads only, no fiber involved: both wait for each other through
// weft primitives, and main waits on a latch they would count down. The
// runtime's monitor still sees that every thread is stuck.
TEST_P(DeadlockDeathTest, PlainThreadsWaitingOnEachOtherAreReported) {
    EXPECT_EXIT(
        {
            weft::runtime rt(opts());
            weft::mutex a;
            weft::mutex b;
            weft::latch both_hold(2);
            weft::latch done(2);
            auto take = [&](weft::mutex& first, weft::mutex& second) {
                std::lock_guard<weft::mutex> g1(first);
                both_hold.arrive_and_wait();
                std::lock_guard<weft::mutex> g2(second);
                done.count_down();
            };
            std::thread t1(take, std::ref(a), std::ref(b));
            std::thread t2(take, std::ref(b), std::ref(a));
            done.wait();  // never: the process aborts first
            t1.join();
            t2.join();
        },
        testing::KilledBySignal(SIGABRT), "all fibers are asleep.*plain threads blocked in weft calls:.*: mutex.*: mutex");
}

// The rename case: a program that only swapped std::thread and
// std::condition_variable for weft's, on the default runtime, waits for a
// notification nobody sends.
TEST(DeadlockDefaultRuntimeDeathTest, ARenamedProgramThatWaitsForeverIsReported) {
    if constexpr (weft_test::thread_sanitized) GTEST_SKIP() << "TSan's own thread hides every deadlock";
    EXPECT_EXIT(
        {
            weft::mutex m;
            weft::condition_variable cv;
            bool ready = false;
            weft::thread t([&] {
                std::unique_lock<weft::mutex> lk(m);
                cv.wait(lk, [&] { return ready; });
            });
            t.join();
        },
        testing::KilledBySignal(SIGABRT), "all fibers are asleep.*: condition_variable.*: join");
}

// WEFT_DEADLOCK=warn logs the report (once) and lets the process go on: here
// it stays stuck until an alarm ends it. WEFT_DEADLOCK=off makes no report.
TEST(DeadlockModeDeathTest, WarnLogsTheReportAndGoesOn) {
    if constexpr (weft_test::thread_sanitized) GTEST_SKIP() << "TSan's own thread hides every deadlock";
    EXPECT_EXIT(
        {
            ::setenv("WEFT_DEADLOCK", "warn", 1);
            ::alarm(6);  // well past the 1 s confirmation, even on a loaded sanitizer build
            weft::runtime rt(weft::runtime_options{.workers = 2});
            weft::channel<int> ch(0);
            rt.block_on([&] { (void)ch.recv(); });
        },
        testing::KilledBySignal(SIGALRM), "all fibers are asleep - deadlock!.*WEFT_DEADLOCK=warn: going on");
}

TEST(DeadlockModeDeathTest, OffMakesNoReport) {
    if constexpr (weft_test::thread_sanitized) GTEST_SKIP() << "TSan's own thread hides every deadlock";
    EXPECT_EXIT(
        {
            ::setenv("WEFT_DEADLOCK", "off", 1);
            ::alarm(3);  // SIGALRM, not SIGABRT: no report aborted it
            weft::runtime rt(weft::runtime_options{.workers = 2});
            weft::channel<int> ch(0);
            rt.block_on([&] { (void)ch.recv(); });
        },
        testing::KilledBySignal(SIGALRM), "");
}

// A sleep with no end waits for time, not for another thread: as Go's
// time.Sleep(max), it is no deadlock (found by review). Only the alarm ends it.
TEST(DeadlockModeDeathTest, AnEndlessSleepIsNoDeadlock) {
    if constexpr (weft_test::thread_sanitized) GTEST_SKIP() << "TSan's own thread hides every deadlock";
    EXPECT_EXIT(
        {
            ::alarm(4);  // SIGALRM, not SIGABRT: no report aborted it (the watch had 4 s)
            weft::runtime rt(weft::runtime_options{.workers = 2});
            rt.block_on([] { weft::this_fiber::sleep_for(std::chrono::hours::max()); });
        },
        testing::KilledBySignal(SIGALRM), "");
}

// fork(): the child has none of the parent's threads; the watch starts there
// from nothing (src/diag/deadlock.cpp, fork handlers). Found by review: the
// parent's timer thread, still counted in the child, hid a sleeping thread
// there, and a correct child was aborted; the parent's waiters, still listed,
// were walked on stacks the child had reused.
namespace forked {

// A child forked while another thread is inside the sanitizers' allocator
// waits for its lock for ever (ASan's allocator takes no fork handler; seen
// with the timer thread still starting up). The fork paths are plain code.
constexpr const char* fork_beside_threads =
    "fork() beside running threads: the sanitizers' allocators are not fork-safe";

/// Runs f in a fork child; its exit code, or 128 + the signal that killed it.
template <class F>
int run_in_child(F f) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        f();
        ::_exit(0);
    }
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return 255;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// A child that is not deadlocked: block_on waits for a thread outside weft,
/// which sends after the watch's 1 s confirmation. Exits 0 if it got the value.
void wait_for_a_sleeping_thread() {
    weft::runtime rt(weft::runtime_options{.workers = 2});
    weft::channel<int> ch(0);
    std::thread late([ch]() mutable {
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        ch.send(1);
    });
    const std::optional<int> v = rt.block_on([&] { return ch.recv(); });
    late.join();
    ::_exit(v == std::optional<int>(1) ? 0 : 1);
}

/// Leaves the parent with every kind of weft thread: a runtime's workers and
/// monitor, the timer thread, a blocking-pool thread.
void busy_parent(weft::runtime& rt) {
    rt.block_on([] {
        (void)weft::after(std::chrono::milliseconds(1)).recv();
        (void)weft::spawn_blocking([] { return 0; });
    });
}

}  // namespace forked

TEST(DeadlockForkDeathTest, AForkChildWaitingForASleepingThreadIsNotReported) {
    if constexpr (weft_test::sanitized) GTEST_SKIP() << forked::fork_beside_threads;
    EXPECT_EXIT(
        {
            // Exactly one parent thread the child lacks: as many as the sleeping thread below.
            (void)weft::after(std::chrono::milliseconds(1)).recv();
            std::exit(forked::run_in_child(forked::wait_for_a_sleeping_thread));
        },
        testing::ExitedWithCode(0), "");
}

// The same when the parent only ever started the timer thread, without a
// blocking call: the watch's fork handlers must be installed before any of
// weft's threads counts itself (found by review).
TEST(DeadlockForkDeathTest, AForkChildOfATickerOnlyParentIsNotMisled) {
    if constexpr (weft_test::sanitized) GTEST_SKIP() << forked::fork_beside_threads;
    EXPECT_EXIT(
        {
            weft::ticker tk(std::chrono::hours(1));  // the timer thread, and nothing else
            std::this_thread::sleep_for(std::chrono::milliseconds(50));  // it has counted itself
            std::exit(forked::run_in_child(forked::wait_for_a_sleeping_thread));
        },
        testing::ExitedWithCode(0), "");
}

// A ticker inherited from the parent, reset in the child, ticks there: its
// timer counts as live for the watch (a forgotten entry counted as stale made
// the child's timer heap look empty, found by review).
TEST(DeadlockForkDeathTest, AnInheritedTickerResetInTheChildTicks) {
    if constexpr (weft_test::sanitized) GTEST_SKIP() << forked::fork_beside_threads;
    EXPECT_EXIT(
        {
            static weft::ticker tk(std::chrono::seconds(10));
            std::exit(forked::run_in_child([] {
                tk.reset(std::chrono::milliseconds(1500));  // past the watch's 1 s confirmation
                weft::runtime rt(weft::runtime_options{.workers = 2});
                const bool ticked = rt.block_on([] { return tk.chan().recv().has_value(); });
                ::_exit(ticked ? 0 : 1);
            }));
        },
        testing::ExitedWithCode(0), "");
}

TEST(DeadlockForkDeathTest, ADeadlockInAForkChildIsReported) {
    if constexpr (weft_test::sanitized) GTEST_SKIP() << forked::fork_beside_threads;
    EXPECT_EXIT(
        {
            weft::runtime parent(weft::runtime_options{.workers = 2});
            forked::busy_parent(parent);
            std::exit(forked::run_in_child([] {
                weft::runtime rt(weft::runtime_options{.workers = 2});
                weft::channel<int> ch(0);
                rt.block_on([&] { (void)ch.recv(); });
            }));
        },
        testing::ExitedWithCode(128 + SIGABRT), "all fibers are asleep - deadlock!");
}

// The timer thread in a fork child: the timers armed before fork() are
// forgotten there (their channels may be mid-operation in a thread the child
// lacks), and the child's own after() fires. It waited for ever (no timer
// thread in the child), and firing the inherited timers crashed. fork() here
// races threads that use after() and plain-thread channel waits all along.
TEST(DeadlockForkDeathTest, ForkChildrenOfABusyProcessGetWorkingTimers) {
    if constexpr (weft_test::sanitized) GTEST_SKIP() << forked::fork_beside_threads;
    EXPECT_EXIT(
        {
            using namespace std::chrono_literals;
            // No stall warnings: a parent thread logging at fork time would leave the
            // logger's lock held in the child. The monitor still looks every 50 ms.
            weft::runtime parent(weft::runtime_options{.workers = 2, .stall_warning = -1ms});
            weft::channel<int> never(0);
            parent.spawn([never] { (void)never.recv(); }).detach();  // so that the looks go deep
            static std::atomic<bool> stop{false};
            std::thread timers([] {
                while (!stop.load()) (void)weft::after(100us).recv();
            });
            std::thread plain([] {
                weft::channel<int> c(0);
                while (!stop.load()) {
                    std::thread t([c]() mutable { c.send(1); });
                    (void)c.recv();
                    t.join();
                }
            });
            auto armed_before = weft::after(50ms);  // forgotten by the children that fork before it fires
            int failed = 0;
            for (int i = 0; i < (weft_test::sanitized ? 50 : 200) && failed == 0; ++i) {
                failed = forked::run_in_child([] {
                    ::alarm(10);
                    weft::runtime rt(weft::runtime_options{.workers = 2});
                    const bool fired = rt.block_on([] { return weft::after(1ms).recv().has_value(); });
                    ::_exit(fired ? 0 : 1);
                });
            }
            stop.store(true);
            timers.join();
            plain.join();
            never.close();
            std::exit(failed);
        },
        testing::ExitedWithCode(0), "");
}

}  // namespace
