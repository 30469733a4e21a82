// weft::after and weft::ticker against include/weft/ticker.hpp: after(d)
// delivers one time point no earlier than d from the call and nothing more;
// after(0) and negative durations deliver at once; after() in a select
// against a silent channel; tickers deliver in order on a grid no earlier
// than k periods from the start, drop ticks for a slow reader (at most one
// buffered), stop (no tick after stop() returns, also when stop races the
// timer thread), reset (new period, restart after stop, a bad period throws
// and changes nothing), throw std::invalid_argument for a non-positive
// period, and leave a channel copy valid (and silent) when destroyed; many
// afters and tickers at once. Each runs on fibers (1, 2 and 4 workers) and on
// plain threads with no runtime at all. Public API only (weft_dep).
//
// Time: only lower bounds ("never early") and hang bounds of seconds; this
// machine's sleeps overshoot by 100 ms.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

// RuntimeTest is instantiated over 1, 2 and 4 workers once for this
// executable, in runtime_test.cpp.

using namespace std::chrono_literals;
using weft::channel_op_status;
using weft_test::eventually;
using clk = std::chrono::steady_clock;
using tick_chan = weft::channel<clk::time_point>;

namespace {

/// Bounds a wait for something that must come; never a measure of speed.
constexpr auto hang_bound = 5s;

/// Sleeps a fiber or a plain thread.
void nap(clk::duration d) {
    if (weft::this_fiber::in_fiber()) weft::this_fiber::sleep_for(d);
    else std::this_thread::sleep_for(d);
}

/// Receives one tick or fails (returns clk::time_point{}).
clk::time_point recv_tick(const tick_chan& ch) {
    clk::time_point tp{};
    EXPECT_EQ(ch.recv_for(tp, hang_bound), channel_op_status::success) << "no tick within 5 s";
    return tp;
}

/// Takes whatever is buffered (at most one tick: capacity 1).
void drain(const tick_chan& ch) {
    clk::time_point tp;
    (void)ch.try_recv(tp);
    EXPECT_EQ(ch.size(), 0u);
}

// --- after -----------------------------------------------------------------------

void after_delivers_once_not_early() {
    constexpr auto d = 30ms;
    const auto start = clk::now();
    tick_chan ch = weft::after(d);
    EXPECT_EQ(ch.capacity(), 1u);
    const auto tp = recv_tick(ch);
    EXPECT_GE(tp, start + d) << "delivered early";
    EXPECT_LE(tp, clk::now());
    EXPECT_GE(clk::now(), start + d);
    // Nothing more.
    clk::time_point more;
    EXPECT_EQ(ch.recv_for(more, 3 * d), channel_op_status::timeout);
    EXPECT_FALSE(ch.is_closed());
}

void after_zero_or_negative_delivers_at_once() {
    for (auto d : {clk::duration(0), clk::duration(-1ms), clk::duration(-1h), clk::duration::min()}) {
        const auto start = clk::now();
        tick_chan ch = weft::after(d);
        EXPECT_EQ(ch.size(), 1u) << "not delivered at once";
        clk::time_point tp;
        EXPECT_EQ(ch.try_recv(tp), channel_op_status::success);
        EXPECT_GE(tp, start);
        EXPECT_LE(tp, clk::now());
        EXPECT_EQ(ch.try_recv(tp), channel_op_status::empty);
    }
}

void after_wins_a_select_against_a_silent_channel() {
    weft::channel<int> slow;
    const auto start = clk::now();
    clk::time_point fired{};
    const std::size_t i =
        weft::select(weft::on_recv(slow), weft::on_recv(weft::after(20ms),
                                                        [&](std::optional<clk::time_point> tp) { fired = tp.value(); }),
                     weft::on_timeout(hang_bound));
    EXPECT_EQ(i, 1u);
    EXPECT_GE(fired, start + 20ms);
    EXPECT_GE(clk::now(), start + 20ms);
    // ... and a channel that has a value wins over a pending after().
    weft::channel<int> quick(1);
    quick.send(1);
    EXPECT_EQ(weft::select(weft::on_recv(weft::after(1h)), weft::on_recv(quick)), 1u);
}

void many_afters_all_delivered(std::size_t n, unsigned seed) {
    // n channels with deadlines of 1-20 ms, armed in random order; each
    // delivers exactly once, no earlier than its deadline.
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> ms(1, 20);
    struct pending {
        tick_chan ch;
        clk::time_point due;
    };
    std::vector<pending> ps;
    ps.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        const auto d = std::chrono::milliseconds(ms(rng));
        const auto start = clk::now();
        ps.push_back({weft::after(d), start + d});
    }
    std::size_t early = 0, late = 0, twice = 0;
    for (auto& p : ps) {
        clk::time_point tp{};
        if (p.ch.recv_for(tp, hang_bound) != channel_op_status::success) {
            ++late;
            continue;
        }
        early += tp < p.due ? 1 : 0;
    }
    // Everything fired by now; still only one value each.
    for (auto& p : ps) twice += p.ch.size();
    EXPECT_EQ(late, 0u) << "after() channels that never delivered";
    EXPECT_EQ(early, 0u) << "after() channels that delivered before their deadline";
    EXPECT_EQ(twice, 0u) << "after() channels that delivered twice";
}

void dropped_afters_are_harmless() {
    // The timer keeps a channel alive until it fires; nobody listens.
    for (int i = 0; i < 100; ++i) (void)weft::after(std::chrono::milliseconds(i % 10));
    // One that never fires (a saturated deadline) is dropped too.
    { tick_chan never = weft::after(std::chrono::hours::max()); }
    tick_chan last = weft::after(15ms);
    (void)recv_tick(last);
}

// --- ticker ----------------------------------------------------------------------

void ticks_in_order_on_the_grid() {
    constexpr auto d = 15ms;
    constexpr int n = 5;
    const auto start = clk::now();
    weft::ticker t(d);
    EXPECT_EQ(t.chan().capacity(), 1u);
    clk::time_point prev = start;
    for (int k = 1; k <= n; ++k) {
        const auto tp = recv_tick(t.chan());
        EXPECT_GT(tp, prev) << "tick " << k << " not after the previous one";
        // At most one tick per period, on the grid: the k-th is no earlier than k periods in.
        EXPECT_GE(tp, start + k * d) << "tick " << k << " early";
        EXPECT_LE(tp, clk::now());
        prev = tp;
    }
    EXPECT_GE(clk::now(), start + n * d);
}

void slow_reader_sees_dropped_ticks() {
    constexpr auto d = 5ms;
    weft::ticker t(d);
    nap(10 * d);
    ASSERT_TRUE(eventually([&] { return t.chan().size() == 1; })) << "no tick within 5 s";
    nap(5 * d);
    EXPECT_LE(t.chan().size(), 1u) << "ticks piled up";
    // The buffered tick is an old one, yet the ticker keeps going at its pace.
    const auto first = recv_tick(t.chan());
    const auto second = recv_tick(t.chan());
    EXPECT_GT(second, first);
}

void stop_ends_the_ticks() {
    constexpr auto d = 5ms;
    weft::ticker t(d);
    (void)recv_tick(t.chan());
    (void)recv_tick(t.chan());
    t.stop();
    drain(t.chan());
    clk::time_point tp;
    EXPECT_EQ(t.chan().recv_for(tp, 10 * d), channel_op_status::timeout) << "a tick after stop()";
    t.stop();  // idempotent
    EXPECT_FALSE(t.chan().is_closed()) << "stop() closed the channel (Go does not)";
}

void stop_racing_the_timer_thread(int rounds) {
    // Stop at a random moment relative to the 1 ms ticks: whatever was in
    // flight, nothing arrives once stop() has returned and the channel was drained.
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> us(0, 3000);
    int after_stop = 0;
    for (int r = 0; r < rounds; ++r) {
        weft::ticker t(1ms);
        nap(std::chrono::microseconds(us(rng)));
        t.stop();
        clk::time_point tp;
        (void)t.chan().try_recv(tp);
        if (t.chan().recv_for(tp, 10ms) != channel_op_status::timeout) ++after_stop;
    }
    EXPECT_EQ(after_stop, 0) << "rounds with a tick after stop() returned";
}

void reset_changes_the_period_and_restarts() {
    weft::ticker t(1h);
    clk::time_point tp;
    EXPECT_EQ(t.chan().recv_for(tp, 30ms), channel_op_status::timeout);
    auto start = clk::now();
    t.reset(10ms);
    EXPECT_GE(recv_tick(t.chan()), start + 10ms);
    EXPECT_GE(recv_tick(t.chan()), start + 20ms);
    // After stop(), reset() starts it again.
    t.stop();
    drain(t.chan());
    EXPECT_EQ(t.chan().recv_for(tp, 30ms), channel_op_status::timeout);
    start = clk::now();
    t.reset(10ms);
    EXPECT_GE(recv_tick(t.chan()), start + 10ms);
    // To a long period: the short one's pending tick must not fire.
    t.reset(1h);
    drain(t.chan());
    EXPECT_EQ(t.chan().recv_for(tp, 50ms), channel_op_status::timeout) << "a tick of the old period";
}

void bad_period_throws() {
    EXPECT_THROW(weft::ticker(0ms), std::invalid_argument);
    EXPECT_THROW(weft::ticker(-1ms), std::invalid_argument);
    EXPECT_THROW(weft::ticker(std::chrono::hours::min()), std::invalid_argument);
    weft::ticker t(10ms);
    EXPECT_THROW(t.reset(0s), std::invalid_argument);
    EXPECT_THROW(t.reset(-5ms), std::invalid_argument);
    // The failed reset changed nothing: it still ticks.
    (void)recv_tick(t.chan());
}

void destroyed_ticker_leaves_a_valid_silent_channel() {
    constexpr auto d = 5ms;
    tick_chan copy;
    {
        weft::ticker t(d);
        copy = t.chan();
        (void)recv_tick(copy);
    }
    drain(copy);
    clk::time_point tp;
    EXPECT_EQ(copy.recv_for(tp, 10 * d), channel_op_status::timeout) << "a tick after the ticker was destroyed";
    EXPECT_FALSE(copy.is_closed());
    // Still a working channel.
    EXPECT_EQ(copy.try_send(clk::now()), channel_op_status::success);
    EXPECT_EQ(copy.try_recv(tp), channel_op_status::success);
}

void ticker_in_a_select_loop() {
    // Go's for { select { case <-t.C: ...; case <-done: return } }.
    weft::ticker t(5ms);
    weft::channel<int> done(1);
    int ticks = 0;
    clk::time_point prev{};
    bool in_order = true;
    for (;;) {
        const auto i = weft::select(weft::on_recv(t.chan(),
                                                  [&](std::optional<clk::time_point> tp) {
                                                      const auto at = tp.value_or(clk::time_point{});
                                                      in_order = in_order && at > prev;
                                                      prev = at;
                                                      if (++ticks == 3) done.send(1);
                                                  }),
                                    weft::on_recv(done), weft::on_timeout(hang_bound));
        ASSERT_NE(i, 2u) << "no tick within 5 s";
        if (i == 1) break;
    }
    EXPECT_GE(ticks, 3);
    EXPECT_TRUE(in_order);
}

}  // namespace

// --- on fibers (1, 2, 4 workers) ---------------------------------------------------

TEST_P(RuntimeTest, AfterDeliversOnceNotEarly) { rt.block_on(after_delivers_once_not_early); }
TEST_P(RuntimeTest, AfterZeroOrNegativeDeliversAtOnce) { rt.block_on(after_zero_or_negative_delivers_at_once); }
TEST_P(RuntimeTest, AfterWinsASelectAgainstASilentChannel) {
    rt.block_on(after_wins_a_select_against_a_silent_channel);
}
TEST_P(RuntimeTest, DroppedAftersAreHarmless) { rt.block_on(dropped_afters_are_harmless); }

TEST_P(RuntimeTest, AThousandAftersOnFibersAllDeliver) {
    // Eight fibers, 125 channels each, at once.
    std::vector<weft::join_handle<void>> hs;
    for (unsigned f = 0; f < 8; ++f) hs.push_back(rt.spawn([f] { many_afters_all_delivered(125, f); }));
    for (auto& h : hs) h.join();
}

TEST_P(RuntimeTest, TickerTicksInOrderOnTheGrid) { rt.block_on(ticks_in_order_on_the_grid); }
TEST_P(RuntimeTest, TickerDropsTicksForASlowReader) { rt.block_on(slow_reader_sees_dropped_ticks); }
TEST_P(RuntimeTest, TickerStopEndsTheTicks) { rt.block_on(stop_ends_the_ticks); }
TEST_P(RuntimeTest, TickerStopRacingTheTimerThread) { rt.block_on([] { stop_racing_the_timer_thread(30); }); }
TEST_P(RuntimeTest, TickerResetChangesThePeriodAndRestarts) {
    rt.block_on(reset_changes_the_period_and_restarts);
}
TEST_P(RuntimeTest, TickerWithANonPositivePeriodThrows) { rt.block_on(bad_period_throws); }
TEST_P(RuntimeTest, TickerDestroyedLeavesAValidSilentChannel) {
    rt.block_on(destroyed_ticker_leaves_a_valid_silent_channel);
}
TEST_P(RuntimeTest, TickerInASelectLoop) { rt.block_on(ticker_in_a_select_loop); }

TEST_P(RuntimeTest, ManyTickersAtOnceOnFibersAndThreads) {
    // 60 fibers and 4 plain threads, each with its own ticker (2-9 ms),
    // taking 3 ticks in order; one stopped from another fiber midway.
    std::atomic<int> done{0};
    auto body = [&done](int i) {
        weft::ticker t(std::chrono::milliseconds(2 + i % 8));
        clk::time_point prev{};
        for (int k = 0; k < 3; ++k) {
            const auto tp = recv_tick(t.chan());
            EXPECT_GT(tp, prev);
            prev = tp;
        }
        done.fetch_add(1);
    };
    std::vector<weft::join_handle<void>> hs;
    for (int i = 0; i < 60; ++i) hs.push_back(rt.spawn(body, i));
    std::vector<std::thread> ts;
    for (int i = 60; i < 64; ++i) ts.emplace_back(body, i);
    weft::ticker shared(2ms);
    auto stopper = rt.spawn([&shared] {
        (void)recv_tick(shared.chan());
        shared.stop();
    });
    stopper.join();
    drain(shared.chan());
    for (auto& h : hs) h.join();
    for (auto& t : ts) t.join();
    EXPECT_EQ(done.load(), 64);
    clk::time_point tp;
    EXPECT_EQ(shared.chan().try_recv(tp), channel_op_status::empty) << "a tick after stop() from another fiber";
}

// --- on plain threads, no runtime at all ---------------------------------------------

TEST(TickerWithoutARuntime, AfterDeliversOnceNotEarly) { after_delivers_once_not_early(); }
TEST(TickerWithoutARuntime, AfterZeroOrNegativeDeliversAtOnce) { after_zero_or_negative_delivers_at_once(); }
TEST(TickerWithoutARuntime, AfterWinsASelectAgainstASilentChannel) { after_wins_a_select_against_a_silent_channel(); }
TEST(TickerWithoutARuntime, AThousandAftersAllDeliver) {
    std::vector<std::thread> ts;
    for (unsigned i = 0; i < 4; ++i) ts.emplace_back([i] { many_afters_all_delivered(250, 100 + i); });
    for (auto& t : ts) t.join();
}
TEST(TickerWithoutARuntime, TicksInOrderOnTheGrid) { ticks_in_order_on_the_grid(); }
TEST(TickerWithoutARuntime, SlowReaderSeesDroppedTicks) { slow_reader_sees_dropped_ticks(); }
TEST(TickerWithoutARuntime, StopEndsTheTicks) { stop_ends_the_ticks(); }
TEST(TickerWithoutARuntime, StopRacingTheTimerThread) { stop_racing_the_timer_thread(30); }
TEST(TickerWithoutARuntime, ResetChangesThePeriodAndRestarts) { reset_changes_the_period_and_restarts(); }
TEST(TickerWithoutARuntime, NonPositivePeriodThrows) { bad_period_throws(); }
TEST(TickerWithoutARuntime, DestroyedLeavesAValidSilentChannel) { destroyed_ticker_leaves_a_valid_silent_channel(); }
TEST(TickerWithoutARuntime, TickerInASelectLoop) { ticker_in_a_select_loop(); }
