// spawn() and join_handle<R>: values and exceptions through join, handle
// semantics, many fibers, nested spawns, spawns from several threads.
// Public API only (weft_dep).
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

using weft_test::eventually;
using weft_test::scaled;
using weft_test::yield_until;

namespace {

struct custom_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

int fib(int n) {
    if (n < 2) return n;
    auto left = weft::spawn(fib, n - 1);
    const int right = fib(n - 2);
    return left.join() + right;
}

/// Size of a tree of fibers in which each node spawns `fanout` children.
std::int64_t tree_size(int depth, int fanout) {
    if (depth == 0) return 1;
    std::vector<weft::join_handle<std::int64_t>> children;
    children.reserve(fanout);
    for (int i = 0; i < fanout; ++i) children.push_back(weft::spawn(tree_size, depth - 1, fanout));
    std::int64_t total = 1;
    for (auto& c : children) total += c.join();
    return total;
}

template <class R>
void expect_invalid_argument(weft::join_handle<R>& h, bool join) {
    try {
        if (join)
            h.join();
        else
            h.detach();
        ADD_FAILURE() << (join ? "join" : "detach") << " of a non-joinable handle did not throw";
    } catch (const weft::fiber_error& e) {
        EXPECT_EQ(e.code(), std::errc::invalid_argument) << e.what();
    }
}

}  // namespace

// --- values and exceptions through join -----------------------------------

TEST_P(RuntimeTest, SpawnAndJoinAHundredThousandFibers) {
    const std::int64_t n = static_cast<std::int64_t>(scaled(100000));
    const std::int64_t sum = rt.block_on([n] {
        std::vector<weft::join_handle<std::int64_t>> hs;
        hs.reserve(static_cast<std::size_t>(n));
        for (std::int64_t i = 0; i < n; ++i) hs.push_back(weft::spawn([i] { return i; }));
        std::int64_t s = 0;
        for (auto& h : hs) s += h.join();
        return s;
    });
    EXPECT_EQ(sum, n * (n - 1) / 2);
}

TEST_P(RuntimeTest, JoinReturnsValues) {
    auto i = rt.spawn([] { return 7; });
    auto s = rt.spawn([] { return std::string(100, 'x'); });
    auto v = rt.spawn([] { return std::vector<int>{1, 2, 3}; });
    EXPECT_EQ(i.join(), 7);
    EXPECT_EQ(s.join(), std::string(100, 'x'));
    EXPECT_EQ(v.join(), (std::vector<int>{1, 2, 3}));
}

TEST_P(RuntimeTest, JoinReturnsMoveOnlyValues) {
    auto h = rt.spawn([] { return std::make_unique<int>(42); });
    std::unique_ptr<int> p = h.join();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 42);
}

TEST_P(RuntimeTest, JoinOfAVoidFiberWaitsForIt) {
    std::atomic<bool> done{false};
    auto h = rt.spawn([&] {
        weft::this_fiber::yield();
        done.store(true);
    });
    static_assert(std::is_same_v<decltype(h), weft::join_handle<void>>);
    h.join();
    EXPECT_TRUE(done.load());
}

TEST_P(RuntimeTest, JoinRethrowsTheFibersException) {
    auto h = rt.spawn([]() -> int { throw custom_error("bad fiber"); });
    try {
        h.join();
        FAIL() << "join did not rethrow";
    } catch (const custom_error& e) {
        EXPECT_STREQ(e.what(), "bad fiber");
    }
    EXPECT_FALSE(h.joinable());
}

TEST_P(RuntimeTest, JoinRethrowsExceptionOfAVoidFiberIntoAFiber) {
    const bool caught = rt.block_on([] {
        auto h = weft::spawn([] { throw custom_error("void fiber"); });
        try {
            h.join();
        } catch (const custom_error&) {
            return true;
        }
        return false;
    });
    EXPECT_TRUE(caught);
}

TEST_P(RuntimeTest, SpawnPassesArgumentsLikeStdThread) {
    int target = 0;
    rt.spawn([](int& out, int v) { out = v; }, std::ref(target), 5).join();
    EXPECT_EQ(target, 5);  // std::ref passes a reference
    EXPECT_EQ(rt.spawn([](std::unique_ptr<int> p) { return *p; }, std::make_unique<int>(9)).join(), 9);
    std::string s = "copied";
    auto h = rt.spawn([](std::string copy) { return copy + "!"; }, s);
    EXPECT_EQ(h.join(), "copied!");
    EXPECT_EQ(s, "copied");
}

// --- join_handle semantics --------------------------------------------------

TEST(JoinHandle, DefaultConstructedIsNotJoinable) {
    weft::join_handle<int> h;
    EXPECT_FALSE(h.joinable());
    EXPECT_FALSE(h.is_finished());
    EXPECT_EQ(h.id(), weft::fiber_id{});
    expect_invalid_argument(h, true);
    expect_invalid_argument(h, false);
}

TEST_P(RuntimeTest, JoinHandleIsJoinableUntilJoined) {
    auto h = rt.spawn([] { return 1; });
    EXPECT_TRUE(h.joinable());
    EXPECT_NE(h.id(), weft::fiber_id{});
    EXPECT_EQ(h.join(), 1);
    EXPECT_FALSE(h.joinable());
    EXPECT_EQ(h.id(), weft::fiber_id{});
}

TEST_P(RuntimeTest, JoinHandleJoinTwiceThrowsInvalidArgument) {
    auto h = rt.spawn([] { return 1; });
    EXPECT_EQ(h.join(), 1);
    expect_invalid_argument(h, true);
}

TEST_P(RuntimeTest, JoinHandleDetachLetsTheFiberFinish) {
    std::atomic<bool> go{false};
    std::atomic<bool> done{false};
    auto h = rt.spawn([&] {
        yield_until([&] { return go.load(); });
        done.store(true);
    });
    h.detach();
    EXPECT_FALSE(h.joinable());
    EXPECT_EQ(h.id(), weft::fiber_id{});
    EXPECT_FALSE(h.is_finished());
    expect_invalid_argument(h, false);  // detach twice
    expect_invalid_argument(h, true);   // join after detach
    go.store(true);
    EXPECT_TRUE(eventually([&] { return done.load(); }));
}

TEST_P(RuntimeTest, JoinHandleIsFinishedOnceTheFunctionReturned) {
    std::atomic<bool> go{false};
    auto h = rt.spawn([&] {
        yield_until([&] { return go.load(); });
        return 3;
    });
    EXPECT_FALSE(h.is_finished());  // cannot have returned: go is still false
    go.store(true);
    EXPECT_TRUE(eventually([&] { return h.is_finished(); }));
    EXPECT_TRUE(h.joinable());  // finished but not joined
    EXPECT_EQ(h.join(), 3);
    EXPECT_FALSE(h.is_finished());  // not joinable any more
}

TEST_P(RuntimeTest, JoinHandleIdIsTheFibersId) {
    auto h = rt.spawn([] { return weft::this_fiber::get_id(); });
    const weft::fiber_id id = h.id();
    EXPECT_NE(id, weft::fiber_id{});
    EXPECT_EQ(h.join(), id);
}

TEST_P(RuntimeTest, JoinHandleDestructorDetachesWithoutTerminating) {
    std::atomic<bool> go{false};
    std::atomic<bool> done{false};
    {
        auto h = rt.spawn([&] {
            yield_until([&] { return go.load(); });
            done.store(true);
        });
        ASSERT_TRUE(h.joinable());
    }  // destroyed while the fiber still runs
    go.store(true);
    EXPECT_TRUE(eventually([&] { return done.load(); }));
}

TEST_P(RuntimeTest, JoinHandleMoveTransfersOwnership) {
    auto a = rt.spawn([] { return 5; });
    const auto id = a.id();
    weft::join_handle<int> b(std::move(a));
    EXPECT_FALSE(a.joinable());  // NOLINT(bugprone-use-after-move): checking the moved-from state
    EXPECT_TRUE(b.joinable());
    EXPECT_EQ(b.id(), id);
    weft::join_handle<int> c;
    c = std::move(b);
    EXPECT_FALSE(b.joinable());  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(c.id(), id);
    EXPECT_EQ(c.join(), 5);
}

TEST_P(RuntimeTest, JoinHandleMoveAssignOverJoinableDetaches) {
    std::atomic<bool> go{false};
    std::atomic<bool> first_done{false};
    auto h = rt.spawn([&] {
        yield_until([&] { return go.load(); });
        first_done.store(true);
        return 1;
    });
    h = rt.spawn([] { return 2; });  // the first fiber is detached, not terminated
    EXPECT_EQ(h.join(), 2);
    go.store(true);
    EXPECT_TRUE(eventually([&] { return first_done.load(); }));
}

TEST_P(RuntimeTest, JoinHandleSelfJoinThrowsResourceDeadlock) {
    // The fiber receives a pointer to its own handle once the handle exists.
    // join_handle is fiber-safe, not thread-safe: the test joins it only
    // after the fiber's own join() call has returned.
    std::atomic<weft::join_handle<int>*> self{nullptr};
    std::atomic<int> outcome{-1};  // -1 timed out, 0 join returned, 1 deadlock error, 2 other code
    auto h = rt.spawn([&]() -> int {
        if (!yield_until([&] { return self.load(std::memory_order_acquire) != nullptr; })) return -1;
        int result = 0;
        try {
            self.load(std::memory_order_acquire)->join();
        } catch (const weft::fiber_error& e) {
            result = e.code() == std::errc::resource_deadlock_would_occur ? 1 : 2;
        }
        outcome.store(result, std::memory_order_release);
        return result;
    });
    self.store(&h, std::memory_order_release);
    ASSERT_TRUE(eventually([&] { return outcome.load(std::memory_order_acquire) != -1; }));
    EXPECT_EQ(outcome.load(), 1);
    EXPECT_TRUE(h.joinable()) << "a failed self-join must leave the handle joinable";
    EXPECT_EQ(h.join(), 1);
}

// --- many fibers, nesting, several spawning threads -------------------------

TEST_P(RuntimeTest, NestedSpawnsComputeFibonacci) {
    EXPECT_EQ(rt.block_on(fib, 18), 2584);  // spawns fib(19) - 1 = 4180 fibers
}

TEST_P(RuntimeTest, TreeOfFibersSpawningAndJoiningChildren) {
    // A 10-ary tree of depth 4 (11111 fibers); depth 3 (1111) under TSan.
    const int depth = weft_test::thread_sanitized ? 3 : 4;
    const std::int64_t expected = depth == 4 ? 11111 : 1111;
    EXPECT_EQ(rt.block_on(tree_size, depth, 10), expected);
}

TEST_P(RuntimeTest, SpawnsFromSeveralPlainThreadsAtOnce) {
    constexpr int threads = 4;
    const int per_thread = static_cast<int>(scaled(10000));
    std::atomic<int> ran{0};
    std::vector<std::int64_t> sums(threads, -1);
    std::atomic<int> ready{0};
    std::vector<std::thread> spawners;
    for (int t = 0; t < threads; ++t) {
        spawners.emplace_back([&, t] {
            ready.fetch_add(1);
            while (ready.load() < threads) std::this_thread::yield();  // start together
            std::vector<weft::join_handle<int>> hs;
            hs.reserve(static_cast<std::size_t>(per_thread));
            for (int i = 0; i < per_thread; ++i)
                hs.push_back(rt.spawn([&ran, i] {
                    ran.fetch_add(1, std::memory_order_relaxed);
                    return i;
                }));
            std::int64_t s = 0;
            for (auto& h : hs) s += h.join();
            sums[static_cast<std::size_t>(t)] = s;
        });
    }
    for (auto& s : spawners) s.join();
    EXPECT_EQ(ran.load(), threads * per_thread);
    const std::int64_t expected = std::int64_t{per_thread} * (per_thread - 1) / 2;
    for (int t = 0; t < threads; ++t) EXPECT_EQ(sums[static_cast<std::size_t>(t)], expected) << "thread " << t;
}

TEST(FreeSpawn, UsesTheDefaultRuntimeOnAPlainThread) {
    auto h = weft::spawn([] { return weft::runtime::current(); });
    EXPECT_EQ(h.join(), &weft::default_runtime());
}

TEST(JoinHandle, JoinReturnsAReferenceResult) {
    weft::runtime rt(weft::runtime_options{.workers = 1});
    int target = 1;
    int& got = rt.block_on([&]() -> int& { return target; });
    got = 42;
    EXPECT_EQ(target, 42);  // the same object, not a copy
    EXPECT_EQ(&got, &target);
}
