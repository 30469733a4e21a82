/// @file
/// `weft::after(d)` and `weft::ticker`: Go's time.After and time.Ticker,
/// delivering on `channel<std::chrono::steady_clock::time_point>`, so they
/// work in select (from fibers and plain threads alike).
///
/// Both run on callback timers: no fiber waits for them. They fire on one
/// process-wide timer thread (started at the first use, sleeping on a futex
/// until the earliest deadline; idle costs nothing), which only does a
/// non-blocking send: so a deadline is met within a thread wake-up (tens of
/// microseconds) whatever the workers are doing, and they work with no
/// runtime at all. (Timed waits — sleep_for, the _for/_until forms — use the
/// per-worker timer heaps instead: see timer.hpp.)
#pragma once

#include <chrono>
#include <cstdint>

#include <weft/channel.hpp>
#include <weft/config.hpp>
#include <weft/detail/deadline.hpp>

namespace weft {

namespace detail {
struct tick_timer;
/// Sends steady_clock::now() on c (try_send: dropped if full) at deadline_ns,
/// then every period_ns (> 0) while period_ns != 0. Retains c until stopped or
/// fired for the last time. Throws std::bad_alloc, or std::system_error if
/// the timer thread cannot be started.
WEFT_API tick_timer* tick_timer_start(chan* c, std::int64_t deadline_ns, std::int64_t period_ns);
/// No tick is sent after this returns (one in the channel stays there). Idempotent.
WEFT_API void tick_timer_stop(tick_timer* t) noexcept;
/// Drops the caller's reference; a pending timer still fires (after() relies on it).
WEFT_API void tick_timer_release(tick_timer* t) noexcept;
/// Stops, then fires every period_ns from now on (stays stopped if memory runs out).
WEFT_API void tick_timer_reset(tick_timer* t, std::int64_t period_ns) noexcept;
}  // namespace detail

/// A channel (capacity 1) that receives the time once, at least `d` from
/// now; a non-positive `d` delivers at once. The timer keeps the channel
/// (one slot) alive until it fires, even if every handle is gone, as Go's
/// time.After did before Go 1.23: prefer a ticker or on_timeout for long
/// durations created in a loop. Never suspends; callable from anywhere.
/// Throws std::bad_alloc, or std::system_error if the process-wide timer
/// thread cannot be started (at the first timer of the process, and of a
/// fork() child: the child forgets the timers armed before the fork).
template <class Rep, class Period>
channel<std::chrono::steady_clock::time_point> after(const std::chrono::duration<Rep, Period>& d) {
    channel<std::chrono::steady_clock::time_point> ch(1);
    const std::int64_t deadline = detail::deadline_after_ns(detail::saturating_ns(d));
    if (deadline <= detail::steady_now_ns()) {
        (void)ch.try_send(std::chrono::steady_clock::now());
    } else {
        detail::tick_timer_release(detail::tick_timer_start(ch.native_handle(), deadline, 0));
    }
    return ch;
}

/// Sends the time every `d` on chan() (capacity 1). A tick the reader has not
/// taken when the next one is due is dropped, as in Go, so a slow reader sees
/// the latest pace, not a backlog. Thread-safe; never suspends.
class WEFT_API ticker {
public:
    using clock = std::chrono::steady_clock;

    /// Starts ticking; the first tick comes `d` from now. A non-positive `d`
    /// throws std::invalid_argument (Go panics). Throws std::bad_alloc, or
    /// std::system_error if the process-wide timer thread cannot be started.
    template <class Rep, class Period>
    explicit ticker(const std::chrono::duration<Rep, Period>& d) : ticker(detail::saturating_ns(d), 0) {}
    /// Stops it (the channel handles stay valid).
    ~ticker();
    ticker(const ticker&) = delete;
    ticker& operator=(const ticker&) = delete;

    /// The channel the ticks arrive on (a handle: copy it freely).
    const channel<clock::time_point>& chan() const noexcept { return ch_; }

    /// No tick is sent after stop() returns; a tick already in the channel
    /// stays there. The channel is not closed (as in Go). Idempotent.
    void stop() noexcept;

    /// Ticks every `d` from now on (also after stop()). A non-positive `d`
    /// throws std::invalid_argument. Should memory run out for the timer
    /// heap, or the timer thread fail to start (in a fork() child), the
    /// ticker stays stopped.
    template <class Rep, class Period>
    void reset(const std::chrono::duration<Rep, Period>& d) {
        reset_ns(detail::saturating_ns(d));
    }

private:
    ticker(std::int64_t period_ns, int);
    void reset_ns(std::int64_t period_ns);

    channel<clock::time_point> ch_;
    detail::tick_timer* t_;
};

}  // namespace weft
