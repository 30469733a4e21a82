// weft::once_flag and weft::call_once: concurrent callers (fibers, threads
// and both) run the callable exactly once and all see its effects; a
// throwing first call leaves the flag unset and a second caller runs its own
// callable (sequentially, and with callers parked meanwhile); arguments are
// forwarded (references, member functions); a recursive call throws
// resource_deadlock_would_occur; a fiber waiting for a running initializer is
// not cancelled by shutdown. Public API only (weft_dep).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>

#include <gtest/gtest.h>
#include <weft/call_once.hpp>
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

namespace {

struct widget {
    int value = 0;
    void set(int v) { value = v; }
};

}  // namespace

static_assert(std::is_nothrow_default_constructible_v<weft::once_flag>);
static_assert(!std::is_copy_constructible_v<weft::once_flag> && !std::is_move_constructible_v<weft::once_flag>);

constinit weft::once_flag global_flag;

TEST_P(RuntimeTest, CallOnceRunsExactlyOnceForConcurrentCallers) {
    const int callers = static_cast<int>(std::max<std::size_t>(scaled(100), 12));
    const int rounds = 20;
    for (shape s : all_shapes) {
        SCOPED_TRACE(name_of(s));
        for (int r = 0; r < rounds; ++r) {
            weft::once_flag flag;
            std::atomic<int> runs{0};
            int value = 0;  // plain: call_once must publish it to every caller
            std::atomic<int> wrong{0};
            run_on(rt, s, callers, [&](int) {
                weft::call_once(flag, [&] {
                    runs.fetch_add(1);
                    // Hold the others off for a moment in some rounds, so that they park.
                    if (r % 4 == 0) weft::this_fiber::sleep_for(1ms);
                    else if (r % 4 == 1) weft::this_fiber::yield();
                    value = 42;
                });
                if (value != 42) wrong.fetch_add(1);
            });
            EXPECT_EQ(runs.load(), 1) << "round " << r;
            EXPECT_EQ(wrong.load(), 0) << "a caller returned before the callable's effects were visible";
        }
    }
}

TEST(CallOnce, ThrowingCallLeavesTheFlagUnsetAndTheNextCallerRuns) {
    weft::once_flag flag;
    int attempts = 0;
    EXPECT_THROW(weft::call_once(flag,
                                 [&] {
                                     ++attempts;
                                     throw std::runtime_error("first");
                                 }),
                 std::runtime_error);
    EXPECT_THROW(weft::call_once(flag,
                                 [&] {
                                     ++attempts;
                                     throw std::runtime_error("second");
                                 }),
                 std::runtime_error);
    bool third_ran = false;
    weft::call_once(flag, [&] {
        ++attempts;
        third_ran = true;
    });
    EXPECT_TRUE(third_ran);
    weft::call_once(flag, [&] { ++attempts; });
    EXPECT_EQ(attempts, 3);
}

TEST_P(RuntimeTest, CallOnceThrowingRunnerHandsOverToAWaitingCaller) {
    // The first runner throws after the others have had time to find it
    // running (and park); exactly one of them then runs, and only one
    // caller sees the exception.
    const int callers = 8;
    for (shape s : all_shapes) {
        SCOPED_TRACE(name_of(s));
        weft::once_flag flag;
        std::atomic<int> attempts{0};
        std::atomic<int> threw{0};
        std::atomic<int> entered{0};
        int value = 0;
        std::atomic<int> wrong{0};
        run_on(rt, s, callers, [&](int) {
            entered.fetch_add(1);
            try {
                weft::call_once(flag, [&] {
                    if (attempts.fetch_add(1) == 0) {
                        // Wait (bounded) until every caller has at least reached call_once.
                        weft_test::yield_until([&] { return entered.load() == callers; });
                        weft::this_fiber::sleep_for(10ms);
                        throw std::runtime_error("first attempt fails");
                    }
                    value = 7;
                });
                if (value != 7) wrong.fetch_add(1);
            } catch (const std::runtime_error&) {
                threw.fetch_add(1);
            }
        });
        EXPECT_EQ(attempts.load(), 2);
        EXPECT_EQ(threw.load(), 1);
        EXPECT_EQ(wrong.load(), 0);
    }
}

TEST(CallOnce, ForwardsArgumentsAndInvokesMemberFunctions) {
    weft::once_flag f1;
    int x = 0;
    weft::call_once(
        f1, [](int& out, std::string s, std::unique_ptr<int> p) { out = *p + static_cast<int>(s.size()); },
        std::ref(x), "ab", std::make_unique<int>(5));
    EXPECT_EQ(x, 7);

    weft::once_flag f2;
    widget w;
    weft::call_once(f2, &widget::set, &w, 9);
    EXPECT_EQ(w.value, 9);
    weft::call_once(f2, &widget::set, &w, 10);
    EXPECT_EQ(w.value, 9);

    int g = 0;
    weft::call_once(global_flag, [&] { ++g; });
    weft::call_once(global_flag, [&] { ++g; });
    EXPECT_EQ(g, 1);
}

TEST_P(RuntimeTest, CallOnceRecursiveCallThrowsDeadlockError) {
    auto check = [] {
        weft::once_flag flag;
        try {
            weft::call_once(flag, [&] { weft::call_once(flag, [] {}); });
            ADD_FAILURE() << "a recursive call_once returned";
        } catch (const std::system_error& e) {
            EXPECT_EQ(e.code(), std::errc::resource_deadlock_would_occur) << e.what();
        }
        bool ran = false;
        weft::call_once(flag, [&] { ran = true; });  // the failed run left the flag unset
        EXPECT_TRUE(ran);
    };
    rt.block_on(check);
    check();
}

TEST_P(RuntimeTest, CallOnceWaiterIsNotCancelledAtShutdown) {
    // A plain thread runs a slow initializer; a fiber of a separate runtime
    // waits for it. Shutdown of that runtime does not cancel the wait (it is
    // "a lock"): shutdown waits, and the fiber returns normally once the
    // initializer is done, seeing its effects.
    weft::runtime other(weft::runtime_options{.workers = GetParam()});
    weft::once_flag flag;
    std::atomic<bool> running{false};
    std::atomic<bool> finish{false};
    int value = 0;
    std::thread initializer([&] {
        weft::call_once(flag, [&] {
            running.store(true);
            // Bounded, in case the test fails before releasing it.
            (void)eventually([&] { return finish.load(); }, 20s);
            value = 1;
        });
    });
    ASSERT_TRUE(eventually([&] { return running.load(); }));
    std::atomic<int> outcome{0};  // 1: returned and saw the value, 2: cancelled, 3: returned without the value
    auto waiter = other.spawn([&] {
        try {
            weft::call_once(flag, [] {});
            outcome.store(value == 1 ? 1 : 3);
        } catch (const weft::operation_cancelled&) {
            outcome.store(2);
        }
    });
    ASSERT_TRUE(eventually([&] { return other.stats().fibers_parked >= 1; })) << other.dump_json();

    std::atomic<bool> shut{false};
    std::thread stopper([&] {
        other.shutdown();
        shut.store(true);
    });
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(outcome.load(), 0) << "the waiter left call_once while the initializer ran";
    EXPECT_FALSE(shut.load()) << "shutdown finished with the waiter still inside call_once";
    finish.store(true);
    initializer.join();
    if (!eventually([&] { return shut.load(); }, 10s)) {
        ADD_FAILURE() << "shutdown() did not return within 10 s; dump: " << other.dump_json();
        stopper.detach();
        std::abort();
    }
    stopper.join();
    EXPECT_EQ(outcome.load(), 1);
    EXPECT_NO_THROW(waiter.join());
}
