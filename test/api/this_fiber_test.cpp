// weft::this_fiber (get_id, set_name/get_name, yield, in_fiber), the
// weft::this_thread alias, and weft::fiber_id. Public API only (weft_dep).
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

using weft_test::eventually;
using weft_test::yield_until;

// Renaming std::this_thread to weft::this_thread must compile.
static_assert(std::is_same_v<decltype(&weft::this_thread::get_id), decltype(&weft::this_fiber::get_id)>);

// --- fiber_id ---------------------------------------------------------------

TEST(FiberId, DefaultMeansNoThread) {
    constexpr weft::fiber_id none;
    static_assert(none.value() == 0);
    EXPECT_EQ(none, weft::fiber_id{});
    EXPECT_NE(none, weft::fiber_id{1});
}

TEST(FiberId, PrintsTheNumberOrNone) {
    std::ostringstream os;
    os << weft::fiber_id{} << ' ' << weft::fiber_id{42};
    EXPECT_EQ(os.str(), "none 42");
}

TEST(FiberId, IsTotallyOrderedAndHashable) {
    const weft::fiber_id a{1};
    const weft::fiber_id b{2};
    EXPECT_LT(a, b);
    EXPECT_GT(b, a);
    EXPECT_LE(a, a);
    EXPECT_LT(weft::fiber_id{}, a);
    EXPECT_EQ(std::hash<weft::fiber_id>{}(a), std::hash<weft::fiber_id>{}(weft::fiber_id{1}));
    std::unordered_set<weft::fiber_id> ids{a, b, weft::fiber_id{1}};
    EXPECT_EQ(ids.size(), 2u);
}

// --- get_id ---------------------------------------------------------------------

TEST_P(RuntimeTest, FiberIdsAreUniqueAndNotNone) {
    constexpr std::size_t n = 1000;
    std::mutex mu;
    std::set<weft::fiber_id> seen;
    std::vector<weft::join_handle<bool>> hs;
    for (std::size_t i = 0; i < n; ++i) {
        hs.push_back(rt.spawn([&] {
            const auto id = weft::this_fiber::get_id();
            weft::this_fiber::yield();  // the id is stable across a suspension (and a migration)
            const bool stable = id == weft::this_fiber::get_id();
            std::lock_guard lock(mu);
            seen.insert(id);
            return stable && id != weft::fiber_id{};
        }));
    }
    for (auto& h : hs) EXPECT_TRUE(h.join());
    EXPECT_EQ(seen.size(), n);
    EXPECT_EQ(seen.count(weft::fiber_id{}), 0u);
}

TEST(ThisFiber, PlainThreadIdsAreDistinctStableAndNotNone) {
    const auto mine = weft::this_fiber::get_id();
    EXPECT_NE(mine, weft::fiber_id{});
    EXPECT_EQ(mine, weft::this_fiber::get_id());
    weft::fiber_id a_first, a_second, b_id;
    std::thread a([&] {
        a_first = weft::this_fiber::get_id();
        a_second = weft::this_fiber::get_id();
    });
    std::thread b([&] { b_id = weft::this_fiber::get_id(); });
    a.join();
    b.join();
    EXPECT_NE(a_first, weft::fiber_id{});
    EXPECT_EQ(a_first, a_second);
    EXPECT_NE(a_first, b_id);
    EXPECT_NE(a_first, mine);
    EXPECT_NE(b_id, mine);
}

TEST_P(RuntimeTest, PlainThreadIdDiffersFromFiberIds) {
    const auto mine = weft::this_fiber::get_id();
    std::vector<weft::join_handle<weft::fiber_id>> hs;
    for (int i = 0; i < 100; ++i) hs.push_back(rt.spawn([] { return weft::this_fiber::get_id(); }));
    for (auto& h : hs) EXPECT_NE(h.join(), mine);
}

TEST(ThisFiber, ThisThreadAliasesThisFiber) {
    EXPECT_EQ(weft::this_thread::get_id(), weft::this_fiber::get_id());
    auto id = weft::spawn([] { return weft::this_thread::get_id() == weft::this_fiber::get_id(); });
    EXPECT_TRUE(id.join());
    weft::this_thread::yield();  // on a plain thread: std::this_thread::yield()
}

// --- names ------------------------------------------------------------------------

TEST_P(RuntimeTest, SetNameIsVisibleToGetNameOfThatFiberOnly) {
    std::atomic<bool> go{false};
    auto named = rt.spawn([&] {
        const std::string before = weft::this_fiber::get_name();
        weft::this_fiber::set_name("worker-7");
        yield_until([&] { return go.load(); });  // survives suspension
        return before + "|" + weft::this_fiber::get_name();
    });
    auto unnamed = rt.spawn([&] {
        yield_until([&] { return go.load(); });
        return weft::this_fiber::get_name();
    });
    go.store(true);
    EXPECT_EQ(named.join(), "|worker-7");
    EXPECT_EQ(unnamed.join(), "");
}

TEST_P(RuntimeTest, SetNameCanRename) {
    const std::string name = rt.block_on([] {
        weft::this_fiber::set_name("first");
        weft::this_fiber::set_name("second");
        return weft::this_fiber::get_name();
    });
    EXPECT_EQ(name, "second");
}

TEST(ThisFiber, SetNameOnAPlainThread) {
    std::string got;
    std::thread t([&] {
        weft::this_fiber::set_name("plain");
        got = weft::this_fiber::get_name();
    });
    t.join();
    EXPECT_EQ(got, "plain");
}

// --- yield -----------------------------------------------------------------------

TEST(ThisFiber, InFiberIsTrueOnlyOnFibers) {
    EXPECT_FALSE(weft::this_fiber::in_fiber());
    EXPECT_TRUE(weft::spawn([] { return weft::this_fiber::in_fiber(); }).join());
}

TEST_P(RuntimeTest, YieldLetsAnotherFiberProgress) {
    // On one worker, a fiber that waits for another by yielding only returns
    // if yield really runs the other one.
    const bool ok = rt.block_on([] {
        std::atomic<bool> flag{false};
        auto setter = weft::spawn([&] { flag.store(true); });
        const bool seen = yield_until([&] { return flag.load(); });
        setter.join();
        return seen;
    });
    EXPECT_TRUE(ok);
}

namespace {

struct spread_report {
    int worst = 0;          // largest (most - fewest iterations) seen at any step
    std::size_t step = 0;   // where it was seen
    std::size_t steps = 0;  // length of the trace
};

/// `fibers` fibers on a one-worker runtime each record their index and
/// yield, `rounds` times, after starting together. Returns how far the
/// fastest got ahead of the slowest at the worst point of the trace.
spread_report yield_round_robin_spread(int fibers, int rounds) {
    weft::runtime rt(weft::runtime_options{.workers = 1});
    std::mutex mu;
    std::vector<int> order;
    rt.block_on([&] {
        std::atomic<int> started{0};
        std::vector<weft::join_handle<void>> hs;
        for (int f = 0; f < fibers; ++f) {
            hs.push_back(weft::spawn([&, f] {
                // Start together: nobody records before everybody is queued.
                started.fetch_add(1);
                yield_until([&] { return started.load() == fibers; });
                for (int r = 0; r < rounds; ++r) {
                    {
                        std::lock_guard lock(mu);
                        order.push_back(f);
                    }
                    weft::this_fiber::yield();
                }
            }));
        }
        for (auto& h : hs) h.join();
    });
    spread_report rep;
    rep.steps = order.size();
    // Counts of counts: spread = highest count - lowest count, kept incrementally.
    std::vector<int> count(static_cast<std::size_t>(fibers), 0);
    std::vector<int> with(static_cast<std::size_t>(rounds) + 2, 0);
    with[0] = fibers;
    int lo = 0, hi = 0;
    for (std::size_t i = 0; i < order.size(); ++i) {
        int& c = count[static_cast<std::size_t>(order[i])];
        if (c + 1 >= static_cast<int>(with.size())) break;  // more records than rounds: caught by the size check
        --with[static_cast<std::size_t>(c)];
        ++c;
        ++with[static_cast<std::size_t>(c)];
        hi = std::max(hi, c);
        while (with[static_cast<std::size_t>(lo)] == 0) ++lo;
        if (hi - lo > rep.worst) {
            rep.worst = hi - lo;
            rep.step = i;
        }
    }
    return rep;
}

}  // namespace

// Round robin: at every point of the trace, no fiber is more than two
// iterations ahead of any other.
TEST(ThisFiber, YieldRoundRobinsOnOneWorker) {
    constexpr int fibers = 8;
    constexpr int rounds = 50;
    const auto rep = yield_round_robin_spread(fibers, rounds);
    ASSERT_EQ(rep.steps, static_cast<std::size_t>(fibers * rounds));
    EXPECT_LE(rep.worst, 2) << "at step " << rep.step << " one fiber was " << rep.worst
                            << " iterations ahead of another";
}

// The same with more runnable fibers than a worker's deque holds (256
// without -Dchaos): yield still lets every other runnable fiber run first.
TEST(ThisFiber, YieldRoundRobinsBeyondTheDequeCapacity) {
    constexpr int fibers = 1000;
    constexpr int rounds = 20;
    const auto rep = yield_round_robin_spread(fibers, rounds);
    ASSERT_EQ(rep.steps, static_cast<std::size_t>(fibers * rounds));
    EXPECT_LE(rep.worst, 2) << "at step " << rep.step << " one fiber was " << rep.worst
                            << " iterations ahead of another";
}
