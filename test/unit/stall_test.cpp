// classify_stall (src/diag/stall.hpp, S4): the verdict from a stalled worker
// thread's CPU time and state. The overloaded-machine case cannot be staged
// reliably in a test process, so the rule itself is checked here.
// Internal dependency (weft_internal_dep).
#include "diag/stall.hpp"

#include <cstdint>

#include <gtest/gtest.h>

namespace {

using weft::detail::classify_stall;
using weft::detail::stall_kind;

constexpr std::int64_t ms = 1'000'000;
constexpr std::int64_t threshold = 100 * ms;

TEST(ClassifyStall, NothingBeforeTheThreshold) {
    EXPECT_EQ(classify_stall('R', 99 * ms, 99 * ms, threshold), stall_kind::none);
    EXPECT_EQ(classify_stall('S', 50 * ms, 0, threshold), stall_kind::none);
}

TEST(ClassifyStall, OnACpuForTheThresholdIsComputing) {
    EXPECT_EQ(classify_stall('R', 100 * ms, 100 * ms, threshold), stall_kind::computing);
    EXPECT_EQ(classify_stall('S', 300 * ms, 150 * ms, threshold), stall_kind::computing);  // mostly busy, asleep now
    EXPECT_EQ(classify_stall(0, 100 * ms, 100 * ms, threshold), stall_kind::computing);      // no /proc needed
}

TEST(ClassifyStall, AsleepInTheKernelIsBlocked) {
    EXPECT_EQ(classify_stall('S', 100 * ms, 1 * ms, threshold), stall_kind::blocked);
    EXPECT_EQ(classify_stall('D', 150 * ms, 0, threshold), stall_kind::blocked);
}

TEST(ClassifyStall, RunnableWithoutCpuIsTheMachineNotTheFiber) {
    EXPECT_EQ(classify_stall('R', 150 * ms, 5 * ms, threshold), stall_kind::none);   // waits: maybe a steal burst
    EXPECT_EQ(classify_stall('R', 999 * ms, 50 * ms, threshold), stall_kind::none);
    EXPECT_EQ(classify_stall('R', 1000 * ms, 50 * ms, threshold), stall_kind::starved);  // 10 x: say so
}

TEST(ClassifyStall, WithoutStateOrClockTheOldVerdict) {
    EXPECT_EQ(classify_stall(0, 100 * ms, 1 * ms, threshold), stall_kind::unknown);
    EXPECT_EQ(classify_stall('S', 100 * ms, -1, threshold), stall_kind::unknown);
    EXPECT_EQ(classify_stall('R', 1000 * ms, -1, threshold), stall_kind::unknown);
    EXPECT_EQ(classify_stall('T', 500 * ms, 0, threshold), stall_kind::unknown);  // stopped: SIGSTOP, a debugger
}

}  // namespace
