/// @file
/// Internal: conversions from std::chrono to weft's deadlines (steady-clock
/// nanoseconds, saturating: hours::max() means "never"). Not a public API.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ratio>
#include <stdexcept>
#include <type_traits>

#include <weft/config.hpp>

namespace weft {

namespace detail {
/// std::chrono::steady_clock now, in nanoseconds.
WEFT_API std::int64_t steady_now_ns() noexcept;

/// The deadline that never comes.
inline constexpr std::int64_t no_deadline = std::numeric_limits<std::int64_t>::max();

/// d in nanoseconds, rounded up, saturated to the int64 range (so that
/// hours::max() means "forever", not a wrapped-around past deadline).
/// A NaN duration throws std::invalid_argument.
template <class Rep, class Period>
std::int64_t saturating_ns(const std::chrono::duration<Rep, Period>& d) {
    using namespace std::chrono;
    using limits = std::numeric_limits<std::int64_t>;
    const duration<long double, std::nano> exact = d;
    if (exact.count() != exact.count()) throw std::invalid_argument("weft: a duration that is not a number (NaN)");
    if (exact.count() >= static_cast<long double>(limits::max())) return limits::max();
    if (exact.count() <= static_cast<long double>(limits::min())) return limits::min();
    if constexpr (treat_as_floating_point_v<Rep>) {
        // From the exact value: ceil<nanoseconds>(d) would compute in Rep (a
        // float just below 2^63 ns rounds up to 2^63, and the conversion overflows).
        const long double up = std::ceil(exact.count());
        return up >= static_cast<long double>(limits::max()) ? limits::max() : static_cast<std::int64_t>(up);
    } else if constexpr (std::is_integral_v<Rep>) {
        // In 128 bits: std's conversion computes count * num in 64 and can wrap
        // although the result fits (units that are no whole number of
        // nanoseconds: 1/3 s wrapped from ~97 years, 1/44100 s from ~242 days).
        // The checks above bound the result, so count * num fits.
        __extension__ typedef __int128 wide;  // GCC and Clang on x86-64 and AArch64
        using to_ns = std::ratio_divide<Period, std::nano>;
        const wide scaled = static_cast<wide>(d.count()) * to_ns::num;
        wide q = scaled / to_ns::den;
        if (scaled % to_ns::den > 0) ++q;  // rounded up (truncation already is, below 0)
        if (q >= limits::max()) return limits::max();
        if (q <= limits::min()) return limits::min();
        return static_cast<std::int64_t>(q);
    } else {
        return duration_cast<nanoseconds>(ceil<nanoseconds>(d)).count();
    }
}

/// now + d, saturated (the largest value means "no deadline").
inline std::int64_t deadline_after_ns(std::int64_t d_ns) noexcept {
    const std::int64_t now = steady_now_ns();
    if (d_ns > 0 && now > std::numeric_limits<std::int64_t>::max() - d_ns) return std::numeric_limits<std::int64_t>::max();
    return now + d_ns;
}

/// For a deadline on another clock (std's rule, as libstdc++ keeps it): a
/// wait converted to the steady clock that timed out while Clock::now() < t
/// has not reached t (that clock was stepped back, or runs slower): the
/// caller waits again, converting anew. Always false for steady_clock.
template <class Clock, class Duration>
bool before_on_own_clock(const std::chrono::time_point<Clock, Duration>& t) {
    if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) return false;
    else return Clock::now() < t;
}

template <class Clock, class Duration>
std::int64_t to_steady_ns(const std::chrono::time_point<Clock, Duration>& t);

/// wait(steady deadline ns) -> bool (false: timed out), again while `t` has
/// not passed on its own clock (before_on_own_clock).
template <class Clock, class Duration, class Wait>
bool wait_until_own_clock(const std::chrono::time_point<Clock, Duration>& t, Wait&& wait) {
    for (;;) {
        if (wait(to_steady_ns(t))) return true;
        if (!before_on_own_clock(t)) return false;
    }
}

template <class Clock, class Duration>
std::int64_t to_steady_ns(const std::chrono::time_point<Clock, Duration>& t) {
    using namespace std::chrono;
    if constexpr (std::is_same_v<Clock, steady_clock>) {
        return saturating_ns(t.time_since_epoch());
    } else {  // another clock: measured from now (callers re-check it: before_on_own_clock)
        if (t == time_point<Clock, Duration>::max()) return no_deadline;  // any clock's max(): never
        // In long double: t - now in t's own type overflows for time_point::min() (a
        // deadline long past would wrap into the far future) or for coarse durations.
        using exact = duration<long double, std::nano>;
        return deadline_after_ns(saturating_ns(exact(t.time_since_epoch()) - exact(Clock::now().time_since_epoch())));
    }
}
}  // namespace detail

}  // namespace weft
