/// @file
/// `weft::wait_group`: Go's sync.WaitGroup, for fibers and plain OS threads
/// alike.
///
/// A counter of outstanding tasks: add(n) before starting n of them, done()
/// as each finishes, wait() until the counter is zero. As in Go:
///  - wait(), wait_for() and wait_until() may suspend: a fiber parks (its
///    worker runs other fibers meanwhile), a plain thread sleeps on a futex.
///    Fibers and threads may wait on one wait_group. add() and done() never
///    suspend.
///  - wait() returns once the counter has been zero at some moment since it
///    was called (if add() raises it again at once, a wait that was already
///    parked still returns). As in Go, a wait_group may be reused once every
///    wait() of the previous round has returned.
///  - The counter going negative (done() or add(-n) beyond the count: Go
///    panics) throws std::logic_error, and so does raising it above max();
///    either leaves the counter unchanged.
///  - Waiting is a cancellation point: on a fiber cancelled by
///    runtime::shutdown(), the waits throw weft::operation_cancelled instead
///    of waiting (they return normally if the counter is already zero).
///    wait_for() / wait_until() return false if the deadline passed first,
///    never before it.
///  - done() (or the add() that brings the counter to zero) does not touch
///    the object after the last waiter may have been released: a waiter may
///    destroy the wait_group as soon as wait() returns, e.g. one on the
///    waiter's stack that the finishing fibers refer to (W3).
///  - add()/done() without waiters is one atomic read-modify-write; only the
///    call that brings the counter to zero with waiters parked visits the
///    waiter queue, once, to wake them all.
/// All members are thread-safe. Not copyable (as in Go).
///
/// Implementation notes (invariants and memory orders)
/// ---------------------------------------------------
/// The state is one 64-bit word: bit 0 is P ("a waiter may be parked on
/// &word_"), bits 1..32 the counter, bits 33..63 a generation (wraps;
/// compared only for equality). Waiters park in the parking lot keyed by
/// &word_ (detail/park.hpp; protocol P1-P4 in src/sync/parking_lot.hpp).
///  W1 The counter never goes below zero or above max(): add() checks in the
///     CAS that changes it. An add() that brings it to zero with P set
///     clears P and increments the generation in the same CAS, then wakes
///     every waiter; with P clear it leaves the generation alone.
///  W2 A waiter notes the generation g when it starts and returns once the
///     counter is zero or the generation is no longer g (the counter was zero
///     while it waited). It parks only after setting P, and only if, under
///     the bucket lock (validate), P is still set, the counter positive and
///     the generation g. By P2 the add() that reaches zero either finds the
///     waiter queued or the waiter's validate sees its CAS and it does not
///     park. P and the counter are one word, so the waiter's CAS and the
///     add()s are totally ordered in its modification order: no lost wake-up
///     without the seq_cst Dekker pair two variables would need.
///  W3 The CAS that brings the counter to zero is the last access to *this:
///     the wake uses unpark_on, which takes the key as a number (P4). A
///     waiter woken by a stale key (a wait_group that lived at the same
///     address) re-checks W2 and parks again.
/// Memory orders. add()'s CAS is release and waiters load with acquire. All
/// changes to the word are read-modify-writes, so each done()'s release
/// heads a release sequence that contains the word a returning waiter reads
/// (zero or a new generation): every done() happens before the wait()s it
/// releases return (Go: "Done synchronizes before the return of any Wait
/// call that it unblocks"). The waiter's P-setting CAS publishes nothing
/// and, being a read-modify-write, does not break those release sequences;
/// it is acquire only so that a failed CAS that reads the word the wait
/// returns on acquires it.
/// Tested by test/api/wait_group_test.cpp.
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

/// Go's sync.WaitGroup for fibers and threads (see the file comment).
/// Thread-safe.
class wait_group {
public:
    /// The largest value of the counter.
    static constexpr std::ptrdiff_t max() noexcept { return 0xFFFF'FFFF; }

    constexpr wait_group() noexcept = default;
    ~wait_group() = default;
    wait_group(const wait_group&) = delete;
    wait_group& operator=(const wait_group&) = delete;

    /// Adds `delta` (which may be negative) to the counter; reaching zero
    /// releases every waiter. Never suspends. Throws std::logic_error,
    /// changing nothing, if the counter would go below zero or above max().
    void add(std::ptrdiff_t delta) {
        const void* key = &word_;  // W3: only the address after the CAS
        std::uint64_t s = word_.load(std::memory_order_relaxed);  // relaxed: the CAS re-checks
        std::uint64_t next;
        do {
            const auto count = static_cast<std::ptrdiff_t>(count_of(s));
            if (delta < -count) throw std::logic_error("weft::wait_group: negative counter");
            if (delta > max() - count) throw std::logic_error("weft::wait_group: counter above max()");
            const auto c = static_cast<std::uint64_t>(count + delta);
            if (c == 0 && (s & parked_bit)) next = (s & gen_mask) + gen_one;  // W1: P cleared, new generation
            else next = (s & ~count_mask) | (c << 1);
            // release: heads a release sequence that returning waiters read (file comment).
        } while (!word_.compare_exchange_weak(s, next, std::memory_order_release, std::memory_order_relaxed));
        if ((s & parked_bit) && !(next & parked_bit))
            (void)detail::unpark_on(key, std::numeric_limits<std::size_t>::max());  // W3
    }

    /// add(-1). Never suspends. Throws std::logic_error if the counter is zero.
    void done() { add(-1); }

    /// Waits until the counter is zero (W2). May suspend. Throws
    /// operation_cancelled on a cancelled fiber that would have to wait.
    void wait() { (void)wait_until_ns(detail::no_deadline); }

    /// As wait(), for at most `d`: false if the counter was not zero in time.
    /// May suspend. Throws operation_cancelled as wait() does.
    template <class Rep, class Period>
    bool wait_for(const std::chrono::duration<Rep, Period>& d) {
        return wait_until_ns(detail::deadline_after_ns(detail::saturating_ns(d)));
    }

    /// As wait(), until `t` at most: false if the counter was not zero in
    /// time. May suspend. Throws operation_cancelled as wait() does.
    template <class Clock, class Duration>
    bool wait_until(const std::chrono::time_point<Clock, Duration>& t) {
        return detail::wait_until_own_clock(t, [this](std::int64_t ns) { return wait_until_ns(ns); });
    }

private:
    static constexpr std::uint64_t parked_bit = 1;  // P
    static constexpr std::uint64_t count_mask = 0xFFFF'FFFFull << 1;
    static constexpr std::uint64_t gen_one = 1ull << 33;
    static constexpr std::uint64_t gen_mask = ~(gen_one - 1);

    static constexpr std::uint64_t count_of(std::uint64_t s) noexcept { return (s & count_mask) >> 1; }

    bool wait_until_ns(std::int64_t deadline_ns) {
        std::uint64_t s = word_.load(std::memory_order_acquire);  // acquire: see the file comment
        const std::uint64_t gen = s & gen_mask;
        for (;;) {
            if (count_of(s) == 0 || (s & gen_mask) != gen) return true;  // W2
            if (deadline_ns != detail::no_deadline && detail::steady_now_ns() >= deadline_ns) return false;
            // acquire: P publishes nothing (the bucket lock orders W2), but on failure s may be the word
            // this wait returns on; success takes the same order (GCC rejects a weaker one).
            if (!(s & parked_bit) &&
                !word_.compare_exchange_weak(s, s | parked_bit, std::memory_order_acquire, std::memory_order_acquire))
                continue;
            const detail::park_outcome out = detail::park_if(
                &word_,
                [this, gen] {
                    // relaxed: under the bucket lock (W2).
                    const std::uint64_t w = word_.load(std::memory_order_relaxed);
                    return (w & parked_bit) && count_of(w) != 0 && (w & gen_mask) == gen;
                },
                deadline_ns, "wait_group");
            if (out.result == detail::park_result::cancelled) detail::throw_cancelled();
            s = word_.load(std::memory_order_acquire);  // acquire: see the file comment
            if (out.result == detail::park_result::timeout) return count_of(s) == 0 || (s & gen_mask) != gen;
        }
    }

    std::atomic<std::uint64_t> word_{0};  // bit 0: P; bits 1..32: counter; bits 33..63: generation
};

}  // namespace weft
