// ws_deque (src/sched/deque.hpp): the owner's LIFO/FIFO ends, the bounded
// capacity, and concurrent stealing (each item taken exactly once, I4).
// Internal dependency (weft_internal_dep).
#include "sched/deque.hpp"

#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "runtime_fixture.hpp"

namespace {

using deque = weft::detail::ws_deque<int>;

}  // namespace

TEST(WsDeque, StartsEmpty) {
    deque d(8);
    EXPECT_EQ(d.capacity(), 8u);
    EXPECT_EQ(d.size(), 0u);
    EXPECT_FALSE(d.owner_nonempty());
    EXPECT_EQ(d.pop(), nullptr);
    EXPECT_EQ(d.pop_oldest(), nullptr);
    EXPECT_EQ(d.steal(), nullptr);
}

TEST(WsDeque, PopTakesTheNewestAndStealTheOldest) {
    int items[4] = {0, 1, 2, 3};
    deque d(8);
    for (int& i : items) ASSERT_TRUE(d.push(&i));
    EXPECT_EQ(d.size(), 4u);
    EXPECT_TRUE(d.owner_nonempty());
    EXPECT_EQ(d.pop(), &items[3]);
    EXPECT_EQ(d.steal(), &items[0]);
    EXPECT_EQ(d.pop_oldest(), &items[1]);
    EXPECT_EQ(d.pop(), &items[2]);
    EXPECT_EQ(d.pop(), nullptr);
    EXPECT_EQ(d.size(), 0u);
}

TEST(WsDeque, PushFailsWhenFullAndWritesNothing) {
    int items[5] = {};
    deque d(4);
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(d.push(&items[i]));
    EXPECT_FALSE(d.push(&items[4]));
    EXPECT_EQ(d.size(), 4u);
    for (int i = 3; i >= 0; --i) EXPECT_EQ(d.pop(), &items[i]);
    EXPECT_EQ(d.pop(), nullptr);
}

TEST(WsDeque, WrapsAroundTheRingManyTimes) {
    std::vector<int> items(1000);
    deque d(4);
    std::size_t next = 0;
    for (int round = 0; round < 250; ++round) {
        ASSERT_TRUE(d.push(&items[next]));
        ASSERT_TRUE(d.push(&items[next + 1]));
        ASSERT_TRUE(d.push(&items[next + 2]));
        EXPECT_EQ(d.steal(), &items[next]);
        EXPECT_EQ(d.pop_oldest(), &items[next + 1]);
        EXPECT_EQ(d.pop(), &items[next + 2]);
        next += 3;
        if (next + 3 > items.size()) next = 0;
    }
    EXPECT_EQ(d.size(), 0u);
}

TEST(WsDeque, ConcurrentThievesAndOwnerTakeEachItemExactlyOnce) {
    const std::size_t n = weft_test::scaled(200000);
    constexpr int thieves = 3;
    std::vector<int> items(n);
    for (std::size_t i = 0; i < n; ++i) items[i] = static_cast<int>(i);
    std::vector<std::atomic<int>> taken(n);
    std::atomic<bool> done{false};
    std::atomic<std::size_t> stolen{0};

    auto take = [&](int* x) {
        if (x) taken[static_cast<std::size_t>(*x)].fetch_add(1, std::memory_order_relaxed);
        return x != nullptr;
    };

    deque d(64);
    std::vector<std::thread> ts;
    for (int t = 0; t < thieves; ++t) {
        ts.emplace_back([&] {
            while (!done.load(std::memory_order_acquire)) {
                if (take(d.steal())) stolen.fetch_add(1, std::memory_order_relaxed);
            }
            while (take(d.steal())) stolen.fetch_add(1, std::memory_order_relaxed);
        });
    }
    // The owner pushes everything, and takes from both ends now and then, so
    // pop() and pop_oldest() race the thieves for the last items.
    for (std::size_t i = 0; i < n; ++i) {
        while (!d.push(&items[i])) take(d.pop());
        if (i % 7 == 0) take(d.pop());
        if (i % 11 == 0) take(d.pop_oldest());
    }
    while (take(d.pop())) {
    }
    done.store(true, std::memory_order_release);
    for (auto& t : ts) t.join();

    std::size_t missing = 0, duplicated = 0;
    for (auto& c : taken) {
        const int v = c.load();
        missing += v == 0;
        duplicated += v > 1;
    }
    EXPECT_EQ(missing, 0u);
    EXPECT_EQ(duplicated, 0u);
    EXPECT_EQ(d.size(), 0u);
    // Not asserted (scheduling-dependent): how many the thieves got.
    RecordProperty("stolen", static_cast<int>(stolen.load()));
}
