// weft::latch and weft::barrier. Latch: many fibers, threads and both count
// down and wait (everything written before count_down is seen after wait);
// it does not open early; counting below zero and other misuse throw
// std::logic_error; destroying it right after wait (ASan/TSan check the
// memory); cancellation of waiters at the shutdown of a separate runtime.
// Barrier: many phases, the completion function running exactly once per
// phase, on a participant, after every arrival and before anyone of the next
// phase proceeds; arrive/wait with tokens and arrive(n); arrive_and_drop;
// misuse; cancellation. Public API only (weft_dep).
//
// Timing: lower bounds only; upper bounds are `patience` (5 s) or more and
// catch hangs, not slowness.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>
#include <weft/barrier.hpp>
#include <weft/latch.hpp>
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


static_assert(weft::latch::max() > 1'000'000'000);
static_assert(!std::is_copy_constructible_v<weft::latch>);
static_assert(weft::barrier<>::max() >= 1'000'000);
static_assert(!std::is_copy_constructible_v<weft::barrier<>>);
static_assert(std::is_move_constructible_v<weft::barrier<>::arrival_token>);

constinit weft::latch global_latch{0};

// --- latch ----------------------------------------------------------------------------

TEST_P(RuntimeTest, LatchReleasesManyWaitersAtOnce) {
    // Participants write their slot, then arrive_and_wait; once out, each
    // reads every slot (plain ints: TSan reports it if count_down does not
    // happen before wait returns). Extra waiters only wait.
    const int participants = static_cast<int>(std::max<std::size_t>(scaled(200), 16));
    const int watchers = 8;
    for (shape s : all_shapes) {
        SCOPED_TRACE(name_of(s));
        weft::latch l(participants);
        std::vector<int> slots(participants, 0);
        std::atomic<int> out{0};
        std::atomic<int> bad{0};
        run_on(rt, s, participants + watchers, [&](int i) {
            if (i >= watchers) {
                slots[i - watchers] = i;
                if (i % 2 == 0) {
                    l.arrive_and_wait();
                } else {
                    l.count_down();
                    l.wait();
                }
            } else {
                l.wait();
            }
            EXPECT_TRUE(l.try_wait());
            for (int j = 0; j < participants; ++j)
                if (slots[j] != j + watchers) bad.fetch_add(1);
            out.fetch_add(1);
        });
        EXPECT_EQ(out.load(), participants + watchers);
        EXPECT_EQ(bad.load(), 0) << "a waiter passed before every count_down";
    }
}

TEST_P(RuntimeTest, LatchDoesNotOpenBeforeZero) {
    for (shape s : all_shapes) {
        SCOPED_TRACE(name_of(s));
        weft::latch l(3);
        l.count_down(2);
        EXPECT_FALSE(l.try_wait());
        std::atomic<int> passed{0};
        std::thread driver([&] {
            run_on(rt, s, 4, [&](int) {
                l.wait();
                passed.fetch_add(1);
            });
        });
        std::this_thread::sleep_for(30ms);
        EXPECT_EQ(passed.load(), 0) << "wait() returned while the count was 1";
        l.count_down(0);  // allowed: a no-op
        EXPECT_FALSE(l.try_wait());
        l.count_down();
        EXPECT_TRUE(eventually([&] { return passed.load() == 4; })) << passed.load();
        driver.join();
        EXPECT_TRUE(l.try_wait());
        l.wait();  // open: returns at once
    }
}

TEST(Latch, MisuseThrowsLogicErrorAndChangesNothing) {
    weft::latch l(2);
    EXPECT_THROW(l.count_down(3), std::logic_error);
    EXPECT_THROW(l.count_down(-1), std::logic_error);
    EXPECT_FALSE(l.try_wait());
    l.count_down(2);
    EXPECT_TRUE(l.try_wait());
    EXPECT_THROW(l.count_down(), std::logic_error) << "counting below zero";
    EXPECT_THROW(l.arrive_and_wait(), std::logic_error);
    EXPECT_TRUE(l.try_wait());
    EXPECT_THROW(weft::latch(-1), std::logic_error);
    EXPECT_TRUE(global_latch.try_wait());
    weft::latch zero(0);
    zero.wait();
}

TEST_P(RuntimeTest, LatchDestroyedRightAfterWait) {
    // The waiter frees the latch as soon as wait() returns, while the last
    // count_down may still be returning (latch.hpp L3).
    const int rounds = weft_test::sanitized ? 300 : 1000;
    for (int r = 0; r < rounds; ++r) {
        auto l = std::make_unique<weft::latch>(2);
        weft::latch* raw = l.get();
        std::thread a([raw] { raw->count_down(); });
        auto b = rt.spawn([raw] { raw->count_down(); });
        if (r % 2 == 0) {
            rt.block_on([&] {
                l->wait();
                l.reset();
            });
        } else {
            l->wait();
            l.reset();
        }
        a.join();
        b.join();
    }
}

TEST_P(RuntimeTest, LatchWaitIsCancelledAtShutdown) {
    weft::runtime other(weft::runtime_options{.workers = GetParam()});
    constexpr int waiters = 6;
    weft::latch l(1);
    std::atomic<int> cancelled{0};
    std::vector<weft::join_handle<void>> hs;
    for (int i = 0; i < waiters; ++i) {
        hs.push_back(other.spawn([&] {
            try {
                l.wait();
                ADD_FAILURE() << "wait() returned on a closed latch";
            } catch (const weft::operation_cancelled&) {
                cancelled.fetch_add(1);
            }
        }));
    }
    std::atomic<bool> thread_out{false};
    std::thread plain([&] {
        l.wait();
        thread_out.store(true);
    });
    ASSERT_TRUE(eventually([&] { return other.stats().fibers_parked >= waiters; })) << other.dump_json();
    shutdown_promptly(other);
    EXPECT_EQ(cancelled.load(), waiters);
    for (auto& h : hs) EXPECT_NO_THROW(h.join());
    EXPECT_FALSE(thread_out.load()) << "a plain thread is never cancelled";
    l.count_down();
    EXPECT_TRUE(eventually([&] { return thread_out.load(); }));
    plain.join();
}

// --- barrier ----------------------------------------------------------------------------

namespace {

/// What a barrier test's completion function saw. Plain fields: the barrier
/// orders every access (TSan checks).
struct phase_log {
    int participants = 0;
    int completions = 0;
    int wrong_arrivals = 0;
    int wrong_data = 0;
    int not_a_participant = 0;
    std::vector<int> data;              // participant i writes data[i] = phase before arriving
    std::vector<weft::fiber_id> ids;    // participant i's id, written before its first arrival
    std::atomic<int> arrivals{0};       // incremented before each arrival
};

/// The completion function: checks that every arrival of the phase is in and
/// that it runs on one of the participants.
struct check_phase {
    phase_log* log;
    void operator()() noexcept {
        phase_log& l = *log;
        const int phase = l.completions;
        if (l.arrivals.load() != l.participants * (phase + 1)) ++l.wrong_arrivals;
        for (int d : l.data)
            if (d != phase) ++l.wrong_data;
        if (std::find(l.ids.begin(), l.ids.end(), weft::this_fiber::get_id()) == l.ids.end()) ++l.not_a_participant;
        ++l.completions;
    }
};

}  // namespace

TEST_P(RuntimeTest, BarrierCompletionRunsOncePerPhaseBeforeTheNextPhase) {
    const int participants = 6;
    for (shape s : all_shapes) {
        SCOPED_TRACE(name_of(s));
        // Fewer phases with plain threads: each phase wakes them through futexes.
        const int phases = s == shape::fibers ? 300 : 150;
        phase_log log;
        log.participants = participants;
        log.data.assign(participants, 0);
        log.ids.assign(participants, weft::fiber_id{});
        weft::barrier<check_phase> b(participants, check_phase{&log});
        std::atomic<int> early{0};
        std::atomic<int> late{0};
        run_on(rt, s, participants, [&](int i) {
            log.ids[i] = weft::this_fiber::get_id();
            for (int p = 0; p < phases; ++p) {
                log.data[i] = p;
                log.arrivals.fetch_add(1);
                if ((i + p) % 3 == 0) {
                    b.arrive_and_wait();
                } else {
                    auto token = b.arrive();
                    if (p % 2 == 0) weft::this_fiber::yield();  // between arrive and wait
                    b.wait(std::move(token));
                }
                // Phase p's completion ran, phase p+1's cannot have (we have not arrived).
                const int done = log.completions;
                if (done < p + 1) early.fetch_add(1);
                if (done > p + 1) late.fetch_add(1);
            }
        });
        EXPECT_EQ(log.completions, phases);
        EXPECT_EQ(early.load(), 0) << "a participant left a phase before its completion ran";
        EXPECT_EQ(late.load(), 0) << "a completion ran before every arrival of its phase";
        EXPECT_EQ(log.wrong_arrivals, 0);
        EXPECT_EQ(log.wrong_data, 0) << "the completion did not see every participant's writes";
        EXPECT_EQ(log.not_a_participant, 0);
    }
}

TEST_P(RuntimeTest, BarrierArriveAndDropShrinksTheNextPhases) {
    // Participant i drops out at phase i (0 <= i < droppers); the others go
    // on. If a drop were not counted, the next phase would never complete.
    const int participants = 6;
    const int droppers = 3;
    const int phases = 12;
    for (shape s : all_shapes) {
        SCOPED_TRACE(name_of(s));
        std::atomic<int> completions{0};
        auto count = [&]() noexcept { completions.fetch_add(1); };
        weft::barrier<decltype(count)> b(participants, count);
        std::atomic<int> bad{0};
        std::thread driver([&] {
            run_on(rt, s, participants, [&](int i) {
                for (int p = 0; p < phases; ++p) {
                    if (i < droppers && p == i) {
                        b.arrive_and_drop();
                        return;
                    }
                    b.arrive_and_wait();
                    if (completions.load() < p + 1) bad.fetch_add(1);
                }
            });
        });
        const bool finished = eventually([&] { return completions.load() == phases; }, 20s);
        EXPECT_TRUE(finished) << "stuck after " << completions.load() << " phases";
        if (!finished) std::abort();  // the participants never return: cannot clean up
        driver.join();
        EXPECT_EQ(bad.load(), 0);
        EXPECT_EQ(completions.load(), phases);
    }
}

TEST(Barrier, ArriveCountsNAndOldTokensReturnAtOnce) {
    int completions = 0;
    auto count = [&]() noexcept { ++completions; };
    weft::barrier<decltype(count)> b(3, count);
    auto t0 = b.arrive(2);
    EXPECT_EQ(completions, 0);
    auto t1 = b.arrive();  // completes phase 0 on this thread
    EXPECT_EQ(completions, 1);
    b.wait(std::move(t0));
    b.wait(std::move(t1));
    auto t2 = b.arrive(3);  // phase 1 in one call
    EXPECT_EQ(completions, 2);
    b.wait(std::move(t2));
    b.arrive_and_drop();  // phase 2: two participants still expected, now two from phase 3 on
    auto t3 = b.arrive(2);
    EXPECT_EQ(completions, 3);
    b.wait(std::move(t3));
    auto t4 = b.arrive(2);  // phase 3 needs exactly two
    EXPECT_EQ(completions, 4);
    b.wait(std::move(t4));
}

TEST(Barrier, MisuseThrowsLogicErrorAndChangesNothing) {
    weft::barrier<> b(2);
    EXPECT_THROW((void)b.arrive(3), std::logic_error);
    EXPECT_THROW((void)b.arrive(0), std::logic_error);
    EXPECT_THROW((void)b.arrive(-1), std::logic_error);
    auto t = b.arrive(2);  // the failed calls counted nothing: this completes the phase
    b.wait(std::move(t));
    EXPECT_THROW(weft::barrier<>(-1), std::logic_error);
    EXPECT_THROW(weft::barrier<>(weft::barrier<>::max() + 1), std::logic_error);

    weft::barrier<> one(1);
    one.arrive_and_drop();  // completes phase 0; no participant left
    EXPECT_THROW(one.arrive_and_drop(), std::logic_error);
    EXPECT_THROW((void)one.arrive(), std::logic_error);

    weft::barrier<> two(2);
    (void)two.arrive(2);  // phase 0 done; phase 1 expects 2
    auto t2 = two.arrive();
    two.arrive_and_drop();  // completes phase 1 with one fewer for the next phases
    two.wait(std::move(t2));
    EXPECT_THROW((void)two.arrive(2), std::logic_error) << "phase 2 expects one arrival";
    auto t3 = two.arrive();
    two.wait(std::move(t3));
}

// A drop while the completion step runs (count 0: a misuse) throws before it
// touches the participant count, which the completer reads: the next phase still
// expects everyone. (The old order lowered the count, let arrive() throw, then
// restored it: a completer reading in between opened the next phase one short,
// 51 of 200 times in the reviewer's timing-dependent reproducer; this test pins
// the order of checks, it cannot force that window.)
TEST(Barrier, ArriveAndDropDuringTheCompletionStepThrowsAndChangesNothing) {
    std::atomic<int> stage{0};
    std::atomic<int> calls{0};
    auto done = [&]() noexcept {
        if (calls.fetch_add(1) != 0) return;
        stage.store(1);
        while (stage.load() != 2) std::this_thread::yield();
    };
    weft::barrier<decltype(done)> b(2, done);
    (void)b.arrive();
    std::thread completer([&] { (void)b.arrive(); });  // completes phase 0, runs `done`
    while (stage.load() != 1) std::this_thread::yield();
    EXPECT_THROW(b.arrive_and_drop(), std::logic_error);
    stage.store(2);
    completer.join();
    EXPECT_THROW((void)b.arrive(3), std::logic_error);  // phase 1 expects 2, not more
    (void)b.arrive(2);                                   // and not fewer: this completes it
    EXPECT_EQ(calls.load(), 2);
}

TEST_P(RuntimeTest, BarrierWaitIsCancelledAtShutdown) {
    weft::runtime other(weft::runtime_options{.workers = GetParam()});
    constexpr int waiters = 4;
    weft::barrier<> b(waiters + 1);  // one participant never arrives
    std::atomic<int> cancelled{0};
    std::vector<weft::join_handle<void>> hs;
    for (int i = 0; i < waiters; ++i) {
        hs.push_back(other.spawn([&] {
            try {
                b.arrive_and_wait();
                ADD_FAILURE() << "arrive_and_wait() returned before every arrival";
            } catch (const weft::operation_cancelled&) {
                cancelled.fetch_add(1);
            }
        }));
    }
    ASSERT_TRUE(eventually([&] { return other.stats().fibers_parked >= waiters; })) << other.dump_json();
    shutdown_promptly(other);
    EXPECT_EQ(cancelled.load(), waiters);
    for (auto& h : hs) EXPECT_NO_THROW(h.join());
    // The cancelled fibers' arrivals still count: one more completes the phase.
    auto t = b.arrive();
    b.wait(std::move(t));
}
