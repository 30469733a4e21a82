/// @file
/// `weft::counting_semaphore<LeastMaxValue>` and `weft::binary_semaphore`:
/// std's semaphores, for fibers and plain OS threads alike.
///
/// Same interface and rules as std::counting_semaphore, and:
///  - acquire(), try_acquire_for() and try_acquire_until() may suspend: a
///    fiber parks (its worker runs other fibers meanwhile), a plain thread
///    sleeps on a futex. Fibers and threads may wait on one semaphore.
///    try_acquire() and release() never suspend.
///  - Waiting is a cancellation point: on a fiber cancelled by
///    runtime::shutdown(), acquire() and the timed forms throw
///    weft::operation_cancelled instead of waiting (a unit that is available
///    is still taken without throwing). Plain threads are never cancelled.
///  - The timed forms return false once the deadline has passed without a
///    unit, never before it; a deadline in the past still tries once.
///  - max() is LeastMaxValue itself (so binary_semaphore::max() == 1); the
///    default LeastMaxValue is the largest std::ptrdiff_t.
///  - What std makes a precondition fails loudly: release(n) with n < 0, or
///    with n > max() minus the current count (releasing a binary_semaphore
///    that is already 1, say), and a constructor argument outside [0, max()]
///    throw std::logic_error and leave the count unchanged.
///  - Uncontended, acquire and release are one atomic read-modify-write each:
///    no lock, no syscall, no allocation. release() visits the waiter queue
///    only when a waiter may be parked.
///  - No fairness, as in std: a running caller may take a unit before a
///    parked one that was woken for it (the woken one then waits again).
///  - A waiter may destroy the semaphore as soon as its acquire returns, even
///    while the release() that woke it is still returning (the common "signal
///    completion" pattern): release() does not touch the object after the
///    store that publishes its units (N3).
/// All members are thread-safe. The object must not be destroyed while
/// someone waits on it (as with std::counting_semaphore).
///
/// Implementation notes (invariants and memory orders)
/// ---------------------------------------------------
/// The state is one 64-bit word: bit 0 is P ("a waiter may be parked on
/// &word_"), bits 1..63 the count. Waiters park in the parking lot keyed by
/// &word_ (detail/park.hpp; protocol P1-P4 in src/sync/parking_lot.hpp).
///  N1 A waiter parks only after setting P and only if, under the bucket
///     lock (park_on's validate), the word is still exactly P: count 0 and P
///     set. P is cleared only under the bucket lock, by a release that found
///     no other waiter queued (unpark_one_on's may_have_more).
///  N2 A release whose read-modify-write sees P clear adds its units and is
///     done (the fast path). One that sees P set adds its units *inside*
///     unpark_one_on's callback, under the bucket lock, after claiming the
///     oldest waiter, and in the same read-modify-write clears P unless more
///     waiters are queued. Units beyond the first wake up to n-1 more waiters
///     by key only (unpark_on), leaving P set; a woken waiter that finds no
///     unit (a running caller took it) sets P again and parks again.
///  N3 In release(), the read-modify-write that publishes the units is the
///     last access to *this: after it, the fast path returns and the slow
///     path only completes the wake and unlocks the bucket (memory of the
///     lot, not of the semaphore) or calls unpark_on, which uses the key as
///     a number. So a caller that takes the unit may destroy the semaphore.
///  N4 A waiter that times out or is cancelled leaves P set behind it: the
///     next release visits the lot, finds no one and clears P (one extra
///     bucket visit, never a lost wake-up).
/// No lost wake-up. With a waiter flag beside the count, two locations, a
/// release would need the Dekker pattern: the waiter stores "I am waiting"
/// then loads the count, the releaser stores the count then loads the flag,
/// both seq_cst, so that at least one of them sees the other's store (a
/// StoreLoad that acquire/release does not give). Here the count and P live
/// in one word and every change to it is a read-modify-write, so all of them
/// are totally ordered in that word's modification order: the single order
/// that seq_cst would have provided, without a fence or a second access. Either the waiter's CAS that
/// sets P comes first, and the release's CAS reads P and takes the slow
/// path, whose bucket lock then orders it against the waiter's validate
/// (P2: the waiter is queued before the callback runs, or its validate sees
/// the new count and does not park); or the release comes first, and the
/// waiter's CAS (expecting count 0) fails, or its validate sees count > 0.
/// Memory orders. The CAS that takes a unit is acquire, the ones that add
/// units are release: a caller that takes a unit sees everything its
/// releaser did before release() (std's "strongly happens before"). Setting
/// P is relaxed: it publishes nothing, the bucket lock orders N1 with N2.
/// Loads feeding a CAS are relaxed: the CAS re-checks.
/// Rejected: a separate waiter counter beside the count (two locations need
/// the seq_cst Dekker pair and a second atomic op on every release); direct
/// hand-off of a unit to the woken waiter (fair, but a wake-up per unit
/// even when a running caller could have taken it at once).
/// Tested by test/api/semaphore_test.cpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>

#include <weft/config.hpp>
#include <weft/detail/deadline.hpp>
#include <weft/detail/park.hpp>

namespace weft {

namespace detail {

/// The untemplated state machine behind counting_semaphore (see the file comment).
class semaphore_base {
public:
    semaphore_base(const semaphore_base&) = delete;
    semaphore_base& operator=(const semaphore_base&) = delete;

protected:
    static constexpr std::uint64_t parked_bit = 1;  // P
    static constexpr std::uint64_t one = 2;         // one unit of the count

    constexpr semaphore_base(std::ptrdiff_t desired, std::ptrdiff_t max)
        : word_(checked_initial(desired, max) * one) {}
    ~semaphore_base() = default;

    bool try_take() noexcept {
        std::uint64_t s = word_.load(std::memory_order_relaxed);  // relaxed: the CAS re-checks
        while (s >= one) {
            // acquire: pairs with the release that added the unit (file comment, memory orders).
            if (word_.compare_exchange_weak(s, s - one, std::memory_order_acquire, std::memory_order_relaxed))
                return true;
        }
        return false;
    }

    /// Takes a unit before `deadline_ns` (false: timed out). Throws
    /// operation_cancelled on a cancelled fiber that would have to wait.
    bool take_until(std::int64_t deadline_ns) {
        for (;;) {
            std::uint64_t s = word_.load(std::memory_order_relaxed);  // relaxed: the CASes re-check
            if (s >= one) {
                // acquire: as in try_take().
                if (word_.compare_exchange_weak(s, s - one, std::memory_order_acquire, std::memory_order_relaxed))
                    return true;
                continue;
            }
            if (deadline_ns != no_deadline && steady_now_ns() >= deadline_ns) return false;  // no stale P (N4)
            // relaxed: P publishes nothing; the bucket lock orders N1 against N2.
            if (!(s & parked_bit) &&
                !word_.compare_exchange_weak(s, s | parked_bit, std::memory_order_relaxed, std::memory_order_relaxed))
                continue;
            const park_outcome out = park_if(
                &word_,
                [this] {
                    return word_.load(std::memory_order_relaxed) == parked_bit;  // relaxed: under the bucket lock (N1)
                },
                deadline_ns, "semaphore");
            if (out.result == park_result::cancelled) throw_cancelled();
            if (out.result == park_result::timeout) return try_take();  // one last try at the deadline
            // unparked (N2) or invalid (N1): look again.
        }
    }

    /// Adds n units and wakes up to n waiters. Throws std::logic_error if n is
    /// negative or the count would exceed `max`, leaving the count unchanged.
    void give(std::ptrdiff_t n, std::ptrdiff_t max) {
        if (n < 0) throw std::logic_error("weft::counting_semaphore::release: negative update");
        if (n == 0) return;
        std::uint64_t s = word_.load(std::memory_order_relaxed);  // relaxed: the CAS re-checks
        while (!(s & parked_bit)) {                               // N2, fast path
            if (static_cast<std::uint64_t>(n) > static_cast<std::uint64_t>(max) - (s >> 1)) overflow();
            // release: publishes the caller's writes to whoever takes these units. Last access to *this (N3).
            if (word_.compare_exchange_weak(s, s + static_cast<std::uint64_t>(n) * one, std::memory_order_release,
                                            std::memory_order_relaxed))
                return;
        }
        give_slow(n, max);
    }

private:
    static constexpr std::uint64_t checked_initial(std::ptrdiff_t desired, std::ptrdiff_t max) {
        if (desired < 0 || desired > max)
            throw std::logic_error("weft::counting_semaphore: initial count outside [0, max()]");
        return static_cast<std::uint64_t>(desired);
    }

    [[noreturn]] static void overflow() {
        throw std::logic_error("weft::counting_semaphore::release: the count would exceed max()");
    }

    struct give_ctx {
        std::atomic<std::uint64_t>* word;
        std::uint64_t n;
        std::uint64_t max;
        bool overflowed = false;
        bool more = false;  // other waiters were queued behind the one woken
    };

    static std::uintptr_t give_locked(void* p, unpark_info info) noexcept {
        auto& c = *static_cast<give_ctx*>(p);
        c.more = info.did_unpark && info.may_have_more;
        std::uint64_t s = c.word->load(std::memory_order_relaxed);  // relaxed: the CAS re-checks
        for (;;) {
            if (c.n > c.max - (s >> 1)) {  // the woken waiter, if any, finds P set and parks again
                c.overflowed = true;
                return 0;
            }
            const std::uint64_t next = (s + c.n * one) & ~(c.more ? 0 : parked_bit);  // N1: clear P iff none left
            // release: as in give()'s fast path. Last access to the semaphore (N3).
            if (c.word->compare_exchange_weak(s, next, std::memory_order_release, std::memory_order_relaxed))
                return 0;
        }
    }

    void give_slow(std::ptrdiff_t n, std::ptrdiff_t max) {
        const void* key = &word_;  // N3: only the address from here on
        give_ctx c{&word_, static_cast<std::uint64_t>(n), static_cast<std::uint64_t>(max)};
        // run_here = false: the releaser usually runs on (as after a mutex unlock), so the woken
        // fiber is queued where an idle worker can take it at once.
        unpark_one_on(key, &give_locked, &c, /*run_here=*/false);  // N2
        if (c.overflowed) overflow();
        if (n > 1 && c.more) (void)unpark_on(key, static_cast<std::size_t>(n - 1));  // N2, by key only (N3)
    }

    std::atomic<std::uint64_t> word_;  // bit 0: P; bits 1..63: the count (file comment)
};

}  // namespace detail

/// std::counting_semaphore for fibers and threads (see the file comment).
/// Thread-safe.
template <std::ptrdiff_t LeastMaxValue = std::numeric_limits<std::ptrdiff_t>::max()>
class counting_semaphore : private detail::semaphore_base {
    static_assert(LeastMaxValue >= 0, "counting_semaphore: LeastMaxValue must not be negative");

public:
    /// The largest count: LeastMaxValue.
    static constexpr std::ptrdiff_t max() noexcept { return LeastMaxValue; }

    /// A semaphore holding `desired` units. Throws std::logic_error unless
    /// 0 <= desired <= max() (std: precondition).
    constexpr explicit counting_semaphore(std::ptrdiff_t desired) : semaphore_base(desired, LeastMaxValue) {}
    ~counting_semaphore() = default;
    counting_semaphore(const counting_semaphore&) = delete;
    counting_semaphore& operator=(const counting_semaphore&) = delete;

    /// Adds `update` units and wakes up to that many waiters. Never suspends.
    /// Throws std::logic_error, changing nothing, if update < 0 or the count
    /// would exceed max() (std: precondition).
    void release(std::ptrdiff_t update = 1) { give(update, LeastMaxValue); }

    /// Takes a unit, waiting while there is none. May suspend. Throws
    /// operation_cancelled on a cancelled fiber that would have to wait.
    void acquire() {
        if (!try_take()) (void)take_until(detail::no_deadline);
    }

    /// Takes a unit if one is available (never fails spuriously). Never suspends.
    bool try_acquire() noexcept { return try_take(); }

    /// Takes a unit, waiting at most `d`; false if none came in time. May
    /// suspend. Throws operation_cancelled as acquire() does.
    template <class Rep, class Period>
    bool try_acquire_for(const std::chrono::duration<Rep, Period>& d) {
        if (try_take()) return true;
        return take_until(detail::deadline_after_ns(detail::saturating_ns(d)));
    }

    /// Takes a unit, waiting until `t` at most; false if none came in time.
    /// May suspend. Throws operation_cancelled as acquire() does.
    template <class Clock, class Duration>
    bool try_acquire_until(const std::chrono::time_point<Clock, Duration>& t) {
        if (try_take()) return true;
        return detail::wait_until_own_clock(t, [this](std::int64_t ns) { return take_until(ns); });
    }
};

/// std::binary_semaphore: max() == 1, so a release() while the count is 1
/// throws std::logic_error.
using binary_semaphore = counting_semaphore<1>;

}  // namespace weft
