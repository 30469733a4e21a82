// Timers in bulk: 100,000 sleeping fibers alive at once (and all parked on
// one timer before that), 1,000,000 weft::timer objects alive at once, and
// cancel or reset racing expiry for about a second per worker count.
// Bounded in count (scaled down under sanitizers) and in time.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

// RuntimeTest is instantiated over 1, 2 and 4 workers once for this
// executable, in spawn_storm_test.cpp.

using namespace std::chrono_literals;
using weft_test::eventually;
using weft_test::scaled;
using clk = std::chrono::steady_clock;

namespace {

double secs_since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

void spin_until(clk::time_point until) {
    while (clk::now() < until) {
    }
}

}  // namespace

TEST(TimerStress, HundredThousandSleepersOnTwoWorkers) {
    // Phase 1: n fibers all wait on one timer (one waiter list of n), which
    // proves they are alive and parked at once. Phase 2: reset(1ms) releases
    // them; each then sleeps 200 ms on its own deadline (n timers pending at
    // about the same time). All must wake, none early.
    const std::size_t n = scaled(100'000);
    constexpr auto nap = 200ms;
    weft::timer gate(1h);  // declared before the runtime: outlives every waiter
    weft::runtime rt(weft::runtime_options{.workers = 2});
    std::atomic<std::uint64_t> gate_false{0}, woke{0}, early{0};

    const auto t0 = clk::now();
    auto hs = rt.block_on([&] {
        std::vector<weft::join_handle<void>> v;
        v.reserve(n);
        for (std::size_t i = 0; i < n; ++i)
            v.push_back(weft::spawn([&] {
                if (!gate.wait()) gate_false.fetch_add(1, std::memory_order_relaxed);
                const auto s = clk::now();
                weft::this_fiber::sleep_for(nap);
                if (clk::now() - s < nap) early.fetch_add(1, std::memory_order_relaxed);
                woke.fetch_add(1, std::memory_order_relaxed);
            }));
        return v;
    });
    // Generous: 60 s to spawn and park n fibers (about a second in a release build).
    const bool all_parked = eventually([&] { return rt.stats().fibers_parked >= n; }, 60s);
    EXPECT_TRUE(all_parked) << rt.stats().fibers_parked << " of " << n << " parked";
    const double park_s = secs_since(t0);

    const auto released = clk::now();
    gate.reset(1ms);
    std::uint64_t peak_parked = 0;
    const bool all_woke = eventually(
        [&] {
            peak_parked = std::max<std::uint64_t>(peak_parked, rt.stats().fibers_parked);
            return woke.load() == n;
        },
        120s);  // generous: 200 ms of sleep plus n wake-ups
    EXPECT_TRUE(all_woke) << woke.load() << " of " << n << " sleepers woke; dump size "
                          << rt.dump_json().size();
    const double wake_s = secs_since(released);
    if (!all_woke) gate.cancel();  // so that the joins below end whatever happened
    for (auto& h : hs) h.join();
    std::cout << "[          ] " << n << " fibers parked in " << park_s << " s; after release, " << peak_parked
              << " parked at the peak seen, all woke in " << wake_s << " s\n";
    EXPECT_EQ(gate_false.load(), 0u) << "gate.wait() returned false though nobody cancelled it";
    EXPECT_EQ(early.load(), 0u);
    EXPECT_EQ(woke.load(), n);
    rt.shutdown();
    EXPECT_EQ(rt.stats().fibers_alive, 0u);
}

TEST(TimerStress, MillionTimersAliveAtOnce) {
    // 1,000,000 timers at once, at scattered deadlines an hour away, with one
    // in 1000 due in 5-20 ms: those must expire (fired from among the others,
    // which a fiber waits on), the rest must stay pending until cancelled.
    const std::size_t n = scaled(1'000'000);
    constexpr std::size_t short_every = 1000;
    weft::runtime rt(weft::runtime_options{.workers = 2});
    std::vector<std::unique_ptr<weft::timer>> timers;
    timers.reserve(n);

    const auto t0 = clk::now();
    rt.block_on([&] {
        std::mt19937_64 rng(42);
        std::uniform_int_distribution<std::int64_t> far_ns(0, std::chrono::nanoseconds(1h).count());
        std::uniform_int_distribution<int> near_ms(5, 20);
        for (std::size_t i = 0; i < n; ++i) {
            if (i % short_every == short_every / 2)
                timers.push_back(std::make_unique<weft::timer>(std::chrono::milliseconds(near_ms(rng))));
            else
                timers.push_back(std::make_unique<weft::timer>(1h + std::chrono::nanoseconds(far_ns(rng))));
        }
    });
    const double create_s = secs_since(t0);

    // The short ones expire while all n are alive; waiting on them from
    // fibers and from this thread.
    std::size_t short_true = 0;
    auto waiter = rt.spawn([&] {
        std::size_t ok = 0;
        for (std::size_t i = short_every / 2; i < n; i += short_every) ok += timers[i]->wait() ? 1 : 0;
        return ok;
    });
    for (std::size_t i = short_every / 2; i < n; i += short_every) short_true += timers[i]->wait() ? 1 : 0;
    const std::size_t shorts = (n + short_every / 2) / short_every;
    EXPECT_EQ(short_true, shorts);
    EXPECT_TRUE(eventually([&] { return waiter.is_finished(); }, 60s)) << "the fiber waiting on short timers";
    EXPECT_EQ(waiter.join(), shorts);

    const auto t1 = clk::now();
    std::size_t cancelled = 0, expired_seen = 0, pending_seen = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const bool is_short = i % short_every == short_every / 2;
        const bool exp = timers[i]->expired();
        (exp ? expired_seen : pending_seen) += 1;
        const bool c = timers[i]->cancel();
        cancelled += c ? 1 : 0;
        if (c == is_short) {
            ADD_FAILURE() << "timer " << i << (is_short ? " (due in ms)" : " (due in an hour)") << ": cancel() returned "
                          << c;
            break;
        }
    }
    const double cancel_s = secs_since(t1);
    EXPECT_EQ(cancelled, n - shorts);
    EXPECT_EQ(expired_seen, shorts);
    EXPECT_EQ(pending_seen, n - shorts);

    const auto t2 = clk::now();
    timers.clear();
    std::cout << "[          ] " << n << " timers: created in " << create_s << " s, cancelled in " << cancel_s
              << " s, destroyed in " << secs_since(t2) << " s\n";
    rt.shutdown();
    EXPECT_EQ(rt.stats().fibers_alive, 0u);
}

namespace {

// One race per round, for about a second (3 s under sanitizers): n timers due
// `gap` apart, one fiber waiting on each, and `act(round, seed)` racing the
// deadlines from plain threads. Every wait must return exactly once, never
// resume again, never return true before its deadline, and pass `verdict(i)`
// (an empty string when timer i is consistent).
struct race_round {
    std::size_t n;
    std::vector<std::unique_ptr<weft::timer>> timers;
    std::vector<clk::time_point> deadline, returned;
    std::vector<std::atomic<int>> returns;
    std::vector<char> result, stray, flag;  // flag: what the racing thread saw

    explicit race_round(std::size_t count)
        : n(count), timers(count), deadline(count), returned(count), returns(count), result(count, 0),
          stray(count, 0), flag(count, 0) {}
};

struct race_totals {
    int rounds = 0;
    std::uint64_t trues = 0, falses = 0;
};

template <class Act, class Verdict>
race_totals run_race_rounds(weft::runtime& rt, Act act, Verdict verdict) {
    const std::size_t n = std::max<std::size_t>(scaled(2000), 100);
    constexpr auto gap = weft_test::sanitized ? 200us : 10us;  // sanitizers: the slowed threads keep up
    const auto stop_at = clk::now() + (weft_test::sanitized ? 3s : 1s);
    race_totals totals;
    std::uint64_t bad = 0;
    std::string first_bad;
    for (; totals.rounds == 0 || clk::now() < stop_at; ++totals.rounds) {
        race_round r(n);
        const auto base = clk::now() + (weft_test::sanitized ? 200ms : 20ms);
        for (std::size_t i = 0; i < n; ++i) {
            r.timers[i] = std::make_unique<weft::timer>(base + gap * static_cast<long>(i) - clk::now());
            r.deadline[i] = r.timers[i]->deadline();
        }
        std::vector<weft::join_handle<void>> hs;
        hs.reserve(n);
        for (std::size_t i = 0; i < n; ++i)
            hs.push_back(rt.spawn([&r, i] {
                r.result[i] = r.timers[i]->wait() ? 1 : 0;
                r.returned[i] = clk::now();
                r.returns[i].fetch_add(1);
                const auto t0 = clk::now();
                weft::this_fiber::sleep_for(1ms);  // a stray second resume would cut this short
                if (clk::now() - t0 < 1ms) r.stray[i] = 1;
            }));
        act(r, totals.rounds);
        for (auto& h : hs) h.join();
        for (std::size_t i = 0; i < n; ++i) {
            std::string why;
            if (r.returns[i].load() != 1) why = "wait() did not return exactly once";
            else if (r.stray[i]) why = "resumed again after wait() returned";
            else if (r.result[i] && r.returned[i] < r.deadline[i]) why = "wait() true before the deadline";
            else why = verdict(r, i);
            if (!why.empty() && bad++ == 0)
                first_bad = why + " (round " + std::to_string(totals.rounds) + ", timer " + std::to_string(i) + ")";
            (r.result[i] ? totals.trues : totals.falses) += 1;
        }
    }
    EXPECT_EQ(bad, 0u) << "first: " << first_bad;
    EXPECT_EQ(totals.trues + totals.falses, n * static_cast<std::uint64_t>(totals.rounds));
    return totals;
}

}  // namespace

TEST_P(RuntimeTest, TimerCancelRacingExpiryStress) {
    // As TimerCancelRacingExpiryResolvesEachWaitOnce (api), in rounds: two plain
    // threads cancel the timers (odd and even) within +-30 us of the deadlines.
    const race_totals t = run_race_rounds(
        rt,
        [](race_round& r, int round) {
            auto cancel_some = [&](std::size_t first) {
                std::mt19937 rng(static_cast<std::uint32_t>(round * 2 + first));
                std::uniform_int_distribution<int> jitter_us(-30, 30);
                for (std::size_t i = first; i < r.n; i += 2) {
                    spin_until(r.deadline[i] + std::chrono::microseconds(jitter_us(rng)));
                    r.flag[i] = r.timers[i]->cancel() ? 1 : 0;
                }
            };
            std::thread even(cancel_some, 0), odd(cancel_some, 1);
            even.join();
            odd.join();
        },
        [](const race_round& r, std::size_t i) -> std::string {
            return (r.result[i] != 0) == (r.flag[i] != 0) ? "wait() and cancel() disagree" : "";
        });
    std::cout << "[          ] " << t.rounds << " rounds: expired " << t.trues << ", cancelled " << t.falses << "\n";
}

TEST_P(RuntimeTest, TimerResetRacingExpiryStress) {
    // Each fiber waits on its own short timer; a plain thread resets each one
    // to an hour at about its deadline, then cancels it. A wait that saw the
    // expiry returns true; one that saw the reset keeps waiting and returns
    // false at the cancel. Either way: once, and never before the deadline.
    const race_totals t = run_race_rounds(
        rt,
        [](race_round& r, int round) {
            std::thread resetter([&] {
                std::mt19937 rng(static_cast<std::uint32_t>(round));
                std::uniform_int_distribution<int> jitter_us(-30, 30);
                for (std::size_t i = 0; i < r.n; ++i) {
                    spin_until(r.deadline[i] + std::chrono::microseconds(jitter_us(rng)));
                    r.timers[i]->reset(1h);
                }
                for (std::size_t i = 0; i < r.n; ++i) r.flag[i] = r.timers[i]->cancel() ? 1 : 0;
            });
            resetter.join();
        },
        [](const race_round& r, std::size_t i) -> std::string {
            return r.flag[i] ? "" : "cancel() of a timer reset to an hour returned false";
        });
    std::cout << "[          ] " << t.rounds << " rounds: expired " << t.trues << ", reset then cancelled " << t.falses
              << "\n";
}

TEST_P(RuntimeTest, ShutdownWithManyPendingSleepersAndTimers) {
    // Thousands of fibers asleep for an hour or waiting on hour-long timers,
    // plus timers nobody waits on; shutdown must cancel them all promptly.
    const std::size_t n = std::max<std::size_t>(scaled(10'000), 100);
    std::atomic<std::uint64_t> cancelled{0};
    std::vector<std::unique_ptr<weft::timer>> idle(n);
    for (auto& t : idle) t = std::make_unique<weft::timer>(1h);
    std::vector<weft::join_handle<void>> hs;
    hs.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        hs.push_back(rt.spawn([&, i] {
            try {
                if (i % 2 == 0) {
                    weft::this_fiber::sleep_for(1h + std::chrono::microseconds(i));
                } else {
                    weft::timer t(1h + std::chrono::microseconds(i));
                    t.wait();
                }
            } catch (const weft::operation_cancelled&) {
                cancelled.fetch_add(1);
                throw;
            }
        }));
    EXPECT_TRUE(eventually([&] { return rt.stats().fibers_parked >= n; }, 60s))
        << rt.stats().fibers_parked << " of " << n << " parked";
    const auto t0 = clk::now();
    rt.shutdown();
    const auto took = clk::now() - t0;
    EXPECT_LT(took, weft_test::sanitized ? 60s : 10s) << "generous: shutdown only has to wake parked fibers";
    EXPECT_EQ(cancelled.load(), n);
    std::size_t threw = 0;
    for (auto& h : hs) {
        try {
            h.join();
        } catch (const weft::operation_cancelled&) {
            ++threw;
        }
    }
    EXPECT_EQ(threw, n);
    std::size_t still_pending = 0;
    for (auto& t : idle) still_pending += t->cancel() ? 1 : 0;
    EXPECT_EQ(still_pending, n) << "timers nobody waited on are still pending after shutdown";
}
