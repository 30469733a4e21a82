/// @file
/// Sleeping and one-shot timers. Every timed wait in weft goes through one
/// internal "park until woken or deadline" path, on the steady clock.
///
/// Resolution and slack: a deadline is kept in nanoseconds of
/// std::chrono::steady_clock. A fiber whose deadline passes is made runnable
/// by the worker that armed it (or any searching worker) the next time it
/// schedules: at once when the worker is idle (it sleeps on its futex with a
/// timeout at the earliest deadline), otherwise when the running fiber next
/// blocks or yields. sleep_for(d) never returns early; sleep_for(1us) costs a
/// park and a wake (a few microseconds); sleep_for(0) or a past deadline does
/// not park: it yields (other ready fibers may run first).
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <weft/config.hpp>
#include <weft/detail/deadline.hpp>
#include <weft/detail/task.hpp>

namespace weft {

namespace detail {
/// Parks the calling fiber (or sleeps the calling thread) until steady-clock
/// nanoseconds `deadline_ns`. Throws operation_cancelled on a cancelled fiber.
WEFT_API void sleep_until_steady_ns(std::int64_t deadline_ns);
}  // namespace detail

namespace this_fiber {

/// Suspends the calling fiber until `t` (a plain thread sleeps). May suspend.
/// Throws operation_cancelled if the fiber is cancelled meanwhile. Thread-safe.
template <class Clock, class Duration>
void sleep_until(const std::chrono::time_point<Clock, Duration>& t) {
    do {
        detail::sleep_until_steady_ns(detail::to_steady_ns(t));
    } while (detail::before_on_own_clock(t));  // std: never before Clock::now() >= t
}

/// Suspends the calling fiber for at least `d` (a plain thread sleeps). A zero or
/// negative `d` yields instead. May suspend. Throws operation_cancelled as above,
/// and std::invalid_argument for a NaN `d`.
template <class Rep, class Period>
void sleep_for(const std::chrono::duration<Rep, Period>& d) {
    detail::sleep_until_steady_ns(detail::deadline_after_ns(detail::saturating_ns(d)));
}

}  // namespace this_fiber

/// A one-shot timer on the steady clock, pending from construction until its
/// deadline. Thread-safe: any fiber or thread may wait, cancel or reset it.
/// Not copyable or movable (waiters refer to it). Destroying it while it is
/// pending and some fiber or thread waits on it aborts with a message; once
/// it is cancelled or expired it may be destroyed at once, as a notified
/// std::condition_variable may (the destructor lets woken waiters return).
class WEFT_API timer {
public:
    using clock = std::chrono::steady_clock;

    /// Pending, expiring `d` from now (any duration type: converted without
    /// overflow, so hours::max() never expires). A NaN `d` throws
    /// std::invalid_argument, as in sleep_for and every *_for call. Never
    /// suspends; callable from fibers and plain threads.
    template <class Rep, class Period>
    explicit timer(const std::chrono::duration<Rep, Period>& d) : timer(detail::saturating_ns(d), from_ns_tag{}) {}
    /// May yield (a fiber, or a plain thread its CPU) while woken waiters are
    /// still leaving wait(); see the class comment for when it aborts.
    ~timer();
    timer(const timer&) = delete;
    timer& operator=(const timer&) = delete;

    /// Waits until the timer expires (true) or is cancelled (false); returns at
    /// once when it already has. May suspend. Throws operation_cancelled on a
    /// cancelled fiber.
    bool wait();

    /// Stops a pending timer: true if it was pending (it will not expire), false
    /// if it had already expired or been cancelled. Wakes every waiter: they
    /// return false, even if a reset() comes before they run. Never suspends.
    bool cancel() noexcept;

    /// Re-arms the timer to expire `d` from now, whatever its state; waiters
    /// keep waiting for the new deadline, except those whose deadline had
    /// already passed (they return true: they saw it expire). Never suspends.
    /// (A NaN `d` terminates, as every exception in a noexcept call does.)
    template <class Rep, class Period>
    void reset(const std::chrono::duration<Rep, Period>& d) noexcept {
        reset_ns(detail::saturating_ns(d));
    }

    /// True once the deadline has passed and the timer was not cancelled since
    /// its last reset. Never suspends.
    bool expired() const noexcept;

    /// The current deadline. Never suspends.
    clock::time_point deadline() const noexcept;

private:
    struct from_ns_tag {};
    timer(std::int64_t d_ns, from_ns_tag);
    void reset_ns(std::int64_t d_ns) noexcept;
    detail::timer_state& state() const noexcept;

    // The state lives inline (a timer never moves): no allocation per timer.
    // Its size is checked against detail::timer_state in src/time/timer.cpp.
    alignas(8) mutable unsigned char storage_[40];
};

}  // namespace weft
