// weft::wait_group (Go's sync.WaitGroup): waiting for 1,000 fibers; done()
// from fibers, threads and both with waiters of both kinds (everything
// written before done() is seen after wait()); the counter going negative
// or above max() throws std::logic_error; destroying the wait_group right
// after wait() returns, in a loop (ASan and TSan check that done() no longer
// touches it); a wait that was parked returns even if add() raises the
// counter again at once; timed waits that time out (never before the
// deadline); cancellation of waiters at the shutdown of a separate runtime.
// Public API only (weft_dep).
//
// Timing: lower bounds only; upper bounds are `patience` (5 s) or more and
// catch hangs, not slowness.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>
#include <weft/wait_group.hpp>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"
#include "sync_fixture.hpp"

// RuntimeTest is instantiated over 1, 2 and 4 workers once for this
// executable, in runtime_test.cpp.

using namespace std::chrono_literals;
using weft_test::all_shapes;
using weft_test::eventually;
using weft_test::name_of;
using weft_test::scaled;
using weft_test::shape;
using weft_test::shutdown_promptly;
using clk = std::chrono::steady_clock;


static_assert(!std::is_copy_constructible_v<weft::wait_group>);
static_assert(std::is_nothrow_default_constructible_v<weft::wait_group>);

TEST_P(RuntimeTest, WaitGroupWaitsForAThousandFibers) {
    constexpr int fibers = 1000;
    weft::wait_group wg;
    std::vector<int> slots(fibers, 0);  // plain: done() must publish each write to the waiter
    const int bad = rt.block_on([&] {
        wg.add(fibers);
        for (int i = 0; i < fibers; ++i)
            weft::spawn([&, i] {
                if (i % 7 == 0) weft::this_fiber::yield();
                slots[i] = i + 1;
                wg.done();
            }).detach();
        wg.wait();
        int wrong = 0;
        for (int i = 0; i < fibers; ++i)
            if (slots[i] != i + 1) ++wrong;
        return wrong;
    });
    EXPECT_EQ(bad, 0) << "wait() returned before every done()";
    EXPECT_TRUE(wg.wait_for(0s));
}

TEST_P(RuntimeTest, WaitGroupDoneFromFibersAndThreadsWakesWaitersOfBothKinds) {
    const int workers_n = static_cast<int>(std::max<std::size_t>(scaled(200), 16));
    const int waiters = 6;
    for (shape s : all_shapes) {
        SCOPED_TRACE(name_of(s));
        weft::wait_group wg;
        std::vector<int> slots(workers_n, 0);
        std::atomic<int> wrong{0};
        std::atomic<int> out{0};
        wg.add(workers_n);
        auto check = [&] {
            wg.wait();
            for (int i = 0; i < workers_n; ++i)
                if (slots[i] != i + 1) wrong.fetch_add(1);
            out.fetch_add(1);
        };
        // Waiters: fibers for `fibers`, threads for `threads`, alternating for `mixed`.
        std::vector<weft::join_handle<void>> fiber_waiters;
        std::vector<std::thread> thread_waiters;
        for (int w = 0; w < waiters; ++w) {
            const bool on_thread = s == shape::threads || (s == shape::mixed && w % 2 == 1);
            if (on_thread) thread_waiters.emplace_back(check);
            else fiber_waiters.push_back(rt.spawn(check));
        }
        // Finishers: the same split.
        std::vector<weft::join_handle<void>> fiber_done;
        std::vector<std::thread> thread_done;
        for (int i = 0; i < workers_n; ++i) {
            auto finish = [&, i] {
                slots[i] = i + 1;
                wg.done();
            };
            const bool on_thread = s == shape::threads || (s == shape::mixed && i % 2 == 1);
            if (on_thread) thread_done.emplace_back(finish);
            else fiber_done.push_back(rt.spawn(finish));
        }
        for (auto& h : fiber_done) h.join();
        for (auto& t : thread_done) t.join();
        for (auto& h : fiber_waiters) h.join();
        for (auto& t : thread_waiters) t.join();
        EXPECT_EQ(out.load(), waiters);
        EXPECT_EQ(wrong.load(), 0) << "a waiter passed before every done()";
    }
}

TEST(WaitGroup, NegativeCounterThrowsLogicErrorAndChangesNothing) {
    weft::wait_group wg;
    EXPECT_THROW(wg.done(), std::logic_error);
    EXPECT_THROW(wg.add(-1), std::logic_error);
    wg.add(2);
    EXPECT_THROW(wg.add(-3), std::logic_error);
    EXPECT_FALSE(wg.wait_for(1ms)) << "the failed add changed the counter";
    wg.done();
    EXPECT_FALSE(wg.wait_for(1ms));
    wg.add(0);  // allowed: a no-op
    wg.done();
    EXPECT_TRUE(wg.wait_for(0ms));
    wg.wait();
    EXPECT_THROW(wg.done(), std::logic_error);
    EXPECT_THROW(wg.add(weft::wait_group::max() + 1), std::logic_error);
    wg.add(weft::wait_group::max());
    EXPECT_THROW(wg.add(1), std::logic_error);
    wg.add(-weft::wait_group::max());
    wg.wait();
}

TEST_P(RuntimeTest, WaitGroupDestroyedRightAfterWait) {
    // The waiter frees the wait_group as soon as wait() returns, while the
    // last done() may still be returning (wait_group.hpp W3). ASan and TSan
    // check that done() does not touch it afterwards. Waiter and finishers
    // take every combination of fiber and thread.
    const int rounds = weft_test::sanitized ? 400 : 2000;
    for (int r = 0; r < rounds; ++r) {
        const int finishers = 1 + r % 3;
        auto wg = std::make_unique<weft::wait_group>();
        weft::wait_group* raw = wg.get();
        raw->add(finishers);
        std::vector<weft::join_handle<void>> fs;
        std::vector<std::thread> ts;
        for (int i = 0; i < finishers; ++i) {
            if ((r + i) % 2 == 0) fs.push_back(rt.spawn([raw] { raw->done(); }));
            else ts.emplace_back([raw] { raw->done(); });
        }
        if (r % 2 == 0) {
            rt.block_on([&] {
                wg->wait();
                wg.reset();
            });
        } else {
            wg->wait();
            wg.reset();
        }
        for (auto& h : fs) h.join();
        for (auto& t : ts) t.join();
    }
}

TEST_P(RuntimeTest, WaitGroupOnTheWaitersStackDestroyedAtReturn) {
    // Go's usual shape: the wait_group lives on the waiting fiber's stack,
    // which is gone (the fiber finished) right after wait() returns.
    const int rounds = weft_test::sanitized ? 200 : 2000;
    rt.block_on([&] {
        for (int r = 0; r < rounds; ++r) {
            weft::spawn([] {
                weft::wait_group wg;
                wg.add(2);
                weft::spawn([&wg] { wg.done(); }).detach();
                weft::spawn([&wg] { wg.done(); }).detach();
                wg.wait();
            }).join();
        }
    });
}

TEST_P(RuntimeTest, WaitGroupParkedWaitReturnsEvenIfTheCounterRisesAgain) {
    // The counter touches zero while a waiter is parked and is raised again
    // at once: the parked wait still returns (wait_group.hpp W2).
    weft::wait_group wg;
    wg.add(1);
    std::atomic<bool> returned{false};
    auto h = rt.spawn([&] {
        wg.wait();
        returned.store(true);
    });
    ASSERT_TRUE(eventually([&] { return rt.stats().fibers_parked >= 1; })) << rt.dump_json();
    wg.done();
    wg.add(1);
    EXPECT_TRUE(eventually([&] { return returned.load(); })) << "the wait missed the moment the counter was zero";
    h.join();
    EXPECT_FALSE(wg.wait_for(1ms));
    wg.done();
    wg.wait();
}

TEST_P(RuntimeTest, WaitGroupTimedWaitTimesOutNotBeforeTheDeadline) {
    auto check = [] {
        weft::wait_group wg;
        wg.add(1);
        auto t0 = clk::now();
        EXPECT_FALSE(wg.wait_for(50ms));
        EXPECT_GE(clk::now() - t0, 50ms) << "wait_for returned before its deadline";
        const auto until = clk::now() + 30ms;
        EXPECT_FALSE(wg.wait_until(until));
        EXPECT_GE(clk::now(), until) << "wait_until returned before its deadline";
        EXPECT_FALSE(wg.wait_until(std::chrono::system_clock::now() + 10ms));
        EXPECT_FALSE(wg.wait_for(0ms));
        EXPECT_FALSE(wg.wait_for(-1s));
        wg.done();
        EXPECT_TRUE(wg.wait_for(-1s)) << "a zero counter is reported even past the deadline";
        EXPECT_TRUE(wg.wait_until(clk::time_point::min()));
    };
    rt.block_on(check);
    check();
}

TEST_P(RuntimeTest, WaitGroupTimedWaitSucceedsWhenDoneInTime) {
    weft::wait_group wg;
    wg.add(1);
    std::atomic<int> got{0};
    auto h = rt.spawn([&] {
        if (wg.wait_for(20s)) got.fetch_add(1);  // generous: only a lost wake-up times out
    });
    std::thread t([&] {
        if (wg.wait_until(clk::now() + 20s)) got.fetch_add(1);
    });
    std::this_thread::sleep_for(20ms);
    wg.done();
    h.join();
    t.join();
    EXPECT_EQ(got.load(), 2);
}

TEST_P(RuntimeTest, WaitGroupWaitIsCancelledAtShutdown) {
    weft::runtime other(weft::runtime_options{.workers = GetParam()});
    constexpr int waiters = 6;
    weft::wait_group wg;
    wg.add(1);
    std::atomic<int> cancelled{0};
    std::vector<weft::join_handle<void>> hs;
    for (int i = 0; i < waiters; ++i) {
        hs.push_back(other.spawn([&, i] {
            try {
                if (i % 2 == 0) wg.wait();
                else (void)wg.wait_for(1h);
                ADD_FAILURE() << "wait returned with the counter at 1";
            } catch (const weft::operation_cancelled&) {
                cancelled.fetch_add(1);
            }
        }));
    }
    std::atomic<bool> thread_out{false};
    std::thread plain([&] {
        wg.wait();
        thread_out.store(true);
    });
    ASSERT_TRUE(eventually([&] { return other.stats().fibers_parked >= waiters; })) << other.dump_json();
    shutdown_promptly(other);
    EXPECT_EQ(cancelled.load(), waiters);
    for (auto& h : hs) EXPECT_NO_THROW(h.join());
    EXPECT_FALSE(thread_out.load()) << "a plain thread is never cancelled";
    wg.done();
    EXPECT_TRUE(eventually([&] { return thread_out.load(); }));
    plain.join();
}
