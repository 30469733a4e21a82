// weft::condition_variable and weft::condition_variable_any: producers and
// consumers (fibers and threads mixed) lose no wake-up; notify_one wakes
// exactly one waiter and notify_all every one; timed waits on the steady and
// system clocks (never early, cv_status, predicate forms returning pred() at
// the deadline); a notify racing a deadline wakes exactly one waiter, once;
// notifications across fibers and plain threads; waiting without owning the
// lock throws; cancellation by runtime::shutdown() leaves the lock held;
// condition_variable_any with weft::mutex, std::unique_lock<weft::timed_mutex>
// and std::stop_token. Public API only (weft_dep).
//
// The exact wake counts below rely on weft's waits not waking spuriously
// (the header allows it, "rare"; the implementation wakes a waiter only by a
// notify, its deadline or cancellation).
//
// Timing: lower bounds only ("not before the deadline"); upper bounds are
// `patience` (5 s) or more and catch lost wake-ups, not slowness.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <iostream>
#include <mutex>
#include <random>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <weft/condition_variable.hpp>
#include <weft/mutex.hpp>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"
#include "sync_fixture.hpp"

// RuntimeTest is instantiated over 1, 2 and 4 workers once for this
// executable, in runtime_test.cpp.

using namespace std::chrono_literals;
using weft_test::count_parked;
using weft_test::eventually;
using weft_test::expect_system_error;
using weft_test::scaled;
using weft_test::try_lock_from_thread;
using weft_test::yield_until;
using clk = std::chrono::steady_clock;

namespace {

/// Reads `v` under `m` (for polling state that waiters change under it).
template <class M, class T>
T read_locked(M& m, const T& v) {
    std::lock_guard g(m);
    return v;
}

/// A bounded FIFO on one weft::mutex and two condition variables. Pushers
/// notify after unlocking, poppers while still holding the lock: both styles.
class bounded_queue {
public:
    explicit bounded_queue(std::size_t capacity) : capacity_(capacity) {}

    void push(std::uint64_t v) {
        std::unique_lock lk(m_);
        not_full_.wait(lk, [&] { return items_.size() < capacity_; });
        items_.push_back(v);
        lk.unlock();
        not_empty_.notify_one();
    }
    std::uint64_t pop() {
        std::unique_lock lk(m_);
        not_empty_.wait(lk, [&] { return !items_.empty(); });
        const std::uint64_t v = items_.front();
        items_.pop_front();
        not_full_.notify_one();
        return v;
    }

private:
    weft::mutex m_;
    weft::condition_variable not_empty_;
    weft::condition_variable not_full_;
    std::deque<std::uint64_t> items_;  // guarded by m_
    std::size_t capacity_;
};

/// Order-independent checksum of a multiset of items.
struct checksum {
    std::uint64_t count = 0;
    std::uint64_t sum = 0;
    std::uint64_t squares = 0;
    void add(std::uint64_t v) {
        ++count;
        sum += v;
        squares += v * v;
    }
    void merge(const checksum& o) {
        count += o.count;
        sum += o.sum;
        squares += o.squares;
    }
    bool operator==(const checksum&) const = default;
};

}  // namespace

// --- producers and consumers --------------------------------------------------

TEST_P(RuntimeTest, ProducersAndConsumersLoseNoWakeUp) {
    constexpr int producer_fibers = 2, producer_threads = 2;
    constexpr int consumer_fibers = 3, consumer_threads = 2;
    constexpr int producers = producer_fibers + producer_threads;
    constexpr int consumers = consumer_fibers + consumer_threads;
    const std::uint64_t per_producer = std::max<std::size_t>(scaled(1000), 200);
    bounded_queue q(3);  // small: producers and consumers both wait often

    checksum expected;
    for (int p = 0; p < producers; ++p)
        for (std::uint64_t i = 0; i < per_producer; ++i) expected.add(static_cast<std::uint64_t>(p) * 1'000'000 + i + 1);

    std::mutex results_mu;
    checksum got;
    std::atomic<int> consumers_done{0};
    auto produce = [&](int p) {
        for (std::uint64_t i = 0; i < per_producer; ++i) q.push(static_cast<std::uint64_t>(p) * 1'000'000 + i + 1);
    };
    auto consume = [&] {
        checksum mine;
        for (std::uint64_t v; (v = q.pop()) != 0;) mine.add(v);  // 0: no more items for this consumer
        std::lock_guard g(results_mu);
        got.merge(mine);
        consumers_done.fetch_add(1);
    };

    std::vector<std::thread> threads;
    std::vector<weft::join_handle<void>> fibers;
    for (int c = 0; c < consumer_fibers; ++c) fibers.push_back(rt.spawn(consume));
    for (int c = 0; c < consumer_threads; ++c) threads.emplace_back(consume);
    std::vector<weft::join_handle<void>> producer_fibers_h;
    for (int p = 0; p < producer_fibers; ++p) producer_fibers_h.push_back(rt.spawn(produce, p));
    std::vector<std::thread> producer_threads_h;
    for (int p = producer_fibers; p < producers; ++p) producer_threads_h.emplace_back(produce, p);
    for (auto& h : producer_fibers_h) h.join();
    for (auto& t : producer_threads_h) t.join();
    for (int c = 0; c < consumers; ++c) q.push(0);
    ASSERT_TRUE(eventually([&] { return consumers_done.load() == consumers; }, 60s))
        << "consumers stuck (a lost wake-up?): " << consumers_done.load() << " of " << consumers << " done\n"
        << rt.dump_json();
    for (auto& t : threads) t.join();
    for (auto& h : fibers) h.join();
    EXPECT_EQ(got.count, expected.count);
    EXPECT_TRUE(got == expected) << "items lost, duplicated or corrupted";
}

// --- notify_one / notify_all ----------------------------------------------------

// Fibers and threads wait (no predicate) after counting themselves under the
// mutex, so `ready == n` seen under it means all are linked. Each notify_one
// then wakes exactly one; the rest stay parked until notified again.
TEST_P(RuntimeTest, NotifyOneWakesExactlyOneWaiter) {
    constexpr int fiber_waiters = 3, thread_waiters = 2;
    constexpr int n = fiber_waiters + thread_waiters;
    weft::mutex m;
    weft::condition_variable cv;
    int ready = 0;          // guarded by m
    int fibers_woken = 0;   // guarded by m
    int threads_woken = 0;  // guarded by m
    auto wait_once = [&](int& woken) {
        std::unique_lock lk(m);
        ++ready;
        cv.wait(lk);
        ++woken;
    };
    std::vector<weft::join_handle<void>> fs;
    for (int i = 0; i < fiber_waiters; ++i) fs.push_back(rt.spawn([&] { wait_once(fibers_woken); }));
    std::vector<std::thread> ts;
    for (int i = 0; i < thread_waiters; ++i) ts.emplace_back([&] { wait_once(threads_woken); });
    ASSERT_TRUE(eventually([&] { return read_locked(m, ready) == n; }));

    auto woken = [&] {
        std::lock_guard g(m);
        return fibers_woken + threads_woken;
    };
    for (int expected = 1; expected <= 2; ++expected) {
        cv.notify_one();
        EXPECT_TRUE(eventually([&] { return woken() >= expected; })) << "notify_one woke nobody";
        std::this_thread::sleep_for(20ms);  // time for a wrong extra wake-up to show
        EXPECT_EQ(woken(), expected) << "notify_one woke more than one waiter";
        // The fibers not woken are still parked on the condition variable.
        EXPECT_TRUE(eventually([&] {
            return count_parked(rt, "condition_variable") ==
                   static_cast<std::size_t>(fiber_waiters - read_locked(m, fibers_woken));
        })) << rt.dump_json();
    }
    cv.notify_all();
    EXPECT_TRUE(eventually([&] { return woken() == n; })) << "notify_all left waiters behind";
    for (auto& t : ts) t.join();
    for (auto& h : fs) h.join();
}

TEST_P(RuntimeTest, NotifyAllWakesEveryWaiter) {
    const int fiber_waiters = static_cast<int>(std::max<std::size_t>(scaled(100), 8));
    constexpr int thread_waiters = 3;
    const int n = fiber_waiters + thread_waiters;
    weft::mutex m;
    weft::condition_variable cv;
    int ready = 0;  // guarded by m
    std::atomic<int> woken{0};
    auto wait_once = [&] {
        std::unique_lock lk(m);
        ++ready;
        cv.wait(lk);
        EXPECT_TRUE(lk.owns_lock());
        woken.fetch_add(1);
    };
    std::vector<weft::join_handle<void>> fs;
    for (int i = 0; i < fiber_waiters; ++i) fs.push_back(rt.spawn(wait_once));
    std::vector<std::thread> ts;
    for (int i = 0; i < thread_waiters; ++i) ts.emplace_back(wait_once);
    // The notifier is a fiber.
    rt.block_on([&] {
        EXPECT_TRUE(yield_until([&] { return read_locked(m, ready) == n; }));
        EXPECT_EQ(woken.load(), 0);
        cv.notify_all();
    });
    EXPECT_TRUE(eventually([&] { return woken.load() == n; })) << woken.load() << " of " << n << " woken";
    for (auto& t : ts) t.join();
    for (auto& h : fs) h.join();
}

// A notification is not remembered: with nobody waiting it does nothing, and
// a later waiter times out.
TEST_P(RuntimeTest, NotifyWithNobodyWaitingIsNotRemembered) {
    weft::mutex m;
    weft::condition_variable cv;
    cv.notify_one();
    cv.notify_all();
    rt.block_on([&] {
        cv.notify_one();
        std::unique_lock lk(m);
        EXPECT_EQ(cv.wait_for(lk, 5ms), std::cv_status::timeout);
    });
}

// --- timed waits ------------------------------------------------------------------

TEST_P(RuntimeTest, TimedWaitsTimeOutNotBeforeTheDeadline) {
    weft::mutex m;
    weft::condition_variable cv;
    auto check = [&] {
        std::unique_lock lk(m);
        auto t0 = clk::now();
        EXPECT_EQ(cv.wait_for(lk, 20ms), std::cv_status::timeout);
        EXPECT_GE(clk::now() - t0, 20ms) << "wait_for returned before its deadline";
        EXPECT_TRUE(lk.owns_lock());
        EXPECT_FALSE(try_lock_from_thread(m)) << "the mutex is not held after the timeout";

        t0 = clk::now();
        EXPECT_EQ(cv.wait_until(lk, t0 + 15ms), std::cv_status::timeout);
        EXPECT_GE(clk::now(), t0 + 15ms);

        const auto sys_until = std::chrono::system_clock::now() + 15ms;
        t0 = clk::now();
        EXPECT_EQ(cv.wait_until(lk, sys_until), std::cv_status::timeout);
        // 1 ms allows for the two clocks' rates (the system clock may be slewed).
        EXPECT_GE(std::chrono::system_clock::now(), sys_until - 1ms);
        EXPECT_GE(clk::now() - t0, 14ms);

        // Zero, negative and past deadlines time out without waiting for a notify.
        EXPECT_EQ(cv.wait_for(lk, 0ms), std::cv_status::timeout);
        EXPECT_EQ(cv.wait_for(lk, -1s), std::cv_status::timeout);
        EXPECT_EQ(cv.wait_until(lk, clk::now() - 1s), std::cv_status::timeout);
        EXPECT_TRUE(lk.owns_lock());
    };
    rt.block_on(check);
    std::thread(check).join();
    // And several fibers at once, on one condition variable and mutex.
    std::vector<weft::join_handle<void>> hs;
    for (int i = 0; i < 4; ++i) hs.push_back(rt.spawn(check));
    for (auto& h : hs) h.join();
}

TEST_P(RuntimeTest, TimedWaitWithAPredicateReturnsPredAtTheDeadline) {
    weft::mutex m;
    weft::condition_variable cv;
    auto check = [&] {
        std::unique_lock lk(m);
        // Never true: false, after the deadline.
        int calls = 0;
        auto t0 = clk::now();
        EXPECT_FALSE(cv.wait_until(lk, t0 + 20ms, [&] {
            ++calls;
            return false;
        }));
        EXPECT_GE(clk::now() - t0, 20ms);
        EXPECT_EQ(calls, 2) << "pred is asked before waiting and once at the deadline";
        EXPECT_TRUE(lk.owns_lock());

        // True only when asked again at the deadline (no notify): the result is pred().
        calls = 0;
        t0 = clk::now();
        EXPECT_TRUE(cv.wait_until(lk, t0 + 20ms, [&] { return ++calls >= 2; }));
        EXPECT_GE(clk::now() - t0, 20ms);
        EXPECT_EQ(calls, 2);

        // The same for wait_for and a system_clock deadline.
        calls = 0;
        t0 = clk::now();
        EXPECT_TRUE(cv.wait_for(lk, 20ms, [&] { return ++calls >= 2; }));
        EXPECT_GE(clk::now() - t0, 20ms);
        EXPECT_EQ(calls, 2);
        calls = 0;
        EXPECT_FALSE(cv.wait_until(lk, std::chrono::system_clock::now() + 10ms, [&] {
            ++calls;
            return false;
        }));
        EXPECT_EQ(calls, 2);
        // Already true: returns at once without waiting.
        EXPECT_TRUE(cv.wait_for(lk, 1h, [] { return true; }));
        EXPECT_TRUE(lk.owns_lock());
    };
    rt.block_on(check);
    std::thread(check).join();
}

// The longest durations mean "no deadline" (saturated), not an overflow into
// the past: the wait lasts until the notify.
template <class CV>
void expect_longest_wait_for_waits_for_the_notify(weft::runtime& rt) {
    weft::mutex m;
    CV cv;
    for (const bool in_nanoseconds : {false, true}) {
        bool ready = false;     // guarded by m
        bool notified = false;  // guarded by m
        auto waiter = rt.spawn([&] {
            std::unique_lock lk(m);
            ready = true;
            const std::cv_status st = in_nanoseconds ? cv.wait_for(lk, std::chrono::nanoseconds::max())
                                                     : cv.wait_for(lk, std::chrono::hours::max());
            return std::make_pair(st, notified);
        });
        ASSERT_TRUE(eventually([&] { return read_locked(m, ready); }));
        {
            std::lock_guard g(m);
            notified = true;
        }
        cv.notify_one();
        const auto [status, was_notified] = waiter.join();
        const char* what = in_nanoseconds ? "wait_for(nanoseconds::max())" : "wait_for(hours::max())";
        EXPECT_TRUE(status == std::cv_status::no_timeout) << what << " timed out";
        EXPECT_TRUE(was_notified) << what << " returned before the notify";
    }
}

TEST_P(RuntimeTest, WaitForTheLongestDurationWaitsForTheNotify) {
    expect_longest_wait_for_waits_for_the_notify<weft::condition_variable>(rt);
}

// BUG (found by this test, not fixed yet): condition_variable_any::wait_for(lock, d)
// without a predicate computes steady_clock::now() + d, which overflows for
// hours::max() or nanoseconds::max(): the deadline lands in the past and the
// wait returns cv_status::timeout at once. The other overloads saturate
// (deadline_after_ns(saturating_ns(d))). Disabled until that is fixed; run it with
// --gtest_also_run_disabled_tests.
TEST_P(RuntimeTest, ConditionVariableAnyWaitForTheLongestDurationWaitsForTheNotify) {
    expect_longest_wait_for_waits_for_the_notify<weft::condition_variable_any>(rt);
}

// A notify_one racing a waiter's deadline wakes exactly one waiter: either
// the timed waiter (no_timeout) or, if its deadline won, the other one. The
// timed waiter is resumed once: a later sleep of its fiber is not cut short
// by a stale second wake.
TEST_P(RuntimeTest, NotifyOneRacingADeadlineWakesExactlyOneWaiterOnce) {
    const int rounds = static_cast<int>(std::max<std::size_t>(scaled(300), 20));
    constexpr auto d = 2ms;
    std::mt19937 rng(12345);
    std::uniform_int_distribution<int> jitter_us(-700, 700);
    int lost = 0, extra = 0, early_sleeps = 0, timeouts = 0;
    for (int r = 0; r < rounds; ++r) {
        weft::mutex m;
        weft::condition_variable cv;
        int ready = 0;             // guarded by m
        bool other_woken = false;  // guarded by m
        clk::time_point timed_start{};  // guarded by m
        auto timed = rt.spawn([&] {
            std::unique_lock lk(m);
            ++ready;
            timed_start = clk::now();
            const std::cv_status st = cv.wait_for(lk, d);
            lk.unlock();
            const auto t0 = clk::now();
            weft::this_fiber::sleep_for(300us);
            return std::make_pair(st, clk::now() - t0 >= 300us);
        });
        auto other_body = [&] {
            std::unique_lock lk(m);
            ++ready;
            cv.wait(lk);
            other_woken = true;
        };
        weft::join_handle<void> other_fiber;
        std::thread other_thread;
        if (r % 2 == 0) other_fiber = rt.spawn(other_body);
        else other_thread = std::thread(other_body);

        const auto jitter = std::chrono::microseconds(jitter_us(rng));
        auto notify = [&] {
            clk::time_point at;
            yield_until([&] {
                std::lock_guard g(m);
                at = timed_start + d + jitter;
                return ready == 2;
            });
            weft::this_fiber::sleep_until(at);  // a plain thread sleeps
            cv.notify_one();
        };
        if (r % 4 < 2) notify();
        else rt.spawn(notify).join();

        const auto [status, slept_fully] = timed.join();
        if (!slept_fully) ++early_sleeps;
        if (status == std::cv_status::timeout) {
            ++timeouts;
            // The notify found the timed waiter gone: it must have woken the other.
            if (!eventually([&] { return read_locked(m, other_woken); })) ++lost;
        } else {
            std::this_thread::sleep_for(1ms);
            if (read_locked(m, other_woken)) ++extra;
        }
        // Release the other waiter if it still waits (the only one left).
        while (!read_locked(m, other_woken)) {
            cv.notify_one();
            std::this_thread::sleep_for(100us);
        }
        if (other_thread.joinable()) other_thread.join();
        else other_fiber.join();
    }
    EXPECT_EQ(lost, 0) << "rounds where the notify woke nobody";
    EXPECT_EQ(extra, 0) << "rounds where one notify_one woke both waiters";
    EXPECT_EQ(early_sleeps, 0) << "a resumed waiter was resumed again (its next sleep was cut short)";
    std::cout << "[ info     ] " << timeouts << " of " << rounds << " rounds: the deadline won the race\n";
}

// --- across fibers and plain threads ----------------------------------------------

TEST_P(RuntimeTest, NotifyCrossesBetweenFibersAndPlainThreads) {
    const int rounds = static_cast<int>(std::max<std::size_t>(scaled(500), 50));
    weft::mutex m;
    weft::condition_variable cv;
    int turn = 0;  // guarded by m: 0 the fiber's, 1 the thread's
    int passes = 0;
    // Strict alternation with notify_one: a notify that did not reach the one
    // waiter would stall the ping-pong.
    auto player = [&](int me) {
        for (int i = 0; i < rounds; ++i) {
            std::unique_lock lk(m);
            cv.wait(lk, [&] { return turn == me; });
            ++passes;
            turn = 1 - me;
            cv.notify_one();
        }
    };
    auto fiber = rt.spawn(player, 0);
    std::thread plain(player, 1);
    ASSERT_TRUE(eventually([&] { return read_locked(m, passes) == 2 * rounds; }, 60s))
        << "the ping-pong stalled after " << read_locked(m, passes) << " passes";
    plain.join();
    fiber.join();

    // One-shot each way, the notifier not holding the mutex.
    bool flag = false;  // guarded by m
    auto f = rt.spawn([&] {
        std::unique_lock lk(m);
        cv.wait(lk, [&] { return flag; });
    });
    std::thread([&] {
        {
            std::lock_guard g(m);
            flag = true;
        }
        cv.notify_one();
    }).join();
    f.join();
    flag = false;
    std::thread t([&] {
        std::unique_lock lk(m);
        cv.wait(lk, [&] { return flag; });
    });
    rt.block_on([&] {
        {
            std::lock_guard g(m);
            flag = true;
        }
        cv.notify_one();
    });
    t.join();
}

// --- misuse -----------------------------------------------------------------------

TEST_P(RuntimeTest, WaitWithoutOwningTheMutexThrows) {
    weft::mutex m;
    weft::condition_variable cv;
    auto check = [&] {
        constexpr auto not_permitted = std::errc::operation_not_permitted;
        std::unique_lock<weft::mutex> empty;
        expect_system_error([&] { cv.wait(empty); }, not_permitted);
        std::unique_lock lk(m, std::defer_lock);
        expect_system_error([&] { cv.wait(lk); }, not_permitted);
        expect_system_error([&] { (void)cv.wait_for(lk, 1ms); }, not_permitted);
        expect_system_error([&] { (void)cv.wait_until(lk, clk::now() + 1ms, [] { return false; }); }, not_permitted);
        EXPECT_FALSE(lk.owns_lock());
        EXPECT_TRUE(try_lock_from_thread(m)) << "a refused wait changed the mutex";
    };
    rt.block_on(check);
    std::thread(check).join();

    // A unique_lock that claims (adopt_lock) a mutex someone else holds.
    std::atomic<bool> held{false};
    std::atomic<bool> release{false};
    std::thread holder([&] {
        m.lock();
        held.store(true);
        while (!release.load()) std::this_thread::sleep_for(100us);
        m.unlock();
    });
    ASSERT_TRUE(eventually([&] { return held.load(); }));
    rt.block_on([&] {
        std::unique_lock lk(m, std::adopt_lock);
        expect_system_error([&] { cv.wait(lk); }, std::errc::operation_not_permitted);
        (void)lk.release();  // not ours to unlock
    });
    release.store(true);
    holder.join();
    EXPECT_TRUE(try_lock_from_thread(m));
}

// --- cancellation -------------------------------------------------------------------

// Fibers of a separate runtime wait on a condition variable (plain, timed
// and through condition_variable_any) while another fiber holds the mutex
// across a sleep. shutdown() cancels them all: each wait throws
// operation_cancelled only after re-taking the mutex (std's postcondition),
// so the waiters take turns behind the holder, whose sleep is cancelled too.
TEST_P(RuntimeTest, WaitCancelledByShutdownThrowsWithTheLockHeld) {
    constexpr int waiters = 6;
    weft::mutex m;
    weft::condition_variable cv;
    weft::condition_variable_any cva;
    int waiting = 0;  // guarded by m
    std::atomic<int> cancelled{0};
    std::atomic<int> held_in_catch{0};
    std::atomic<int> returned_normally{0};
    std::atomic<bool> holder_holding{false};
    std::atomic<bool> holder_cancelled{false};
    {
        weft::runtime inner(weft::runtime_options{.workers = workers()});
        for (int i = 0; i < waiters; ++i)
            inner.spawn([&, i] {
                     std::unique_lock lk(m);
                     ++waiting;
                     try {
                         switch (i % 3) {
                             case 0: cv.wait(lk, [] { return false; }); break;
                             case 1: (void)cv.wait_for(lk, 1h); break;
                             default: cva.wait(lk, [] { return false; }); break;
                         }
                         returned_normally.fetch_add(1);
                     } catch (const weft::operation_cancelled&) {
                         if (lk.owns_lock()) held_in_catch.fetch_add(1);
                         lk.unlock();  // aborts unless this fiber owns the mutex again
                         cancelled.fetch_add(1);
                     }
                 })
                .detach();
        ASSERT_TRUE(eventually([&] { return read_locked(m, waiting) == waiters; }));
        inner
            .spawn([&] {
                try {
                    std::lock_guard g(m);
                    holder_holding.store(true);
                    weft::this_fiber::sleep_for(1h);
                } catch (const weft::operation_cancelled&) {
                    holder_cancelled.store(true);
                }
            })
            .detach();
        ASSERT_TRUE(eventually([&] { return holder_holding.load(); }));
        inner.shutdown();  // must return: every fiber finishes
        EXPECT_EQ(inner.stats().fibers_alive, 0u);
    }
    EXPECT_TRUE(holder_cancelled.load());
    EXPECT_EQ(returned_normally.load(), 0);
    EXPECT_EQ(cancelled.load(), waiters);
    EXPECT_EQ(held_in_catch.load(), waiters) << "operation_cancelled left a wait without the lock";
    EXPECT_TRUE(try_lock_from_thread(m));
}

// --- condition_variable_any ---------------------------------------------------------

TEST_P(RuntimeTest, ConditionVariableAnyWithAWeftMutex) {
    weft::mutex m;
    weft::condition_variable_any cv;
    int value = 0;  // guarded by m
    int ready = 0;  // guarded by m
    auto wait_for_value = [&] {
        std::lock_guard g(m);  // waits on the mutex itself (Lock = weft::mutex)
        ++ready;
        cv.wait(m, [&] { return value != 0; });
        return value;
    };
    auto f = rt.spawn(wait_for_value);
    int from_thread = 0;
    std::thread t([&] { from_thread = wait_for_value(); });
    ASSERT_TRUE(eventually([&] { return read_locked(m, ready) == 2; }));
    rt.block_on([&] {
        {
            std::lock_guard g(m);
            value = 7;
        }
        cv.notify_all();
    });
    EXPECT_EQ(f.join(), 7);
    t.join();
    EXPECT_EQ(from_thread, 7);

    auto timed = [&] {
        std::lock_guard g(m);
        const auto t0 = clk::now();
        EXPECT_EQ(cv.wait_for(m, 15ms), std::cv_status::timeout);
        EXPECT_GE(clk::now() - t0, 15ms);
        EXPECT_FALSE(cv.wait_for(m, 10ms, [] { return false; }));
        // The guard's unlock checks that we own m again.
    };
    rt.block_on(timed);
    std::thread(timed).join();
}

TEST_P(RuntimeTest, ConditionVariableAnyWithAUniqueLockOfATimedMutex) {
    weft::timed_mutex m;
    weft::condition_variable_any cv;
    std::deque<int> items;  // guarded by m
    const int n = static_cast<int>(std::max<std::size_t>(scaled(2000), 100));
    std::atomic<long long> consumed_sum{0};
    std::atomic<int> consumed{0};
    auto consume = [&] {
        for (;;) {
            std::unique_lock<weft::timed_mutex> lk(m);
            cv.wait(lk, [&] { return !items.empty(); });
            const int v = items.front();
            items.pop_front();
            if (v < 0) return;  // one stop marker per consumer
            consumed_sum.fetch_add(v);
            consumed.fetch_add(1);
        }
    };
    auto c1 = rt.spawn(consume);
    auto c2 = rt.spawn(consume);
    std::thread c3(consume);
    auto produce = [&](int from, int to) {
        for (int i = from; i < to; ++i) {
            {
                std::unique_lock<weft::timed_mutex> lk(m);
                items.push_back(i);
            }
            cv.notify_one();
        }
    };
    auto p1 = rt.spawn(produce, 1, n / 2);
    std::thread p2(produce, n / 2, n + 1);
    p1.join();
    p2.join();
    {
        std::unique_lock<weft::timed_mutex> lk(m);
        for (int i = 0; i < 3; ++i) items.push_back(-1);
    }
    cv.notify_all();
    ASSERT_TRUE(eventually([&] { return c1.is_finished() && c2.is_finished(); }, 60s)) << rt.dump_json();
    c1.join();
    c2.join();
    c3.join();
    EXPECT_EQ(consumed.load(), n);
    EXPECT_EQ(consumed_sum.load(), static_cast<long long>(n) * (n + 1) / 2);

    // Timed waits, steady and system clocks.
    rt.block_on([&] {
        std::unique_lock<weft::timed_mutex> lk(m);
        const auto t0 = clk::now();
        EXPECT_EQ(cv.wait_until(lk, t0 + 10ms), std::cv_status::timeout);
        EXPECT_GE(clk::now(), t0 + 10ms);
        const auto sys_until = std::chrono::system_clock::now() + 10ms;
        EXPECT_FALSE(cv.wait_until(lk, sys_until, [] { return false; }));
        EXPECT_GE(std::chrono::system_clock::now(), sys_until - 1ms);  // 1 ms: the two clocks' rates
        EXPECT_TRUE(lk.owns_lock());
        EXPECT_FALSE(try_lock_from_thread(m));
    });
}

// std::stop_token overloads: request_stop wakes the waiter, which returns
// pred() with the lock held, as std::condition_variable_any does.
TEST_P(RuntimeTest, ConditionVariableAnyStopTokenWakesTheWaiter) {
    weft::mutex m;
    weft::condition_variable_any cv;
    bool ready = false;  // guarded by m
    bool flag = false;   // guarded by m

    // A fiber waits; a plain thread requests stop.
    {
        std::stop_source ss;
        auto waiter = rt.spawn([&] {
            std::unique_lock lk(m);
            ready = true;
            const bool r = cv.wait(lk, ss.get_token(), [&] { return flag; });
            EXPECT_TRUE(lk.owns_lock());
            return r;
        });
        ASSERT_TRUE(eventually([&] { return read_locked(m, ready); }));
        EXPECT_FALSE(waiter.is_finished());
        std::thread([&] { ss.request_stop(); }).join();
        EXPECT_FALSE(waiter.join()) << "pred() is false at the stop";
    }
    // A plain thread waits with a timeout; a fiber requests stop; pred() is
    // true by then (set without a notify), so the wait returns true.
    {
        ready = false;
        std::stop_source ss;
        bool result = false;
        clk::duration waited{};
        std::thread waiter([&] {
            std::unique_lock lk(m);
            ready = true;
            const auto t0 = clk::now();
            result = cv.wait_for(lk, ss.get_token(), 1h, [&] { return flag; });
            waited = clk::now() - t0;
        });
        ASSERT_TRUE(eventually([&] { return read_locked(m, ready); }));
        rt.block_on([&] {
            {
                std::lock_guard g(m);
                flag = true;
            }
            ss.request_stop();
        });
        waiter.join();
        EXPECT_TRUE(result);
        EXPECT_LT(waited, 1h);
        flag = false;
    }
    // weft::jthread (on a fiber of rt): its destructor requests stop and joins.
    ready = false;
    std::atomic<int> result{-1};
    rt.block_on([&] {
        weft::jthread j([&](std::stop_token st) {
            std::unique_lock lk(m);
            ready = true;
            result.store(cv.wait(lk, st, [&] { return flag; }) ? 1 : 0);
        });
        EXPECT_TRUE(yield_until([&] { return read_locked(m, ready); }));
    });
    EXPECT_EQ(result.load(), 0);
    // Stop already requested: returns pred() at once, without waiting.
    rt.block_on([&] {
        std::stop_source ss;
        ss.request_stop();
        std::unique_lock lk(m);
        EXPECT_FALSE(cv.wait(lk, ss.get_token(), [] { return false; }));
        EXPECT_TRUE(cv.wait_until(lk, ss.get_token(), clk::now() + 1h, [] { return true; }));
        EXPECT_TRUE(lk.owns_lock());
    });
    // No stop: the timed form times out (not early) and returns pred(); a
    // notify with pred() true returns true.
    rt.block_on([&] {
        std::stop_source ss;
        std::unique_lock lk(m);
        const auto t0 = clk::now();
        EXPECT_FALSE(cv.wait_for(lk, ss.get_token(), 15ms, [] { return false; }));
        EXPECT_GE(clk::now() - t0, 15ms);
        auto setter = weft::spawn([&] {
            {
                std::lock_guard g(m);
                flag = true;
            }
            cv.notify_one();
        });
        EXPECT_TRUE(cv.wait(lk, ss.get_token(), [&] { return flag; }));
        lk.unlock();
        setter.join();
    });
}
