// weft::thread and weft::jthread: std::thread's and std::jthread's contract on
// fibers. The terminate rules are in death/thread_death_test.cpp.
// Public API only (weft_dep).
#include <atomic>
#include <cstdint>
#include <functional>
#include <sstream>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

using weft_test::eventually;
using weft_test::yield_until;

namespace {

void expect_errc(const std::function<void()>& op, std::errc expected) {
    try {
        op();
        ADD_FAILURE() << "no exception; expected " << std::make_error_code(expected).message();
    } catch (const weft::fiber_error& e) {
        EXPECT_EQ(e.code(), expected) << e.what();
    }
}

}  // namespace

static_assert(std::is_same_v<weft::thread::id, weft::fiber_id>);
static_assert(std::is_nothrow_move_constructible_v<weft::thread>);
static_assert(std::is_nothrow_move_assignable_v<weft::thread>);
static_assert(!std::is_copy_constructible_v<weft::thread>);
static_assert(!std::is_copy_assignable_v<weft::thread>);
static_assert(!std::is_copy_constructible_v<weft::jthread>);

// --- weft::thread -----------------------------------------------------------

TEST(Thread, RunsOnTheDefaultRuntimeFromAPlainThread) {
    std::atomic<weft::runtime*> where{nullptr};
    std::atomic<bool> in_fiber{false};
    weft::thread t([&] {
        where.store(weft::runtime::current());
        in_fiber.store(weft::this_fiber::in_fiber());
    });
    t.join();
    EXPECT_EQ(where.load(), &weft::default_runtime());
    EXPECT_TRUE(in_fiber.load());
}

TEST_P(RuntimeTest, ThreadRunsOnTheCallingFibersRuntime) {
    auto* where = rt.block_on([] {
        weft::runtime* r = nullptr;
        weft::thread t([&r] { r = weft::runtime::current(); });
        t.join();  // joined from a fiber: parks it
        return r;
    });
    EXPECT_EQ(where, &rt);
}

TEST(Thread, DefaultConstructedIsNotJoinable) {
    weft::thread t;
    EXPECT_FALSE(t.joinable());
    EXPECT_EQ(t.get_id(), weft::thread::id{});
    EXPECT_EQ(t.native_handle(), nullptr);
}

TEST(Thread, PassesArgumentsByDecayCopyAndStdRef) {
    std::string s = "copy";
    int out = 0;
    weft::thread t(
        [](std::string copy, int& o) {
            copy += "!";
            o = static_cast<int>(copy.size());
        },
        s, std::ref(out));
    t.join();
    EXPECT_EQ(out, 5);
    EXPECT_EQ(s, "copy");
}

TEST(Thread, JoinableUntilJoinedAndIdResetAfterwards) {
    weft::thread t([] {});
    EXPECT_TRUE(t.joinable());
    EXPECT_NE(t.get_id(), weft::thread::id{});
    EXPECT_NE(t.native_handle(), nullptr);
    t.join();
    EXPECT_FALSE(t.joinable());
    EXPECT_EQ(t.get_id(), weft::thread::id{});
}

TEST(Thread, MoveConstructTransfersTheThread) {
    std::atomic<bool> ran{false};
    weft::thread a([&] { ran.store(true); });
    const auto id = a.get_id();
    weft::thread b(std::move(a));
    EXPECT_FALSE(a.joinable());  // NOLINT(bugprone-use-after-move): checking the moved-from state
    EXPECT_EQ(a.get_id(), weft::thread::id{});
    EXPECT_TRUE(b.joinable());
    EXPECT_EQ(b.get_id(), id);
    b.join();
    EXPECT_TRUE(ran.load());
}

TEST(Thread, MoveAssignToAnEmptyThreadTransfersIt) {
    weft::thread a([] {});
    const auto id = a.get_id();
    weft::thread b;
    b = std::move(a);
    EXPECT_FALSE(a.joinable());  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(b.get_id(), id);
    b.join();
    // Assigning over a joined (so non-joinable) thread is fine too.
    b = weft::thread([] {});
    EXPECT_TRUE(b.joinable());
    b.join();
}

TEST(Thread, DetachLetsTheFunctionFinish) {
    std::atomic<bool> go{false};
    std::atomic<bool> done{false};
    weft::thread t([&] {
        yield_until([&] { return go.load(); });
        done.store(true);
    });
    t.detach();
    EXPECT_FALSE(t.joinable());
    EXPECT_EQ(t.get_id(), weft::thread::id{});
    go.store(true);
    EXPECT_TRUE(eventually([&] { return done.load(); }));
}

TEST(Thread, SwapExchangesThreads) {
    weft::thread a([] {});
    weft::thread b([] {});
    weft::thread empty;
    const auto ida = a.get_id();
    const auto idb = b.get_id();
    a.swap(b);
    EXPECT_EQ(a.get_id(), idb);
    EXPECT_EQ(b.get_id(), ida);
    swap(a, empty);  // the free function, found by ADL
    EXPECT_FALSE(a.joinable());
    EXPECT_EQ(empty.get_id(), idb);
    std::swap(a, b);  // std::swap through the move operations
    EXPECT_EQ(a.get_id(), ida);
    EXPECT_FALSE(b.joinable());
    a.join();
    empty.join();
}

TEST(Thread, GetIdMatchesThisFiberGetIdInside) {
    std::atomic<std::uint64_t> inside{0};
    weft::thread t([&] { inside.store(weft::this_fiber::get_id().value()); });
    const auto id = t.get_id();
    t.join();
    EXPECT_EQ(weft::thread::id(inside.load()), id);
}

TEST(Thread, IdsOfLiveThreadsDiffer) {
    std::atomic<bool> go{false};
    auto wait = [&] { yield_until([&] { return go.load(); }); };
    weft::thread a(wait);
    weft::thread b(wait);
    EXPECT_NE(a.get_id(), b.get_id());
    EXPECT_NE(a.get_id(), weft::this_fiber::get_id());  // nor equal to the caller's
    const weft::thread::id copy = a.get_id();
    EXPECT_EQ(copy, a.get_id());
    go.store(true);
    a.join();
    b.join();
}

TEST(Thread, JoinOfANonJoinableThreadThrowsInvalidArgument) {
    weft::thread empty;
    expect_errc([&] { empty.join(); }, std::errc::invalid_argument);
    weft::thread joined([] {});
    joined.join();
    expect_errc([&] { joined.join(); }, std::errc::invalid_argument);
}

TEST(Thread, DetachOfANonJoinableThreadThrowsInvalidArgument) {
    weft::thread empty;
    expect_errc([&] { empty.detach(); }, std::errc::invalid_argument);
    weft::thread detached([] {});
    detached.detach();
    expect_errc([&] { detached.detach(); }, std::errc::invalid_argument);
}

TEST(Thread, SelfJoinThrowsResourceDeadlock) {
    // The fiber gets a pointer to its own weft::thread once it is constructed.
    // weft::thread is fiber-safe, not thread-safe: the test joins it only
    // after the fiber's own join() call has returned.
    std::atomic<weft::thread*> self{nullptr};
    std::atomic<int> outcome{-1};  // -1 pending, 0 join returned, 1 deadlock error, 2 other code, 3 timed out
    weft::thread t([&] {
        if (!yield_until([&] { return self.load(std::memory_order_acquire) != nullptr; })) {
            outcome.store(3);
            return;
        }
        int result = 0;
        try {
            self.load(std::memory_order_acquire)->join();
        } catch (const weft::fiber_error& e) {
            result = e.code() == std::errc::resource_deadlock_would_occur ? 1 : 2;
        }
        outcome.store(result, std::memory_order_release);
    });
    self.store(&t, std::memory_order_release);
    EXPECT_TRUE(eventually([&] { return outcome.load(std::memory_order_acquire) != -1; }));
    EXPECT_EQ(outcome.load(), 1);
    EXPECT_TRUE(t.joinable()) << "a failed self-join must leave the thread joinable";
    t.join();
}

TEST(Thread, HardwareConcurrencyMatchesStdThread) {
    EXPECT_EQ(weft::thread::hardware_concurrency(), std::thread::hardware_concurrency());
    EXPECT_EQ(weft::jthread::hardware_concurrency(), std::thread::hardware_concurrency());
}

// --- weft::jthread ----------------------------------------------------------

TEST(JThread, DestructorRequestsStopThenJoins) {
    std::atomic<bool> started{false};
    std::atomic<bool> saw_stop{false};
    {
        weft::jthread t([&](std::stop_token st) {
            started.store(true);
            saw_stop.store(yield_until([&] { return st.stop_requested(); }));
        });
        EXPECT_TRUE(t.joinable());
        ASSERT_TRUE(eventually([&] { return started.load(); }));
        EXPECT_FALSE(saw_stop.load());
    }  // ~jthread: request_stop(), then join()
    EXPECT_TRUE(saw_stop.load());
}

TEST(JThread, RequestStopIsSeenByTheFunction) {
    std::atomic<int> seen{-1};
    weft::jthread t(
        [&seen](std::stop_token st, int add) {
            seen.store(add + (yield_until([&] { return st.stop_requested(); }) ? 1 : 0));
        },
        10);
    EXPECT_TRUE(t.request_stop());
    EXPECT_FALSE(t.request_stop());  // already requested
    t.join();
    EXPECT_EQ(seen.load(), 11);
    EXPECT_TRUE(t.get_stop_token().stop_requested());
}

TEST(JThread, WorksWithAFunctionThatTakesNoStopToken) {
    std::atomic<int> value{0};
    {
        weft::jthread t([&](int v) { value.store(v); }, 11);
        EXPECT_TRUE(t.get_stop_token().stop_possible());
    }
    EXPECT_EQ(value.load(), 11);
}

TEST(JThread, DefaultConstructedHasNoStopState) {
    weft::jthread t;
    EXPECT_FALSE(t.joinable());
    EXPECT_FALSE(t.get_stop_token().stop_possible());
    EXPECT_FALSE(t.request_stop());
}

TEST(JThread, MoveAssignStopsAndJoinsThePreviousThread) {
    std::atomic<bool> first_stopped{false};
    weft::jthread t([&](std::stop_token st) { first_stopped.store(yield_until([&] { return st.stop_requested(); })); });
    t = weft::jthread([] {});  // like std::jthread: request_stop() and join() the old one first
    EXPECT_TRUE(first_stopped.load());
    EXPECT_TRUE(t.joinable());
    t.join();
}
