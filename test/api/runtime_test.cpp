// weft::runtime: options, block_on, current(), stats(), dump_json(), shutdown.
// Public API only (weft_dep): this file must compile without src/.
#include <signal.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

// The include boundary (STYLE 1): this executable is built on weft_dep alone,
// so no private header is reachable, and the public headers pull in neither
// Boost.Context nor spdlog.
#if __has_include("util/private.hpp") || __has_include("sched/worker.hpp")
#error "test/api must not see src/: it has to build on weft_dep alone"
#endif
#if defined(BOOST_VERSION) || defined(BOOST_CONTEXT_DETAIL_FCONTEXT_H) || defined(SPDLOG_VER_MAJOR)
#error "a public weft header includes Boost or spdlog"
#endif

using namespace std::chrono_literals;
using weft_test::eventually;
using weft_test::scaled;
using weft_test::yield_until;

INSTANTIATE_TEST_SUITE_P(Workers, RuntimeTest, testing::Values(1, 2, 4), worker_count_name);

namespace {

constexpr std::size_t kib = 1024;
constexpr std::size_t gib = 1024 * 1024 * 1024;

/// Sets (or unsets) one environment variable for the scope and restores it.
class scoped_env {
public:
    scoped_env(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value)
            ::setenv(name, value, 1);
        else
            ::unsetenv(name);
    }
    ~scoped_env() {
        if (old_)
            ::setenv(name_, old_->c_str(), 1);
        else
            ::unsetenv(name_);
    }
    scoped_env(const scoped_env&) = delete;
    scoped_env& operator=(const scoped_env&) = delete;

private:
    const char* name_;
    std::optional<std::string> old_;
};

struct custom_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace

// --- runtime_options -------------------------------------------------------

TEST(RuntimeOptions, RejectsStackSizeBelowSixteenKiB) {
    EXPECT_THROW(weft::runtime(weft::runtime_options{.stack_size = 1}), std::invalid_argument);
    EXPECT_THROW(weft::runtime(weft::runtime_options{.stack_size = 16 * kib - 1}), std::invalid_argument);
}

TEST(RuntimeOptions, RejectsStackSizeAboveOneGiB) {
    EXPECT_THROW(weft::runtime(weft::runtime_options{.stack_size = 2 * gib}), std::invalid_argument);
}

TEST(RuntimeOptions, RejectsTooManyWorkers) {
    EXPECT_THROW(weft::runtime(weft::runtime_options{.workers = 100000}), std::invalid_argument);
    EXPECT_THROW(weft::runtime(weft::runtime_options{.workers = 1025}), std::invalid_argument);
}

TEST(RuntimeOptions, RejectsTooManyGuardPages) {
    EXPECT_THROW(weft::runtime(weft::runtime_options{.workers = 1, .guard_pages = 257}), std::invalid_argument);
}

// A worker thread that cannot be started: the constructor throws what
// std::thread threw, after joining the workers it did start (it terminated,
// destroying their joinable threads; found by review).
TEST(RuntimeOptions, AWorkerThatCannotStartIsAnErrorNotATermination) {
    struct restore {
        ~restore() { weft::detail::runtime_fail_worker_starts_from(-1); }
    } r;
    weft::detail::runtime_fail_worker_starts_from(2);
    try {
        weft::runtime rt(weft::runtime_options{.workers = 4});
        ADD_FAILURE() << "constructed";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::resource_unavailable_try_again) << e.what();
    }
    weft::detail::runtime_fail_worker_starts_from(-1);
    weft::runtime ok(weft::runtime_options{.workers = 4});
    EXPECT_EQ(ok.block_on([] { return 5; }), 5);
}

TEST(RuntimeOptions, ExplicitGuardPagesAreKept) {
    weft::runtime rt(weft::runtime_options{.workers = 1, .guard_pages = 1});
    EXPECT_EQ(rt.options().guard_pages, 1u);
    EXPECT_EQ(rt.block_on([] { return 3; }), 3);
}

TEST(RuntimeOptions, RejectsAStackSizeVariableThatWouldWrap) {
    // 2^44 MiB and 2^54 KiB + 1 KiB wrap to 1 MiB and 1 KiB in 64 bits.
    for (const char* v : {"17592186044417M", "18014398509481985K", "99999999999999999999"}) {
        scoped_env s("WEFT_STACK_SIZE", v);
        try {
            weft::runtime rt(weft::runtime_options{.workers = 1});
            ADD_FAILURE() << "WEFT_STACK_SIZE=" << v << " gave " << rt.options().stack_size << " bytes";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find("WEFT_STACK_SIZE"), std::string::npos) << e.what();
        }
    }
}

TEST(RuntimeOptions, AcceptsTheLimits) {
    {
        weft::runtime rt(weft::runtime_options{.workers = 1, .stack_size = 16 * kib});
        EXPECT_EQ(rt.options().workers, 1u);
        EXPECT_GE(rt.options().stack_size, 16 * kib);
        EXPECT_EQ(rt.block_on([] { return 7; }), 7);
    }
    {
        // Only constructed: a 1 GiB stack is legal, but no fiber is spawned.
        weft::runtime rt(weft::runtime_options{.workers = 1, .stack_size = gib, .guard_pages = 256});
        EXPECT_EQ(rt.options().stack_size, gib);
        EXPECT_EQ(rt.options().guard_pages, 256u);
    }
}

TEST(RuntimeOptions, DefaultsAreApplied) {
    scoped_env w("WEFT_WORKERS", nullptr);
    scoped_env s("WEFT_STACK_SIZE", nullptr);
    weft::runtime rt;
    const auto& o = rt.options();
    const unsigned hc = std::thread::hardware_concurrency();
    if (hc != 0) {
        EXPECT_EQ(o.workers, hc);
    }
    EXPECT_GE(o.workers, 1u);
    EXPECT_EQ(o.stack_size, (weft_test::sanitized ? 4 : 1) * 256 * kib);
    EXPECT_EQ(o.guard_pages, std::size_t{WEFT_TEST_DEFAULT_GUARD_PAGES});  // the meson option guard_pages
    EXPECT_EQ(o.name, "weft");
    EXPECT_EQ(rt.stats().workers, o.workers);
}

TEST(RuntimeOptions, EnvironmentOverridesDefaults) {
    scoped_env w("WEFT_WORKERS", "3");
    scoped_env s("WEFT_STACK_SIZE", "64K");
    weft::runtime rt;
    EXPECT_EQ(rt.options().workers, 3u);
    EXPECT_EQ(rt.options().stack_size, 64 * kib);
    EXPECT_EQ(rt.stats().workers, 3u);
}

TEST(RuntimeOptions, ExplicitMemberWinsOverEnvironment) {
    scoped_env w("WEFT_WORKERS", "3");
    scoped_env s("WEFT_STACK_SIZE", "64K");
    weft::runtime rt(weft::runtime_options{.workers = 2, .stack_size = 128 * kib});
    EXPECT_EQ(rt.options().workers, 2u);
    EXPECT_EQ(rt.options().stack_size, 128 * kib);
}

TEST(RuntimeOptions, StallWarningFromTheEnvironmentCanBeTurnedOff) {
    using ms = std::chrono::milliseconds;
    const weft::runtime_options one{.workers = 1};
    {
        scoped_env e("WEFT_STALL_MS", "250");
        EXPECT_EQ(weft::runtime(one).options().stall_warning, ms(250));
    }
    for (const char* off : {"-1", "-500", "off"}) {
        scoped_env e("WEFT_STALL_MS", off);
        EXPECT_LT(weft::runtime(one).options().stall_warning.count(), 0) << off;
    }
    for (const char* bad : {"0", "soon", "10ms"}) {
        scoped_env e("WEFT_STALL_MS", bad);
        EXPECT_THROW(weft::runtime{one}, std::invalid_argument) << bad;
    }
}

TEST(RuntimeOptions, UnparsableEnvironmentThrows) {
    {
        scoped_env w("WEFT_WORKERS", "many");
        EXPECT_THROW(weft::runtime{}, std::invalid_argument);
    }
    {
        scoped_env s("WEFT_STACK_SIZE", "12Q");
        EXPECT_THROW(weft::runtime(weft::runtime_options{.workers = 1}), std::invalid_argument);
    }
}

// --- block_on and current() -----------------------------------------------

TEST_P(RuntimeTest, BlockOnReturnsTheValue) {
    EXPECT_EQ(rt.block_on([] { return 42; }), 42);
    EXPECT_EQ(rt.block_on([](int a, int b) { return a * b; }, 6, 7), 42);
    EXPECT_EQ(rt.block_on([] { return std::string("fiber"); }), "fiber");
}

TEST_P(RuntimeTest, BlockOnRethrowsTheException) {
    try {
        rt.block_on([]() -> int { throw custom_error("from the fiber"); });
        FAIL() << "block_on did not rethrow";
    } catch (const custom_error& e) {
        EXPECT_STREQ(e.what(), "from the fiber");
    }
}

TEST_P(RuntimeTest, BlockOnFromAFiberNests) {
    EXPECT_EQ(rt.block_on([&] { return rt.block_on([] { return 2; }) + 1; }), 3);
}

TEST(Runtime, CurrentIsNullOnAPlainThread) {
    EXPECT_EQ(weft::runtime::current(), nullptr);
    EXPECT_FALSE(weft::this_fiber::in_fiber());
}

TEST_P(RuntimeTest, CurrentIsTheRuntimeInsideItsFibers) {
    EXPECT_EQ(rt.block_on([] { return weft::runtime::current(); }), &rt);
    EXPECT_TRUE(rt.block_on([] { return weft::this_fiber::in_fiber(); }));
    // A grandchild spawned with the free function lands on the same runtime.
    auto* inner = rt.block_on([] { return weft::spawn([] { return weft::runtime::current(); }).join(); });
    EXPECT_EQ(inner, &rt);
    EXPECT_EQ(weft::runtime::current(), nullptr);
}

TEST(Runtime, DefaultRuntimeServesPlainThreads) {
    weft::runtime& d = weft::default_runtime();
    EXPECT_EQ(&d, &weft::default_runtime());
    EXPECT_GE(d.stats().workers, 1u);
    EXPECT_EQ(weft::spawn([] { return weft::runtime::current(); }).join(), &d);
}

// --- shutdown ---------------------------------------------------------------

TEST_P(RuntimeTest, SpawnAfterShutdownThrowsRuntimeShutDown) {
    rt.shutdown();
    try {
        rt.spawn([] { return 1; });
        FAIL() << "spawn after shutdown did not throw";
    } catch (const weft::fiber_error& e) {
        EXPECT_EQ(e.code(), weft::errc::runtime_shut_down) << e.what();
    }
}

TEST_P(RuntimeTest, BlockOnAfterShutdownThrowsRuntimeShutDown) {
    rt.shutdown();
    try {
        rt.block_on([] { return 1; });
        FAIL() << "block_on after shutdown did not throw";
    } catch (const weft::fiber_error& e) {
        EXPECT_EQ(e.code(), weft::errc::runtime_shut_down) << e.what();
    }
}

TEST_P(RuntimeTest, ShutdownIsIdempotent) {
    EXPECT_EQ(rt.block_on([] { return 1; }), 1);
    rt.shutdown();
    rt.shutdown();
    EXPECT_EQ(rt.stats().fibers_alive, 0u);
}

TEST(RuntimeShutdown, ReturnsWithThousandsOfFibersStillQueued) {
    const std::size_t n = scaled(10000);
    weft::runtime rt(weft::runtime_options{.workers = 1});
    std::atomic<std::size_t> ran{0};
    const auto spawned_before = rt.stats().spawned;
    rt.block_on([&] {
        for (std::size_t i = 0; i < n; ++i)
            weft::spawn([&ran] { ran.fetch_add(1, std::memory_order_relaxed); });  // handle dropped: detached
    });
    rt.shutdown();
    const auto s = rt.stats();
    EXPECT_EQ(s.fibers_alive, 0u);
    EXPECT_EQ(s.spawned - spawned_before, n + 1);  // n children and the block_on fiber
    EXPECT_LE(ran.load(), n);
}

TEST(RuntimeShutdown, JoinOfNeverStartedFiberThrowsOperationCancelled) {
    weft::runtime rt(weft::runtime_options{.workers = 1});
    std::atomic<bool> release{false};
    std::atomic<bool> victim_spawned{false};
    std::atomic<bool> victim_ran{false};
    weft::join_handle<int> victim;

    auto blocker = rt.spawn([&] {
        victim = weft::spawn([&] {
            victim_ran.store(true);
            return 1;
        });
        victim_spawned.store(true, std::memory_order_release);
        // Hold the only worker without yielding, so the victim stays queued
        // until shutdown has cancelled it. Bounded in case of a bug.
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (!release.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < deadline) {
        }
    });
    ASSERT_TRUE(eventually([&] { return victim_spawned.load(std::memory_order_acquire); }));

    std::thread stopper([&] { rt.shutdown(); });
    // Shutdown has begun once spawns are refused.
    const bool refusing = eventually([&] {
        try {
            rt.spawn([] {}).detach();
            return false;
        } catch (const weft::fiber_error& e) {
            return e.code() == weft::errc::runtime_shut_down;
        }
    });
    EXPECT_TRUE(refusing);
    // Give shutdown time to mark the queued fibers (not a speed assertion:
    // shutdown cannot finish before the blocker is released anyway).
    std::this_thread::sleep_for(100ms);
    release.store(true, std::memory_order_release);
    stopper.join();

    EXPECT_THROW(victim.join(), weft::operation_cancelled);
    EXPECT_FALSE(victim_ran.load());
    EXPECT_NO_THROW(blocker.join());  // it was running, so it finished normally
    EXPECT_EQ(rt.stats().fibers_alive, 0u);
}

TEST_P(RuntimeTest, ShutdownWakesFibersParkedForever) {
    // Two fibers join each other: both park and nothing will ever wake them
    // but shutdown's cancellation.
    weft::join_handle<void> a;
    weft::join_handle<void> b;
    std::atomic<bool> ready{false};
    std::atomic<int> cancelled{0};
    auto body = [&](weft::join_handle<void>* other) {
        if (!yield_until([&] { return ready.load(std::memory_order_acquire); })) return;
        try {
            other->join();
        } catch (const weft::operation_cancelled&) {
            cancelled.fetch_add(1);
        }
    };
    a = rt.spawn(body, &b);
    b = rt.spawn(body, &a);
    ready.store(true, std::memory_order_release);
    ASSERT_TRUE(eventually([&] { return rt.stats().fibers_parked >= 2; })) << rt.dump_json();

    std::atomic<bool> returned{false};
    std::thread stopper([&] {
        rt.shutdown();
        returned.store(true);
    });
    // Bounded so that a hang fails the test instead of the whole executable.
    const bool prompt = eventually([&] { return returned.load(); }, 10s);
    if (!prompt) {
        ADD_FAILURE() << "shutdown() did not return within 10 s; dump: " << rt.dump_json();
        stopper.detach();  // cannot recover; the process is in a broken state
        std::abort();
    }
    stopper.join();
    // At least the first one the sweep reaches is cancelled; the other is either
    // cancelled too or woken because its target finished, whichever claims its
    // wake-up first (exactly once, fiber.hpp F3): both outcomes are correct.
    EXPECT_GE(cancelled.load(), 1);
    EXPECT_LE(cancelled.load(), 2);
    EXPECT_EQ(rt.stats().fibers_alive, 0u);
}

// --- the workers' signal stacks ---------------------------------------------

// The stack-overflow report runs on each worker's alternate signal stack; it
// has a guard page below it, as every fiber stack has, so a handler that runs
// past its bottom faults instead of writing over the mapping below.
TEST_P(RuntimeTest, WorkersSignalStackHasAGuardPageBelowIt) {
    const std::uintptr_t bottom = rt.block_on([] {
        stack_t ss{};
        if (::sigaltstack(nullptr, &ss) != 0 || (ss.ss_flags & SS_DISABLE)) return std::uintptr_t{0};
        return reinterpret_cast<std::uintptr_t>(ss.ss_sp);
    });
    ASSERT_NE(bottom, 0u) << "the worker has no alternate signal stack";
    std::ifstream maps("/proc/self/maps");
    std::string line;
    bool guarded = false;
    while (std::getline(maps, line)) {
        unsigned long long from = 0, to = 0;
        char perms[5] = {};
        if (std::sscanf(line.c_str(), "%llx-%llx %4s", &from, &to, perms) != 3) continue;
        if (to == bottom) guarded = std::string(perms, 3) == "---";
    }
    EXPECT_TRUE(guarded) << "no inaccessible mapping ends at the signal stack's bottom " << std::hex << bottom;
}

// --- stats() and dump_json() -----------------------------------------------

TEST_P(RuntimeTest, StatsDescribeTheWorkers) {
    const auto s = rt.stats();
    EXPECT_EQ(s.workers, workers());
    EXPECT_EQ(s.queue_depth.size(), workers());
    EXPECT_TRUE(s.guard_mode == "madvise" || s.guard_mode == "mprotect") << "guard_mode = '" << s.guard_mode << "'";
    EXPECT_EQ(s.fibers_alive, 0u);
    EXPECT_EQ(rt.options().workers, workers());
}

TEST_P(RuntimeTest, StatsCountSpawnedFibers) {
    constexpr int n = 100;
    const auto before = rt.stats();
    std::vector<weft::join_handle<int>> hs;
    for (int i = 0; i < n; ++i) hs.push_back(rt.spawn([i] { return i; }));
    int sum = 0;
    for (auto& h : hs) sum += h.join();
    EXPECT_EQ(sum, n * (n - 1) / 2);
    const auto after = rt.stats();
    EXPECT_EQ(after.spawned - before.spawned, static_cast<std::uint64_t>(n));
    EXPECT_GE(after.switches - before.switches, static_cast<std::uint64_t>(n));
}

TEST_P(RuntimeTest, StatsCountParkedFibers) {
    std::atomic<bool> go{false};
    auto joiner = rt.spawn([&] {
        auto child = weft::spawn([&] { return yield_until([&] { return go.load(); }); });
        return child.join();  // parks until the child returns
    });
    EXPECT_TRUE(eventually([&] { return rt.stats().fibers_parked >= 1; }));
    const auto s = rt.stats();
    EXPECT_GE(s.fibers_alive, 2u);
    EXPECT_GE(s.parks, 1u);
    EXPECT_GE(s.stacks_mapped, 2u);  // both live fibers own a stack
    go.store(true);
    EXPECT_TRUE(joiner.join());
    EXPECT_TRUE(eventually([&] { return rt.stats().fibers_parked == 0; }));
}

TEST_P(RuntimeTest, DumpJsonListsParkedFibers) {
    std::atomic<bool> go{false};
    std::atomic<bool> named{false};
    auto parked = rt.spawn([&] {
        weft::this_fiber::set_name("parkedfiber");
        named.store(true);
        return weft::spawn([&] { return yield_until([&] { return go.load(); }); }).join();  // parks here
    });
    ASSERT_TRUE(eventually([&] { return named.load() && rt.stats().fibers_parked >= 1; }));
    const std::string live = rt.dump_json();
    ASSERT_FALSE(live.empty());
    EXPECT_EQ(live.front(), '[');
    EXPECT_NE(live.find("parkedfiber"), std::string::npos) << live;
    go.store(true);
    EXPECT_TRUE(parked.join());

    const std::string idle = rt.dump_json();
    ASSERT_FALSE(idle.empty());
    EXPECT_EQ(idle.front(), '[');
    EXPECT_EQ(idle.find("parkedfiber"), std::string::npos) << idle;
}

TEST_P(RuntimeTest, DumpJsonListsYieldingFibers) {
    // dump_json() lists the fibers that have been suspended at least once
    // (runtime.hpp), so the fiber yields before it reports in.
    std::atomic<bool> go{false};
    std::atomic<bool> named{false};
    auto h = rt.spawn([&] {
        weft::this_fiber::set_name("yielder");
        weft::this_fiber::yield();
        named.store(true);
        yield_until([&] { return go.load(); });
    });
    ASSERT_TRUE(eventually([&] { return named.load(); }));
    const std::string live = rt.dump_json();
    ASSERT_FALSE(live.empty());
    EXPECT_EQ(live.front(), '[');
    EXPECT_NE(live.find("yielder"), std::string::npos) << live;
    go.store(true);
    h.join();
    EXPECT_EQ(rt.dump_json().find("yielder"), std::string::npos);
}

TEST_P(RuntimeTest, DumpJsonIsValidUtf8WhateverTheNames) {
    // A name is bytes; JSON text is Unicode. A Latin-1 name made the whole dump
    // unparsable (found by review); now each stray byte is U+FFFD, and
    // well-formed UTF-8, quotes, backslashes and control characters survive.
    std::atomic<bool> go{false};
    std::atomic<int> named{0};
    std::vector<weft::join_handle<void>> hs;
    for (const char* name : {"caf\xe9", "\xe2\x82", "\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82", "q\"b\\c\x01\x7f",
                             "\xed\xa0\x80", "\xc0\xaf"}) {
        hs.push_back(rt.spawn([&, name] {
            weft::this_fiber::set_name(name);
            weft::this_fiber::yield();
            named.fetch_add(1);
            yield_until([&] { return go.load(); });
        }));
    }
    ASSERT_TRUE(eventually([&] { return named.load() == 6; }));
    const std::string dump = rt.dump_json();
    go.store(true);
    for (auto& h : hs) h.join();
    EXPECT_NE(dump.find("\"caf\\ufffd\""), std::string::npos) << dump;
    EXPECT_NE(dump.find("\"\\ufffd\\ufffd\""), std::string::npos) << dump;  // a cut-off sequence: each byte
    EXPECT_NE(dump.find("\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82"), std::string::npos) << dump;
    EXPECT_NE(dump.find("q\\\"b\\\\c\\u0001\\u007f"), std::string::npos) << dump;
    EXPECT_NE(dump.find("\"\\ufffd\\ufffd\\ufffd\""), std::string::npos) << dump;  // a surrogate, encoded
    // Every byte of the dump is ASCII or part of well-formed UTF-8.
    for (std::size_t i = 0; i < dump.size();) {
        const auto c = static_cast<unsigned char>(dump[i]);
        const std::size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
        ASSERT_NE(n, 0u) << "byte " << i << " of " << dump;
        for (std::size_t k = 1; k < n; ++k) ASSERT_EQ(static_cast<unsigned char>(dump[i + k]) & 0xc0, 0x80) << i;
        i += n;
    }
}

// std::thread::join cannot be interrupted, and neither can weft::thread's: a
// join that shutdown() cancelled threw, left the thread joinable, and the
// unwinding (~thread, ~jthread) terminated the process (found by review).
// sleep_for(0) is a cancellation point like any sleep_for: a cancelled fiber
// looping on it held shutdown() up for ever (found by review).
TEST(RuntimeShutdown, AFiberLoopingOnSleepForZeroIsCancelled) {
    weft::runtime rt(weft::runtime_options{.workers = 2, .stall_warning = std::chrono::milliseconds(-1)});
    std::atomic<bool> looping{false};
    std::atomic<bool> threw{false};
    rt.spawn([&] {
        try {
            for (;;) {
                looping.store(true);
                weft::this_fiber::sleep_for(std::chrono::microseconds(0));
            }
        } catch (const weft::operation_cancelled&) {
            threw.store(true);
        }
    }).detach();
    ASSERT_TRUE(eventually([&] { return looping.load(); }));
    std::atomic<bool> returned{false};
    std::thread stopper([&] {
        rt.shutdown();
        returned.store(true);
    });
    const bool in_time = eventually([&] { return returned.load(); });  // bounded: a hang fails here
    if (!in_time) {
        ADD_FAILURE() << "shutdown() did not return";
        std::_Exit(1);  // the fiber never stops: nothing else can be checked
    }
    stopper.join();
    EXPECT_TRUE(threw.load());
}

TEST(RuntimeShutdown, AFiberJoiningAThreadIsNotLeftWithAJoinableThread) {
    for (const bool computing : {true, false}) {
        weft::runtime rt(weft::runtime_options{.workers = 2, .stall_warning = std::chrono::milliseconds(-1)});
        std::atomic<bool> joined{false};
        std::atomic<bool> joining{false};
        weft::channel<int> never;
        rt.spawn([&, computing] {
            {
                weft::jthread j([&, computing] {
                    if (computing) {
                        const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
                        while (std::chrono::steady_clock::now() < end) {
                        }
                    } else {
                        (void)never.recv();  // parked: cancelled by shutdown
                    }
                });
                weft::thread t([] { weft::this_fiber::yield(); });
                joining.store(true);
                t.join();
                EXPECT_FALSE(t.joinable());
            }  // ~jthread joins
            joined.store(true);
        }).detach();
        ASSERT_TRUE(eventually([&] { return joining.load(); }));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        rt.shutdown();  // terminated before
        EXPECT_TRUE(joined.load() || !computing) << "computing: the joins ran to their end";
    }
}

// --- error types ------------------------------------------------------------

TEST(ErrorCategory, NameIsWeftAndMessagesAreNonEmpty) {
    EXPECT_STREQ(weft::weft_category().name(), "weft");
    for (auto e : {weft::errc::operation_cancelled, weft::errc::runtime_shut_down, weft::errc::not_in_runtime}) {
        std::error_code ec = e;  // is_error_code_enum makes this implicit
        EXPECT_EQ(&ec.category(), &weft::weft_category());
        EXPECT_FALSE(ec.message().empty());
    }
}

TEST(ErrorCategory, OperationCancelledIsAFiberError) {
    const weft::operation_cancelled e;
    EXPECT_EQ(e.code(), weft::errc::operation_cancelled);
    const weft::fiber_error& as_fiber_error = e;
    const std::system_error& as_system_error = as_fiber_error;
    EXPECT_EQ(as_system_error.code(), weft::errc::operation_cancelled);
}
