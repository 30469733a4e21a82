// Scheduler behaviour seen through the public API: idle workers steal work,
// and idle workers sleep instead of spinning; the C++ exception state (the
// exception being handled, std::uncaught_exceptions()) belongs to the fiber
// across switches and migrations (context/switch.hpp X1). Public API only
// (weft_dep).
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

using namespace std::chrono_literals;
using weft_test::scaled;

namespace {

/// Process CPU time (user + system, all threads) in microseconds.
std::int64_t process_cpu_us() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    auto us = [](const timeval& tv) { return std::int64_t{tv.tv_sec} * 1'000'000 + tv.tv_usec; };
    return us(ru.ru_utime) + us(ru.ru_stime);
}

/// Keeps the CPU busy for a while without touching shared state.
void burn(int iterations) {
    volatile std::uint64_t x = 0;
    for (int i = 0; i < iterations; ++i) x = x + static_cast<std::uint64_t>(i);
}

}  // namespace

TEST_P(RuntimeTest, IdleWorkersStealWork) {
    // One fiber spawns every task onto its own deque and keeps its worker
    // busy between spawns, without yielding. The deque never fills (64 tasks),
    // so nothing overflows to the injector: another worker can only get a
    // task by stealing it.
    constexpr int tasks = 64;
    constexpr int rounds = 10;
    std::mutex mu;
    std::set<std::thread::id> threads;  // every worker thread that ran one of these fibers
    auto record = [&] {
        std::lock_guard lock(mu);
        threads.insert(std::this_thread::get_id());
    };
    const auto before = rt.stats();
    rt.block_on([&] {
        std::vector<weft::join_handle<void>> hs;
        hs.reserve(tasks);
        for (int t = 0; t < tasks; ++t) {
            record();
            hs.push_back(weft::spawn([&] {
                for (int r = 0; r < rounds; ++r) {
                    record();
                    burn(20000);
                    weft::this_fiber::yield();
                }
            }));
            burn(100000);  // the spawner's worker stays busy: the task waits in its deque
        }
        for (auto& h : hs) h.join();
    });
    const auto after = rt.stats();
    const auto steals = after.steals - before.steals;
    const std::string diag = "steals " + std::to_string(steals) + ", worker sleeps " +
                             std::to_string(after.worker_sleeps - before.worker_sleeps) + ", switches " +
                             std::to_string(after.switches - before.switches) + ", threads " +
                             std::to_string(threads.size());
    if (workers() == 1) {
        EXPECT_EQ(steals, 0u) << "one worker has nobody to steal from; " << diag;
        EXPECT_EQ(threads.size(), 1u) << diag;
    } else {
        EXPECT_GT(steals, 0u) << diag;
        EXPECT_GT(threads.size(), 1u) << "all fibers ran on one worker thread; " << diag;
        EXPECT_LE(threads.size(), workers()) << diag;
    }
}

TEST_P(RuntimeTest, IdleWorkersDoNotBurnCpu) {
    // A burst of work wakes every worker...
    const std::size_t n = scaled(10000);
    rt.block_on([n] {
        std::vector<weft::join_handle<void>> hs;
        hs.reserve(n);
        for (std::size_t i = 0; i < n; ++i)
            hs.push_back(weft::spawn([] {
                burn(1000);
                weft::this_fiber::yield();
            }));
        for (auto& h : hs) h.join();
    });
    // ...then they must park on their futex, not spin. Let spinning workers
    // give up first (a short settle, not a measurement).
    std::this_thread::sleep_for(20ms);
    const auto sleeps_before = rt.stats().worker_sleeps;
    const auto cpu_before_us = process_cpu_us();
    std::this_thread::sleep_for(300ms);  // idle wall time
    const auto cpu_used_us = process_cpu_us() - cpu_before_us;
    // Generous: one spinning worker alone would burn ~300 ms of CPU here.
    EXPECT_LT(cpu_used_us, 30'000) << "process used " << cpu_used_us << " us of CPU in 300 ms of idle wall time";
    EXPECT_GE(rt.stats().worker_sleeps, sleeps_before);
    EXPECT_GT(rt.stats().worker_sleeps, 0u);
}

// D4 (sched/idle.hpp): a fiber spawned onto a deque whose last item a thief
// takes between the spawner's "was it empty?" look and its push is still
// handed to a sleeping worker, though the spawner never switches. The window
// is one preemption wide; chaos builds (the TSan run) widen it with a pause
// there, where the earlier code left the second fiber waiting for the
// spawner's next pick (found by review). Other builds check the ordinary case.
TEST_P(RuntimeTest, ASpawnBehindAStolenLastItemIsNotLeftWaiting) {
    if (workers() == 1) GTEST_SKIP() << "needs a worker to steal";
    constexpr int rounds = 60;
    int left_waiting = 0;
    for (int r = 0; r < rounds; ++r) {
        std::this_thread::sleep_for(5ms);  // the other workers go to sleep
        std::atomic<bool> ran{false};
        rt.block_on([&] {
            auto a = weft::spawn([] {});
            auto b = weft::spawn([&] { ran.store(true, std::memory_order_release); });
            // Never switch: only another worker can run b.
            const auto give_up = std::chrono::steady_clock::now() + 2s;
            while (!ran.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < give_up) burn(1000);
            if (!ran.load(std::memory_order_acquire)) ++left_waiting;
            a.join();
            b.join();
        });
    }
    EXPECT_EQ(left_waiting, 0) << "of " << rounds << " rounds, b waited for the spawner to switch";
}

// A fiber that blocks inside a catch handler and resumes on another worker
// (or after other fibers caught on its worker) still handles its own
// exception: `throw;` and std::current_exception() find it. Before X1 this
// terminated ("terminate called without an active exception") or rethrew
// another fiber's exception.
TEST_P(RuntimeTest, BlockingInsideACatchHandlerKeepsTheFibersException) {
    const int fibers = static_cast<int>(scaled(400));
    std::atomic<int> wrong{0};
    rt.block_on([&] {
        std::vector<weft::join_handle<void>> hs;
        for (int i = 0; i < fibers; ++i)
            hs.push_back(weft::spawn([i, &wrong] {
                try {
                    throw std::runtime_error(std::to_string(i));
                } catch (...) {
                    for (int k = 0; k < 4; ++k) {
                        weft::this_fiber::yield();
                        weft::this_fiber::sleep_for(50us);
                    }
                    if (!std::current_exception()) wrong.fetch_add(1);
                    try {
                        throw;
                    } catch (const std::runtime_error& e) {
                        if (e.what() != std::to_string(i)) wrong.fetch_add(1);
                    }
                }
            }));
        for (auto& h : hs) h.join();
    });
    EXPECT_EQ(wrong.load(), 0);
}

// std::uncaught_exceptions() counts the calling fiber's unwinding only: a
// destructor that blocks during unwinding sees 1 before and after, and the
// fibers that run meanwhile see 0.
TEST_P(RuntimeTest, UncaughtExceptionsCountsTheFibersOwnUnwinding) {
    const int fibers = 50;
    std::atomic<int> wrong{0};
    std::atomic<bool> stop{false};
    rt.block_on([&] {
        std::vector<weft::join_handle<void>> bystanders;
        for (int b = 0; b < 4; ++b)
            bystanders.push_back(weft::spawn([&] {
                while (!stop.load()) {
                    if (std::uncaught_exceptions() != 0) wrong.fetch_add(1);
                    weft::this_fiber::yield();
                }
            }));
        struct blocks_in_dtor {
            std::atomic<int>* wrong;
            ~blocks_in_dtor() {
                if (std::uncaught_exceptions() != 1) wrong->fetch_add(1);
                weft::this_fiber::sleep_for(200us);
                weft::this_fiber::yield();
                if (std::uncaught_exceptions() != 1) wrong->fetch_add(1);
            }
        };
        std::vector<weft::join_handle<void>> hs;
        for (int i = 0; i < fibers; ++i)
            hs.push_back(weft::spawn([&wrong] {
                try {
                    blocks_in_dtor d{&wrong};
                    throw std::logic_error("unwind");
                } catch (const std::logic_error&) {
                    if (std::uncaught_exceptions() != 0) wrong.fetch_add(1);
                }
            }));
        for (auto& h : hs) h.join();
        stop = true;
        for (auto& h : bystanders) h.join();
    });
    EXPECT_EQ(wrong.load(), 0);
}
