// weft::counting_semaphore and binary_semaphore: bounding concurrency among
// fibers, plain threads and both (never more than N inside, measured with an
// atomic maximum); try_acquire and the counts; release(n) waking n waiters;
// misuse that throws std::logic_error (beyond max(), negative); timed
// acquire that times out (never before the deadline) or succeeds; fiber <->
// thread ping-pong; destroying the semaphore right after acquire (ASan and
// TSan check the memory); cancellation of waiters at the shutdown of a
// separate runtime. Public API only (weft_dep).
//
// Timing: lower bounds only ("did not return before the deadline"); upper
// bounds are `patience` (5 s) or more and catch hangs, not slowness.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>
#include <weft/semaphore.hpp>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"
#include "sync_fixture.hpp"

// RuntimeTest is instantiated over 1, 2 and 4 workers once for this
// executable, in runtime_test.cpp.

using namespace std::chrono_literals;
using weft_test::all_shapes;
using weft_test::eventually;
using weft_test::name_of;
using weft_test::run_on;
using weft_test::scaled;
using weft_test::shape;
using weft_test::shutdown_promptly;
using clk = std::chrono::steady_clock;

namespace {

/// How many callers are inside a section at once, and the most ever seen.
struct occupancy {
    std::atomic<int> inside{0};
    std::atomic<int> peak{0};

    void enter() {
        const int now = inside.fetch_add(1) + 1;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
    }
    void leave() { inside.fetch_sub(1); }
};

}  // namespace

static_assert(weft::binary_semaphore::max() == 1);
static_assert(weft::counting_semaphore<7>::max() == 7);
static_assert(weft::counting_semaphore<>::max() >= 1'000'000'000);
static_assert(!std::is_copy_constructible_v<weft::binary_semaphore>);
static_assert(!std::is_move_constructible_v<weft::counting_semaphore<>>);

// A namespace-scope semaphore needs no dynamic initialisation (constexpr constructor, as std's).
constinit weft::counting_semaphore<4> global_semaphore{2};

// --- counting -----------------------------------------------------------------

TEST(Semaphore, TryAcquireTakesUnitsUntilNoneIsLeft) {
    weft::counting_semaphore<> s(2);
    EXPECT_TRUE(s.try_acquire());
    EXPECT_TRUE(s.try_acquire());
    EXPECT_FALSE(s.try_acquire());
    s.release(3);
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(s.try_acquire()) << i;
    EXPECT_FALSE(s.try_acquire());
    s.release(0);  // allowed: a no-op
    EXPECT_FALSE(s.try_acquire());

    EXPECT_TRUE(global_semaphore.try_acquire());
    global_semaphore.release();
}

TEST(Semaphore, ReleaseBeyondMaxThrowsLogicErrorAndChangesNothing) {
    weft::binary_semaphore b(1);
    EXPECT_THROW(b.release(), std::logic_error);
    EXPECT_TRUE(b.try_acquire());
    EXPECT_FALSE(b.try_acquire()) << "the failed release added a unit";
    b.release();
    EXPECT_THROW(b.release(2), std::logic_error);
    EXPECT_TRUE(b.try_acquire());
    EXPECT_FALSE(b.try_acquire());

    weft::counting_semaphore<5> s(3);
    EXPECT_THROW(s.release(3), std::logic_error);
    EXPECT_THROW(s.release(-1), std::logic_error);
    s.release(2);  // exactly max()
    int taken = 0;
    while (s.try_acquire()) ++taken;
    EXPECT_EQ(taken, 5);

    EXPECT_THROW(weft::counting_semaphore<5>(6), std::logic_error);
    EXPECT_THROW(weft::counting_semaphore<5>(-1), std::logic_error);
    EXPECT_THROW(weft::binary_semaphore(2), std::logic_error);
}

TEST_P(RuntimeTest, SemaphoreReleaseBeyondMaxWithWaitersThrowsAndLosesNoWaiter) {
    // The slow path (a waiter parked) checks max() too, and a waiter woken for
    // a release that then threw waits on.
    weft::binary_semaphore b(0);
    std::atomic<bool> got{false};
    auto h = rt.spawn([&] {
        b.acquire();
        got.store(true);
    });
    ASSERT_TRUE(eventually([&] { return rt.stats().fibers_parked >= 1; })) << rt.dump_json();
    b.release();  // wakes the waiter
    ASSERT_TRUE(eventually([&] { return got.load(); }));
    h.join();
    b.release();
    EXPECT_THROW(b.release(), std::logic_error);
    EXPECT_TRUE(b.try_acquire());
    EXPECT_FALSE(b.try_acquire());
}

// --- bounding concurrency ---------------------------------------------------------

TEST_P(RuntimeTest, SemaphoreBoundsConcurrency) {
    constexpr int limit = 3;
    const int callers = 12;
    for (shape s : all_shapes) {
        SCOPED_TRACE(name_of(s));
        // Fewer rounds with plain threads: each hand-over to a thread is a futex wake.
        const int rounds = s == shape::fibers ? 400 : 100;
        weft::counting_semaphore<limit> sem(limit);
        occupancy occ;
        std::atomic<int> passes{0};
        run_on(rt, s, callers, [&](int i) {
            for (int r = 0; r < rounds; ++r) {
                sem.acquire();
                occ.enter();
                // Stay inside across a suspension now and then, so that others park.
                if ((i + r) % 3 == 0) weft::this_fiber::yield();
                occ.leave();
                passes.fetch_add(1);
                sem.release();
            }
        });
        EXPECT_LE(occ.peak.load(), limit);
        EXPECT_GE(occ.peak.load(), 1);
        EXPECT_EQ(passes.load(), callers * rounds);
        int left = 0;
        while (sem.try_acquire()) ++left;
        EXPECT_EQ(left, limit) << "units were lost or made up";
    }
}

TEST_P(RuntimeTest, SemaphoreBinaryIsMutualExclusion) {
    // A binary semaphore as a lock, released by whoever took it; the plain
    // (non-atomic) counter would lose increments, and TSan would report the
    // race, if two callers were ever inside together.
    const int callers = 8;
    for (shape s : all_shapes) {
        SCOPED_TRACE(name_of(s));
        const int rounds = s == shape::fibers ? 500 : 100;  // as in SemaphoreBoundsConcurrency
        weft::binary_semaphore sem(1);
        long counter = 0;
        occupancy occ;
        run_on(rt, s, callers, [&](int) {
            for (int r = 0; r < rounds; ++r) {
                sem.acquire();
                occ.enter();
                const long c = counter;
                if (r % 16 == 0) weft::this_fiber::yield();
                counter = c + 1;
                occ.leave();
                sem.release();
            }
        });
        EXPECT_EQ(counter, static_cast<long>(callers) * rounds);
        EXPECT_EQ(occ.peak.load(), 1);
    }
}

// --- wake-ups -------------------------------------------------------------------------

TEST_P(RuntimeTest, SemaphoreReleaseNLetsExactlyNWaitersThrough) {
    constexpr int waiters = 6;
    for (shape s : all_shapes) {
        SCOPED_TRACE(name_of(s));
        weft::counting_semaphore<> sem(0);
        std::atomic<int> through{0};
        std::thread driver([&] {
            run_on(rt, s, waiters, [&](int) {
                sem.acquire();
                through.fetch_add(1);
            });
        });
        // Not knowing whether each waiter has parked yet is fine: a waiter
        // still on its way finds the unit, one already parked is woken.
        std::this_thread::sleep_for(20ms);
        sem.release(4);
        EXPECT_TRUE(eventually([&] { return through.load() == 4; })) << through.load();
        std::this_thread::sleep_for(20ms);
        EXPECT_EQ(through.load(), 4) << "more waiters passed than units were released";
        sem.release(2);
        EXPECT_TRUE(eventually([&] { return through.load() == waiters; })) << through.load();
        driver.join();
        EXPECT_FALSE(sem.try_acquire());
    }
}

TEST_P(RuntimeTest, SemaphorePingPongBetweenFibersAndThreads) {
    // Two binary semaphores passed back and forth: every hand-over is a
    // wake-up across fiber/thread kinds (and workers).
    for (shape s : all_shapes) {
        SCOPED_TRACE(name_of(s));
        const int rounds = s == shape::fibers ? 2000 : 500;  // as in SemaphoreBoundsConcurrency
        weft::binary_semaphore ping(0), pong(0);
        int ball = 0;  // plain: each hand-over must publish it
        run_on(rt, s, 2, [&](int i) {
            for (int r = 0; r < rounds; ++r) {
                if (i == 0) {
                    ++ball;
                    ping.release();
                    pong.acquire();
                } else {
                    ping.acquire();
                    ++ball;
                    pong.release();
                }
            }
        });
        EXPECT_EQ(ball, 2 * rounds);
    }
}

TEST_P(RuntimeTest, SemaphoreDestroyedRightAfterAcquire) {
    // The "signal completion" pattern: the waiter frees the semaphore as soon
    // as acquire() returns, while the releaser may still be inside release()
    // (semaphore.hpp N3). ASan and TSan check that release() does not touch it.
    const int rounds = weft_test::sanitized ? 300 : 1000;
    for (int r = 0; r < rounds; ++r) {
        // A fiber waits, a plain thread releases.
        auto sem = std::make_unique<weft::binary_semaphore>(0);
        weft::binary_semaphore* raw = sem.get();
        std::thread releaser([raw] { raw->release(); });
        rt.block_on([&] {
            sem->acquire();
            sem.reset();
        });
        releaser.join();

        // A plain thread waits, a fiber releases.
        sem = std::make_unique<weft::binary_semaphore>(0);
        raw = sem.get();
        auto h = rt.spawn([raw] { raw->release(); });
        sem->acquire();
        sem.reset();
        h.join();
    }
}

// --- timed acquire --------------------------------------------------------------------

TEST_P(RuntimeTest, SemaphoreTimedAcquireTimesOutNotBeforeTheDeadline) {
    auto check = [] {
        weft::counting_semaphore<> sem(0);
        auto t0 = clk::now();
        EXPECT_FALSE(sem.try_acquire_for(50ms));
        EXPECT_GE(clk::now() - t0, 50ms) << "try_acquire_for returned before its deadline";
        t0 = clk::now();
        const auto until = t0 + 30ms;
        EXPECT_FALSE(sem.try_acquire_until(until));
        EXPECT_GE(clk::now(), until) << "try_acquire_until returned before its deadline";
        // Another clock: converted from now; only "it times out" is checked.
        EXPECT_FALSE(sem.try_acquire_until(std::chrono::system_clock::now() + 10ms));
        // Zero, negative and past deadlines try once and do not wait.
        EXPECT_FALSE(sem.try_acquire_for(0ms));
        EXPECT_FALSE(sem.try_acquire_for(-5ms));
        EXPECT_FALSE(sem.try_acquire_until(clk::now() - 1s));
        sem.release();
        EXPECT_TRUE(sem.try_acquire_for(-5ms)) << "an available unit is taken even past the deadline";
        sem.release();
        EXPECT_TRUE(sem.try_acquire_until(clk::time_point::min()));
        EXPECT_FALSE(sem.try_acquire());
    };
    rt.block_on(check);  // a fiber
    check();             // the test's plain thread
}

TEST_P(RuntimeTest, SemaphoreTimedAcquireSucceedsWhenReleasedInTime) {
    for (shape s : all_shapes) {
        SCOPED_TRACE(name_of(s));
        weft::counting_semaphore<> sem(0);
        std::atomic<int> got{0};
        std::thread driver([&] {
            run_on(rt, s, 4, [&](int) {
                // Generous: only a lost wake-up makes this time out.
                if (sem.try_acquire_for(20s)) got.fetch_add(1);
            });
        });
        std::this_thread::sleep_for(20ms);
        sem.release(4);
        driver.join();
        EXPECT_EQ(got.load(), 4);
    }
}

TEST_P(RuntimeTest, SemaphoreTimedOutWaiterLeavesNoWakeUpBehind) {
    // A waiter that timed out leaves its "may be parked" flag behind; the
    // next release must still reach a waiter parked later, and the unit must
    // not go to the one that left.
    weft::counting_semaphore<> sem(0);
    rt.block_on([&] { EXPECT_FALSE(sem.try_acquire_for(5ms)); });
    std::atomic<bool> got{false};
    auto h = rt.spawn([&] {
        sem.acquire();
        got.store(true);
    });
    ASSERT_TRUE(eventually([&] { return rt.stats().fibers_parked >= 1; })) << rt.dump_json();
    sem.release();
    EXPECT_TRUE(eventually([&] { return got.load(); }));
    h.join();
    EXPECT_FALSE(sem.try_acquire());
}

// --- cancellation ---------------------------------------------------------------------

TEST_P(RuntimeTest, SemaphoreAcquireIsCancelledAtShutdown) {
    // A separate runtime whose fibers wait forever; its shutdown cancels them.
    // A plain thread waiting on the same semaphore is not cancelled, and no
    // unit is lost to the cancelled fibers.
    weft::runtime other(weft::runtime_options{.workers = GetParam()});
    constexpr int waiters = 8;
    weft::counting_semaphore<> sem(0);
    weft::counting_semaphore<> spare(waiters);
    std::atomic<int> cancelled{0};
    std::atomic<int> spare_taken{0};
    std::atomic<int> cancelled_again{0};
    std::vector<weft::join_handle<void>> hs;
    for (int i = 0; i < waiters; ++i) {
        hs.push_back(other.spawn([&, i] {
            try {
                if (i % 2 == 0) sem.acquire();
                else (void)sem.try_acquire_for(1h);
                ADD_FAILURE() << "acquire returned without a unit";
            } catch (const weft::operation_cancelled&) {
                cancelled.fetch_add(1);
                // A unit that is there is still taken without throwing ...
                spare.acquire();
                spare_taken.fetch_add(1);
                // ... but waiting again throws again (cancellation is sticky).
                try {
                    sem.acquire();
                } catch (const weft::operation_cancelled&) {
                    cancelled_again.fetch_add(1);
                }
            }
        }));
    }
    std::atomic<bool> thread_got{false};
    std::thread plain([&] {
        sem.acquire();
        thread_got.store(true);
    });
    ASSERT_TRUE(eventually([&] { return other.stats().fibers_parked >= waiters; })) << other.dump_json();

    shutdown_promptly(other);
    EXPECT_EQ(cancelled.load(), waiters);
    EXPECT_EQ(cancelled_again.load(), waiters);
    EXPECT_EQ(spare_taken.load(), waiters);
    EXPECT_FALSE(spare.try_acquire());
    for (auto& h : hs) EXPECT_NO_THROW(h.join());
    EXPECT_FALSE(thread_got.load());
    sem.release();
    EXPECT_TRUE(eventually([&] { return thread_got.load(); })) << "the plain thread's wake-up was lost";
    plain.join();
    EXPECT_FALSE(sem.try_acquire());
}
