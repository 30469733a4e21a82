// Many plain threads spawning, yielding and joining at once, with a monitor
// reading stats() and dump_json() meanwhile; and shutdown racing with spawns.
// Bounded in time (about 1.5 s per worker count) and in live fibers.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

using namespace std::chrono_literals;
using weft_test::eventually;

INSTANTIATE_TEST_SUITE_P(Workers, RuntimeTest, testing::Values(1, 2, 4), worker_count_name);

TEST_P(RuntimeTest, SpawnStormFromManyThreadsWithYields) {
    constexpr int threads = 8;
    constexpr int batch = 32;
    const auto deadline = std::chrono::steady_clock::now() + 1500ms;
    std::atomic<std::uint64_t> executed{0};
    std::atomic<std::uint64_t> grandchildren_spawned{0};
    std::atomic<std::uint64_t> grandchildren_done{0};
    std::vector<std::uint64_t> joined(threads, 0);

    std::atomic<bool> stop_monitor{false};
    std::thread monitor([&] {
        while (!stop_monitor.load()) {
            const auto s = rt.stats();
            EXPECT_EQ(s.queue_depth.size(), workers());
            const std::string dump = rt.dump_json();
            EXPECT_TRUE(!dump.empty() && dump.front() == '[');
            std::this_thread::sleep_for(5ms);
        }
    });

    auto fiber_body = [&](int i) {
        for (int y = 0; y < 4; ++y) weft::this_fiber::yield();
        grandchildren_spawned.fetch_add(1);
        auto g = weft::spawn([&] {
            weft::this_fiber::yield();
            grandchildren_done.fetch_add(1);
        });
        if (i % 2 == 0)
            g.join();
        else
            g.detach();
        executed.fetch_add(1);
        return 1;
    };

    std::vector<std::thread> spawners;
    for (int t = 0; t < threads; ++t) {
        spawners.emplace_back([&, t] {
            std::uint64_t total = 0;
            while (std::chrono::steady_clock::now() < deadline) {
                std::vector<weft::join_handle<int>> hs;
                hs.reserve(batch);
                for (int i = 0; i < batch; ++i) hs.push_back(rt.spawn(fiber_body, i));
                for (auto& h : hs) total += static_cast<std::uint64_t>(h.join());
            }
            joined[static_cast<std::size_t>(t)] = total;
        });
    }
    for (auto& s : spawners) s.join();
    stop_monitor.store(true);
    monitor.join();

    std::uint64_t total = 0;
    for (auto j : joined) total += j;
    EXPECT_GT(total, 0u);
    EXPECT_EQ(executed.load(), total);
    EXPECT_EQ(grandchildren_spawned.load(), total);
    EXPECT_TRUE(eventually([&] { return grandchildren_done.load() == total; }))
        << grandchildren_done.load() << " of " << total << " grandchildren finished";
}

TEST_P(RuntimeTest, ShutdownWhileThreadsSpawn) {
    constexpr int threads = 4;
    constexpr int batch = 64;
    std::atomic<std::uint64_t> ran{0};
    std::atomic<std::uint64_t> spawned{0};
    std::atomic<std::uint64_t> joined_ok{0};
    std::atomic<std::uint64_t> joined_cancelled{0};
    std::atomic<int> refused{0};
    std::atomic<int> other_errors{0};

    std::vector<std::thread> spawners;
    for (int t = 0; t < threads; ++t) {
        spawners.emplace_back([&] {
            const auto give_up = std::chrono::steady_clock::now() + 20s;  // bounds a hang
            bool open = true;
            while (open && std::chrono::steady_clock::now() < give_up) {
                std::vector<weft::join_handle<void>> hs;
                for (int i = 0; i < batch; ++i) {
                    try {
                        hs.push_back(rt.spawn([&] {
                            ran.fetch_add(1);
                            for (int y = 0; y < 3; ++y) weft::this_fiber::yield();
                        }));
                        spawned.fetch_add(1);
                    } catch (const weft::fiber_error& e) {
                        if (e.code() == weft::errc::runtime_shut_down)
                            refused.fetch_add(1);
                        else
                            other_errors.fetch_add(1);
                        open = false;
                        break;
                    }
                }
                for (auto& h : hs) {
                    try {
                        h.join();
                        joined_ok.fetch_add(1);
                    } catch (const weft::operation_cancelled&) {
                        joined_cancelled.fetch_add(1);  // never started: shutdown cancelled it
                    }
                }
            }
        });
    }
    std::this_thread::sleep_for(200ms);
    rt.shutdown();
    for (auto& s : spawners) s.join();

    EXPECT_EQ(refused.load(), threads) << "every spawner must eventually see runtime_shut_down";
    EXPECT_EQ(other_errors.load(), 0);
    EXPECT_GT(spawned.load(), 0u);
    EXPECT_EQ(joined_ok.load() + joined_cancelled.load(), spawned.load());
    EXPECT_EQ(ran.load(), joined_ok.load()) << "a fiber that started must finish normally (yield never throws)";
    EXPECT_EQ(rt.stats().fibers_alive, 0u);
}

// Regression: worker::yq_flush() pushed the yield ring's head into the
// stealable deque before unlinking it, so a thief could run and free the fiber
// while the owner still wrote its link (TSan: race on fiber::next_run in a
// reused fiber block). Here short-lived fibers yield a few times and exit
// while other workers sleep and wake (so rings are flushed) and steal.
TEST_P(RuntimeTest, RegressionYieldRingFlushTouchedAStolenFiber) {
    constexpr int rounds = 200;
    const int per_round = static_cast<int>(weft_test::scaled(2000) < 64 ? 64 : weft_test::scaled(2000));
    std::atomic<std::uint64_t> done{0};
    const auto deadline = std::chrono::steady_clock::now() + 1500ms;
    int ran = 0;
    for (; ran < rounds && std::chrono::steady_clock::now() < deadline; ++ran) {
        rt.block_on([&] {
            std::vector<weft::join_handle<void>> hs;
            hs.reserve(per_round);
            for (int i = 0; i < per_round; ++i)
                hs.push_back(weft::spawn([&, i] {
                    for (int k = 0; k < 1 + i % 3; ++k) weft::this_fiber::yield();
                    done.fetch_add(1, std::memory_order_relaxed);
                }));
            for (auto& h : hs) h.join();
        });
    }
    EXPECT_EQ(done.load(), static_cast<std::uint64_t>(ran) * per_round);
    EXPECT_GT(ran, 0);
}
