// include/weft/detail/deadline.hpp: conversions of std::chrono values into
// weft's deadlines (steady-clock ns) saturate instead of overflowing. A
// system_clock::time_point::min() deadline once wrapped into the far future
// (signed overflow in t - now), so a wait meant to time out at once hung.
#include <chrono>
#include <cstdint>
#include <limits>

#include <gtest/gtest.h>
#include <weft/detail/deadline.hpp>

using namespace std::chrono;
using weft::detail::no_deadline;
using weft::detail::saturating_ns;
using weft::detail::steady_now_ns;
using weft::detail::to_steady_ns;

TEST(Deadline, SaturatingNsClampsHugeDurations) {
    EXPECT_EQ(saturating_ns(hours::max()), no_deadline);
    EXPECT_EQ(saturating_ns(hours::min()), std::numeric_limits<std::int64_t>::min());
    EXPECT_EQ(saturating_ns(seconds(3)), 3'000'000'000);
    EXPECT_EQ(saturating_ns(duration<double, std::micro>(1.5)), 1500);
    EXPECT_EQ(saturating_ns(duration<double, std::nano>(0.2)), 1);  // rounded up: never early
}

TEST(Deadline, OtherClocksSaturateAtBothEnds) {
    const std::int64_t before = steady_now_ns();
    // Long past: a deadline at or before now, not a wrapped-around future.
    EXPECT_LE(to_steady_ns(system_clock::time_point::min()), steady_now_ns());
    EXPECT_LE(to_steady_ns(time_point<system_clock, hours>(hours::min())), steady_now_ns());
    EXPECT_LE(to_steady_ns(system_clock::time_point{}), steady_now_ns());  // 1970
    // Far future: system_clock's max() is in 2262, two centuries off; hours' never comes.
    EXPECT_GT(to_steady_ns(system_clock::time_point::max()), steady_now_ns() + 200LL * 365 * 86400 * 1'000'000'000);
    EXPECT_EQ(to_steady_ns(time_point<system_clock, hours>(hours::max())), no_deadline);
    // An ordinary one lands about where it should.
    const std::int64_t d = to_steady_ns(system_clock::now() + seconds(10));
    EXPECT_GE(d, before + 9'000'000'000);
    EXPECT_LE(d, steady_now_ns() + 11'000'000'000);
}

TEST(Deadline, SteadyClockKeepsItsOwnTicks) {
    EXPECT_EQ(to_steady_ns(steady_clock::time_point::max()), no_deadline);
    EXPECT_EQ(to_steady_ns(steady_clock::time_point(nanoseconds(42))), 42);
    EXPECT_EQ(to_steady_ns(time_point<steady_clock, hours>(hours::max())), no_deadline);
}
