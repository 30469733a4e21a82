// The 4-ary min-heap (src/util/min_heap.hpp) under the timer queues: pops
// come out in `when` order after any mix of pushes and pops, and heap_make
// (the timer queue's in-place compaction) orders any vector without
// allocating.
// Internal dependency (weft_internal_dep).
#include "util/min_heap.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace {

struct item {
    std::int64_t when;
    int tag;
};

using weft::detail::heap_make;
using weft::detail::heap_pop;
using weft::detail::heap_push;

}  // namespace

TEST(MinHeap, PopsInOrderAcrossMixedPushesAndPops) {
    std::mt19937_64 rng(7);
    std::vector<item> h;
    std::vector<std::int64_t> model;  // kept sorted
    for (int step = 0; step < 20000; ++step) {
        if (model.empty() || rng() % 3 != 0) {
            const auto when = static_cast<std::int64_t>(rng() % 1000);  // many equal keys
            heap_push(h, item{when, step});
            model.insert(std::upper_bound(model.begin(), model.end(), when), when);
        } else {
            ASSERT_EQ(heap_pop(h).when, model.front()) << "at step " << step;
            model.erase(model.begin());
        }
        ASSERT_EQ(h.size(), model.size());
    }
    while (!model.empty()) {
        ASSERT_EQ(heap_pop(h).when, model.front());
        model.erase(model.begin());
    }
    EXPECT_TRUE(h.empty());
}

TEST(MinHeap, MakeOrdersAnyVectorInPlace) {
    std::mt19937_64 rng(11);
    for (std::size_t n : {0u, 1u, 2u, 3u, 4u, 5u, 6u, 16u, 17u, 21u, 100u, 1023u, 4096u}) {
        std::vector<item> h(n);
        for (std::size_t i = 0; i < n; ++i) h[i] = item{static_cast<std::int64_t>(rng() % 500), static_cast<int>(i)};
        std::vector<std::int64_t> want;
        for (const auto& e : h) want.push_back(e.when);
        std::sort(want.begin(), want.end());
        const auto* storage = h.data();
        const auto cap = h.capacity();
        heap_make(h);
        EXPECT_EQ(h.data(), storage) << "heap_make moved the storage (n = " << n << ")";
        EXPECT_EQ(h.capacity(), cap);
        std::vector<std::int64_t> got;
        while (!h.empty()) got.push_back(heap_pop(h).when);
        EXPECT_EQ(got, want) << "n = " << n;
    }
}

TEST(MinHeap, MakeOnReverseOrderedInput) {
    std::vector<item> h;
    for (int i = 999; i >= 0; --i) h.push_back(item{i, i});
    heap_make(h);
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(heap_pop(h).when, i);
}
