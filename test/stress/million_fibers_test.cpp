// A million fibers alive at once, each with its own guarded stack.
// Memory-hungry (about 4.5 GB resident), so it runs on one worker count only.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <string>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

using namespace std::chrono_literals;

namespace {

struct chain {
    std::uint64_t length = 0;
    std::atomic<std::uint64_t> started{0};
    // Written by the last fiber only, read after block_on returned.
    bool all_started = false;
    std::uint64_t alive_seen = 0;
    std::string guard_mode;
};

/// Fiber k spawns fiber k+1 and parks joining it, so every fiber of the
/// chain is alive when the last one runs.
void chain_link(chain* c, std::uint64_t k) {
    c->started.fetch_add(1, std::memory_order_relaxed);
    if (k + 1 < c->length) {
        weft::spawn(chain_link, c, k + 1).join();
        return;
    }
    c->all_started = weft_test::yield_until([c] { return c->started.load(std::memory_order_relaxed) == c->length; }, 60s);
    const auto s = weft::runtime::current()->stats();
    c->alive_seen = s.fibers_alive;
    c->guard_mode = s.guard_mode;
}

}  // namespace

TEST(MillionFibers, ChainOfAMillionLiveFibersWithGuardPages) {
    chain c;
    c.length = weft_test::scaled(1'000'000);
    weft::runtime rt(weft::runtime_options{.workers = 2});
    const auto t0 = std::chrono::steady_clock::now();
    rt.block_on(chain_link, &c, std::uint64_t{0});
    const auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "[          ] " << c.length << " live fibers, guard mode " << c.guard_mode << ", " << secs
              << " s\n";

    EXPECT_EQ(c.started.load(), c.length);
    EXPECT_TRUE(c.all_started);
    EXPECT_GE(c.alive_seen, c.length);
    EXPECT_TRUE(c.guard_mode == "madvise" || c.guard_mode == "mprotect") << "guard_mode = '" << c.guard_mode << "'";
    rt.shutdown();
    EXPECT_EQ(rt.stats().fibers_alive, 0u);
}
