// The "all fibers are asleep" report (src/diag/deadlock.hpp): a process in
// which nothing can wake anyone any more aborts with every wait listed.
// Each case runs in a fresh child (death_test_style threadsafe, test/main.cpp),
// so that the watch's mode is read there and no thread of another test exists.
//
// Skipped under ThreadSanitizer: its background thread is a thread weft does
// not know, so the watch rightly never reports there (Z1). The cases where a
// wake-up can still come, and must not be reported, are in
// test/api/deadlock_test.cpp.
#include <unistd.h>

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
    weft::runtime_options opts() const { return {.workers = GetParam()}; }
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
            ::alarm(3);
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

}  // namespace
