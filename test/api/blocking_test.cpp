// weft::spawn_blocking: values (plain, move-only, void, references), exceptions
// rethrown with their type, decayed copies of f and args, many fibers blocked
// at once while the workers stay free, the pool bound, idle threads shrinking,
// plain threads running the call inline (and both at once), the wait outliving
// runtime shutdown, and WEFT_BLOCKING_THREADS. Public API only (weft_dep); the
// pool's test hooks (detail::blocking_pool_*) are declared in <weft/blocking.hpp>.
//
// The pool is process-wide, so tests that change its bound or keep-alive
// restore them (pool_settings) and never assume it starts empty.
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

// RuntimeTest is instantiated over 1, 2 and 4 workers once for this
// executable, in runtime_test.cpp.

using namespace std::chrono_literals;
using weft_test::eventually;
using weft_test::patience;

namespace {

/// Restores the pool's bound and keep-alive at scope exit (the pool outlives the test).
class pool_settings {
public:
    pool_settings() : max_(weft::detail::blocking_pool_stats().max_threads), keep_alive_(10s) {}
    ~pool_settings() {
        weft::detail::blocking_pool_set_max_threads(max_);
        weft::detail::blocking_pool_set_keep_alive(keep_alive_);
    }
    void set_max_threads(std::size_t n) { weft::detail::blocking_pool_set_max_threads(n); }
    void set_keep_alive(std::chrono::nanoseconds d) { keep_alive_ = weft::detail::blocking_pool_set_keep_alive(d); }

private:
    std::size_t max_;
    std::chrono::nanoseconds keep_alive_;
};

/// The calling thread's name (pthread_getname_np).
std::string thread_name() {
    char buf[32] = {};
    pthread_getname_np(pthread_self(), buf, sizeof buf);
    return buf;
}

/// Raises `peak` to at least `v`.
void raise_to(std::atomic<int>& peak, int v) {
    int cur = peak.load();
    while (cur < v && !peak.compare_exchange_weak(cur, v)) {
    }
}

struct job_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace

// ---------------------------------------------------------------- values and exceptions

TEST_P(RuntimeTest, SpawnBlockingReturnsValueFromAPoolThread) {
    struct seen {
        int sum;
        std::thread::id fiber_thread, job_thread;
        std::string job_thread_name;
    };
    const seen s = rt.block_on([] {
        seen r{};
        r.fiber_thread = std::this_thread::get_id();
        r.sum = weft::spawn_blocking(
            [&r](int a, long b) {
                r.job_thread = std::this_thread::get_id();
                r.job_thread_name = thread_name();
                return a + static_cast<int>(b);
            },
            2, 40L);
        return r;
    });
    EXPECT_EQ(s.sum, 42);
    EXPECT_NE(s.job_thread, s.fiber_thread) << "on a fiber, f must run on a pool thread, not the worker";
    EXPECT_EQ(s.job_thread_name, "weft-blocking");
}

TEST_P(RuntimeTest, SpawnBlockingReturnsMoveOnlyValueAndTakesMoveOnlyArguments) {
    auto p = rt.block_on([] {
        return weft::spawn_blocking(
            [](std::unique_ptr<int> in, int add) {
                *in += add;
                return in;
            },
            std::make_unique<int>(40), 2);
    });
    ASSERT_TRUE(p);
    EXPECT_EQ(*p, 42);
}

TEST_P(RuntimeTest, SpawnBlockingVoidCompletesBeforeReturning) {
    const int v = rt.block_on([] {
        int target = 0;  // on the fiber's stack: the job writes it from the pool thread
        weft::spawn_blocking([&target] {
            std::this_thread::sleep_for(5ms);
            target = 7;
        });
        static_assert(std::is_void_v<decltype(weft::spawn_blocking([] {}))>);
        return target;
    });
    EXPECT_EQ(v, 7);
}

TEST_P(RuntimeTest, SpawnBlockingReturnsLvalueReferenceAsInvokeDoes) {
    rt.block_on([] {
        int x = 1;
        int& r = weft::spawn_blocking([&x]() -> int& { return x; });
        EXPECT_EQ(&r, &x);
        r = 5;
        EXPECT_EQ(x, 5);
    });
}

TEST_P(RuntimeTest, SpawnBlockingCopiesArgumentsAndDestroysThemBeforeReturning) {
    rt.block_on([] {
        std::string s = "caller";
        // An lvalue argument is copied: the job changes its own copy only.
        const std::string got = weft::spawn_blocking(
            [](std::string copy) {
                copy += "-job";
                return copy;
            },
            s);
        EXPECT_EQ(got, "caller-job");
        EXPECT_EQ(s, "caller");
        // std::ref shares the caller's object.
        weft::spawn_blocking([](std::string& shared) { shared = "changed"; }, std::ref(s));
        EXPECT_EQ(s, "changed");
        // The copies of f and args are gone (destroyed on the pool thread) by the time it returns.
        auto token = std::make_shared<int>(0);
        std::weak_ptr<int> watch = token;
        weft::spawn_blocking([t = std::move(token)] { return *t; });
        EXPECT_TRUE(watch.expired());
    });
}

TEST_P(RuntimeTest, SpawnBlockingRethrowsExceptionWithItsType) {
    rt.block_on([] {
        try {
            (void)weft::spawn_blocking([]() -> int { throw job_error("from the pool"); });
            ADD_FAILURE() << "no exception";
        } catch (const job_error& e) {
            EXPECT_STREQ(e.what(), "from the pool");
        }
        try {
            weft::spawn_blocking([] { throw std::system_error(std::make_error_code(std::errc::timed_out), "io"); });
            ADD_FAILURE() << "no exception";
        } catch (const std::system_error& e) {
            EXPECT_EQ(e.code(), std::errc::timed_out);
        }
        // The fiber goes on working after an exception.
        EXPECT_EQ(weft::spawn_blocking([] { return 3; }), 3);
    });
}

// ---------------------------------------------------------------- concurrency, bound, shrinking

TEST_P(RuntimeTest, SpawnBlockingManyFibersBlockConcurrentlyWhileWorkersStayFree) {
    // 64 jobs that can only finish once all 64 are running at once (so the pool
    // grew to 64 threads), and only once a fiber that never blocks has made
    // progress since each started (so no worker was blocked by a job).
    constexpr int n = 64;
    ASSERT_GE(weft::detail::blocking_pool_stats().max_threads, std::size_t{n});
    std::atomic<int> arrived{0}, all_met{0}, progress_seen{0}, finished{0};
    std::atomic<long> ticks{0};
    const auto give_up = std::chrono::steady_clock::now() + patience;
    rt.block_on([&] {
        auto ticker = weft::spawn([&] {
            while (finished.load() < n) {
                ticks.fetch_add(1);
                weft::this_fiber::yield();
            }
        });
        std::vector<weft::join_handle<void>> hs;
        for (int i = 0; i < n; ++i)
            hs.push_back(weft::spawn([&] {
                weft::spawn_blocking([&] {
                    const long t0 = ticks.load();
                    arrived.fetch_add(1);
                    std::this_thread::sleep_for(20ms);
                    while (arrived.load() < n && std::chrono::steady_clock::now() < give_up)
                        std::this_thread::sleep_for(1ms);
                    if (arrived.load() == n) all_met.fetch_add(1);
                    while (ticks.load() < t0 + 10 && std::chrono::steady_clock::now() < give_up)
                        std::this_thread::sleep_for(1ms);
                    if (ticks.load() >= t0 + 10) progress_seen.fetch_add(1);
                });
                finished.fetch_add(1);
            }));
        for (auto& h : hs) h.join();
        ticker.join();
    });
    EXPECT_EQ(finished.load(), n);
    EXPECT_EQ(all_met.load(), n) << "the jobs did not all run at once";
    EXPECT_EQ(progress_seen.load(), n) << "a fiber could not run while jobs were blocking";
}

TEST_P(RuntimeTest, SpawnBlockingPoolBoundHolds) {
    constexpr int bound = 4, jobs = 32;
    pool_settings settings;
    settings.set_max_threads(bound);
    // Lowering the bound retires the idle threads left by earlier tests at once,
    // and threads still finishing an earlier job when they next look.
    ASSERT_TRUE(eventually([] { return weft::detail::blocking_pool_stats().threads <= std::size_t{bound}; }));
    std::atomic<int> running{0}, peak{0}, ran{0};
    std::atomic<std::size_t> max_threads_seen{0}, max_queued_seen{0};
    const auto give_up = std::chrono::steady_clock::now() + patience;
    rt.block_on([&] {
        std::vector<weft::join_handle<void>> hs;
        for (int i = 0; i < jobs; ++i)
            hs.push_back(weft::spawn([&] {
                weft::spawn_blocking([&] {
                    raise_to(peak, running.fetch_add(1) + 1);
                    const auto st = weft::detail::blocking_pool_stats();
                    std::size_t m = max_threads_seen.load();
                    while (m < st.threads && !max_threads_seen.compare_exchange_weak(m, st.threads)) {
                    }
                    m = max_queued_seen.load();
                    while (m < st.queued && !max_queued_seen.compare_exchange_weak(m, st.queued)) {
                    }
                    // Hold until the pool has reached its bound (bounded), so the peak is exact.
                    while (peak.load() < bound && std::chrono::steady_clock::now() < give_up)
                        std::this_thread::sleep_for(1ms);
                    std::this_thread::sleep_for(2ms);
                    running.fetch_sub(1);
                    ran.fetch_add(1);
                });
            }));
        for (auto& h : hs) h.join();
    });
    EXPECT_EQ(ran.load(), jobs);
    EXPECT_EQ(peak.load(), bound) << "more jobs ran at once than the bound, or the pool never reached it";
    EXPECT_LE(max_threads_seen.load(), std::size_t{bound});
    const auto st = weft::detail::blocking_pool_stats();
    EXPECT_LE(st.threads, std::size_t{bound});
    EXPECT_EQ(st.queued, 0u);
    EXPECT_EQ(st.max_threads, std::size_t{bound});
}

TEST_P(RuntimeTest, SpawnBlockingIdleThreadsExitAfterKeepAlive) {
    pool_settings settings;
    std::atomic<int> in_job{0};
    auto run_jobs = [&] {
        rt.block_on([&] {
            std::vector<weft::join_handle<void>> hs;
            for (int i = 0; i < 4; ++i)
                hs.push_back(weft::spawn([&] {
                    weft::spawn_blocking([&] {
                        in_job.fetch_add(1);
                        std::this_thread::sleep_for(10ms);
                    });
                }));
            for (auto& h : hs) h.join();
        });
    };
    auto pool_empty = [] { return weft::detail::blocking_pool_stats().threads == 0; };
    // Threads already idle under the 10 s default notice a shorter keep-alive at once
    // (patience, 5 s, is shorter than the old keep-alive).
    run_jobs();
    ASSERT_GT(weft::detail::blocking_pool_stats().threads, 0u);
    settings.set_keep_alive(50ms);
    EXPECT_TRUE(eventually(pool_empty)) << "pool threads left: " << weft::detail::blocking_pool_stats().threads;
    // An empty pool starts threads again, and they expire again.
    run_jobs();
    EXPECT_EQ(in_job.load(), 8);
    EXPECT_EQ(rt.block_on([] { return weft::spawn_blocking([] { return thread_name(); }); }), "weft-blocking");
    EXPECT_TRUE(eventually(pool_empty)) << "pool threads left: " << weft::detail::blocking_pool_stats().threads;
    EXPECT_EQ(weft::detail::blocking_pool_stats().idle, 0u);
}

// When no pool thread can be started (a thread or pids limit): with no
// thread at all, every caller gets resource_unavailable_try_again at once,
// also two at the same moment (an earlier version could queue one of them
// behind the other's failed start, with no thread ever to run it: found by
// review); with a busy thread, the job waits for it instead.
TEST_P(RuntimeTest, SpawnBlockingWhenNoThreadCanBeStarted) {
    pool_settings settings;
    settings.set_keep_alive(1ms);
    ASSERT_TRUE(eventually([] { return weft::detail::blocking_pool_stats().threads == 0; }));
    struct restore {
        ~restore() { weft::detail::blocking_pool_fail_thread_starts(false); }
    } restore_hook;
    weft::detail::blocking_pool_fail_thread_starts(true);
    std::atomic<int> ran{0};
    auto attempt = [&ran] {
        try {
            weft::spawn_blocking([&ran] { ran.fetch_add(1); });
            return std::string("ran");
        } catch (const std::system_error& e) {
            EXPECT_EQ(e.code(), std::errc::resource_unavailable_try_again);
            return std::string(e.what());
        }
    };
    auto h1 = rt.spawn(attempt);
    auto h2 = rt.spawn(attempt);
    const std::string r1 = h1.join(), r2 = h2.join();
    EXPECT_NE(r1.find("cannot start a pool thread"), std::string::npos) << r1;
    EXPECT_NE(r2.find("cannot start a pool thread"), std::string::npos) << r2;
    EXPECT_EQ(ran.load(), 0);
    EXPECT_EQ(weft::detail::blocking_pool_stats().queued, 0u);

    // One busy thread: a job that cannot get a thread of its own waits for it.
    weft::detail::blocking_pool_fail_thread_starts(false);
    settings.set_keep_alive(10s);
    std::atomic<bool> release{false};
    auto busy = rt.spawn([&] {
        weft::spawn_blocking([&] {
            while (!release.load()) std::this_thread::sleep_for(1ms);
        });
    });
    ASSERT_TRUE(eventually([] { return weft::detail::blocking_pool_stats().threads == 1; }));
    ASSERT_TRUE(eventually([] { return weft::detail::blocking_pool_stats().idle == 0; }));
    weft::detail::blocking_pool_fail_thread_starts(true);
    auto queued = rt.spawn(attempt);
    ASSERT_TRUE(eventually([] { return weft::detail::blocking_pool_stats().queued == 1; }));
    release.store(true);
    busy.join();
    EXPECT_EQ(queued.join(), "ran");
    EXPECT_EQ(ran.load(), 1);
}

TEST(SpawnBlockingPool, HooksRejectOutOfRangeSettings) {
    EXPECT_THROW(weft::detail::blocking_pool_set_max_threads(0), std::invalid_argument);
    EXPECT_THROW(weft::detail::blocking_pool_set_max_threads(1'000'000), std::invalid_argument);
    EXPECT_THROW(weft::detail::blocking_pool_set_keep_alive(0ns), std::invalid_argument);
    EXPECT_THROW(weft::detail::blocking_pool_set_keep_alive(std::chrono::hours(25)), std::invalid_argument);
}

// ---------------------------------------------------------------- plain threads

TEST(SpawnBlockingPlainThread, RunsInlineOnTheCallingThread) {
    auto check = [] {
        const auto me = std::this_thread::get_id();
        EXPECT_EQ(weft::spawn_blocking([] { return std::this_thread::get_id(); }), me);
        EXPECT_THROW(weft::spawn_blocking([] { throw job_error("inline"); }), job_error);
        auto p = weft::spawn_blocking([](std::unique_ptr<int> q) { return q; }, std::make_unique<int>(9));
        ASSERT_TRUE(p);
        EXPECT_EQ(*p, 9);
    };
    check();                  // the test's main thread
    std::thread(check).join();  // another plain thread
}

TEST_P(RuntimeTest, SpawnBlockingNestedCallRunsInlineOnThePoolThread) {
    rt.block_on([] {
        const auto [outer, inner] = weft::spawn_blocking([] {
            // A pool thread is a plain thread: the nested call does not wait for another pool thread.
            return std::pair(std::this_thread::get_id(),
                             weft::spawn_blocking([] { return std::this_thread::get_id(); }));
        });
        EXPECT_EQ(outer, inner);
    });
}

TEST_P(RuntimeTest, SpawnBlockingFromFibersAndPlainThreadsAtOnce) {
    const int per = static_cast<int>(weft_test::scaled(200)) + 10;
    std::atomic<long> sum{0};
    std::atomic<int> wrong_thread{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < per; ++i) {
                const auto me = std::this_thread::get_id();
                if (weft::spawn_blocking([] { return std::this_thread::get_id(); }) != me) wrong_thread.fetch_add(1);
                sum.fetch_add(weft::spawn_blocking([](int v) { return v; }, 1));
            }
        });
    rt.block_on([&] {
        std::vector<weft::join_handle<void>> hs;
        for (int f = 0; f < 4; ++f)
            hs.push_back(weft::spawn([&] {
                for (int i = 0; i < per; ++i) sum.fetch_add(weft::spawn_blocking([](int v) { return v; }, 1));
            }));
        for (auto& h : hs) h.join();
    });
    for (auto& t : threads) t.join();
    EXPECT_EQ(sum.load(), 6L * per);
    EXPECT_EQ(wrong_thread.load(), 0);
}

// ---------------------------------------------------------------- shutdown

TEST_P(RuntimeTest, SpawnBlockingWaitIsNotCancelledByShutdown) {
    // The job writes into the parked fiber's frame after shutdown() started;
    // shutdown waits for it and the fiber gets the result, not operation_cancelled.
    std::atomic<bool> started{false}, job_done{false}, got_result{false}, cancelled_later{false};
    auto h = rt.spawn([&] {
        int on_stack = 0;
        const int r = weft::spawn_blocking([&] {
            started.store(true);
            std::this_thread::sleep_for(200ms);
            on_stack = 11;
            job_done.store(true);
            return 31;
        });
        got_result.store(r == 31 && on_stack == 11);
        try {
            weft::this_fiber::sleep_for(10s);  // a cancellable wait: the cancellation is still pending
        } catch (const weft::operation_cancelled&) {
            cancelled_later.store(true);
        }
    });
    h.detach();
    ASSERT_TRUE(eventually([&] { return started.load(); }));
    // The job may start before the fiber has parked (and registered): look until it has.
    EXPECT_TRUE(eventually([&] { return rt.dump_json().find("spawn_blocking") != std::string::npos; }))
        << rt.dump_json();
    rt.shutdown();
    EXPECT_TRUE(job_done.load()) << "shutdown() returned before the job did";
    EXPECT_TRUE(got_result.load());
    EXPECT_TRUE(cancelled_later.load());
}

// ---------------------------------------------------------------- WEFT_BLOCKING_THREADS
// Each runs in a child process (threadsafe death-test style re-executes the
// binary), so the variable is read by a fresh pool.

namespace {
[[noreturn]] void child_with_env(const char* value) {
    ::setenv("WEFT_BLOCKING_THREADS", value, 1);
    weft::runtime rt{weft::runtime_options{.workers = 1}};
    const int code = rt.block_on([] {
        try {
            (void)weft::spawn_blocking([] { return 0; });
        } catch (const std::invalid_argument& e) {
            std::fprintf(stderr, "%s\n", e.what());
            return 3;
        }
        std::fprintf(stderr, "max_threads=%zu\n", weft::detail::blocking_pool_stats().max_threads);
        return 0;
    });
    std::fflush(stderr);
    std::_Exit(code);
}
}  // namespace

TEST(SpawnBlockingEnvDeathTest, InvalidValueThrowsInvalidArgument) {
    EXPECT_EXIT(child_with_env("lots"), testing::ExitedWithCode(3), "WEFT_BLOCKING_THREADS='lots'");
    EXPECT_EXIT(child_with_env("0"), testing::ExitedWithCode(3), "WEFT_BLOCKING_THREADS='0'");
    EXPECT_EXIT(child_with_env("8x"), testing::ExitedWithCode(3), "WEFT_BLOCKING_THREADS='8x'");
}

TEST(SpawnBlockingEnvDeathTest, ValidValueSetsTheBound) {
    EXPECT_EXIT(child_with_env("3"), testing::ExitedWithCode(0), "max_threads=3");
}
