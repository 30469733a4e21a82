/// @file
/// `weft::latch`: std::latch, for fibers and plain OS threads alike.
///
/// Same interface and rules as std::latch (a single-use down-counter), and:
///  - wait() and arrive_and_wait() may suspend: a fiber parks (its worker
///    runs other fibers meanwhile), a plain thread sleeps on a futex. Fibers
///    and threads may wait on one latch. count_down() and try_wait() never
///    suspend.
///  - Waiting is a cancellation point: on a fiber cancelled by
///    runtime::shutdown(), wait() throws weft::operation_cancelled instead of
///    waiting (it returns normally if the count is already zero).
///  - What std makes a precondition fails loudly: a negative constructor
///    argument, count_down(n) with n < 0 or with n greater than the current
///    count (counting below zero) throw std::logic_error and change nothing.
///  - count_down() without waiters is one atomic read-modify-write; only the
///    count_down that reaches zero with waiters parked visits the waiter
///    queue, once, to wake them all.
///  - A waiter may destroy the latch as soon as wait() returns, even while
///    the count_down() that released it is still returning (L3).
/// All members are thread-safe.
///
/// Implementation notes (invariants and memory orders)
/// ---------------------------------------------------
/// The state is one 64-bit word: bit 0 is P ("a waiter may be parked on
/// &word_"), bits 1..63 the count. Waiters park in the parking lot keyed by
/// &word_ (detail/park.hpp; protocol P1-P4 in src/sync/parking_lot.hpp).
///  L1 The count only decreases; P is set only while the count is positive
///     (the waiter's CAS expects a positive count) and cleared only by the
///     count_down that reaches zero, in the same read-modify-write. So the
///     word is 0 exactly when the latch is open, and stays 0.
///  L2 A waiter parks only after setting P and only if, under the bucket
///     lock (validate), the count is still positive and P still set. The
///     count_down that reaches zero and read P set wakes every waiter after
///     its CAS: by P2 each waiter was either queued by then or its validate
///     sees 0 and it does not park. No lost wake-up: P and the count are one
///     word, so the waiter's CAS and every count_down are totally ordered in
///     that word's modification order (no seq_cst Dekker pair is needed, as
///     it would be for two separate variables).
///  L3 The count_down CAS is its last access to *this: the wake uses
///     unpark_on, which takes the key as a number (P4).
/// Memory orders. count_down's CAS is release; waiters load with acquire.
/// Every change to the word is a read-modify-write, so each count_down's
/// release heads a release sequence that contains the final 0: a waiter that
/// reads 0 synchronizes with every count_down (std: count_down strongly
/// happens before the waits it unblocks return). The waiter's P-setting CAS
/// is relaxed: it publishes nothing and, being a read-modify-write, does not
/// break those release sequences.
/// Tested by test/api/latch_barrier_test.cpp.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>

#include <weft/config.hpp>
#include <weft/detail/deadline.hpp>
#include <weft/detail/park.hpp>

namespace weft {

/// std::latch for fibers and threads (see the file comment). Thread-safe.
class latch {
public:
    /// The largest initial count.
    static constexpr std::ptrdiff_t max() noexcept { return std::numeric_limits<std::ptrdiff_t>::max(); }

    /// A latch that opens after `expected` arrivals. Throws std::logic_error
    /// if expected < 0 (std: precondition).
    constexpr explicit latch(std::ptrdiff_t expected) : word_(checked_initial(expected) * one) {}
    ~latch() = default;
    latch(const latch&) = delete;
    latch& operator=(const latch&) = delete;

    /// Decrements the count by `n`; the call that reaches zero wakes every
    /// waiter. Never suspends. Throws std::logic_error, changing nothing, if
    /// n < 0 or n exceeds the current count (std: precondition).
    void count_down(std::ptrdiff_t n = 1) {
        if (n < 0) throw std::logic_error("weft::latch::count_down: negative update");
        const void* key = &word_;  // L3: only the address after the CAS
        const auto un = static_cast<std::uint64_t>(n);
        std::uint64_t s = word_.load(std::memory_order_relaxed);  // relaxed: the CAS re-checks
        std::uint64_t next;
        do {
            const std::uint64_t count = s >> 1;
            if (un > count) throw std::logic_error("weft::latch::count_down: the count would go below zero");
            next = un == count ? 0 : s - un * one;  // L1: reaching zero clears P
            // release: heads a release sequence ending in the final 0 (file comment).
        } while (!word_.compare_exchange_weak(s, next, std::memory_order_release, std::memory_order_relaxed));
        if (next == 0 && (s & parked_bit)) (void)detail::unpark_on(key, std::numeric_limits<std::size_t>::max());
    }

    /// True once the count is zero. Never suspends.
    bool try_wait() const noexcept {
        return word_.load(std::memory_order_acquire) < one;  // acquire: synchronizes with every count_down (L1)
    }

    /// Waits until the count is zero. May suspend. Throws
    /// operation_cancelled on a cancelled fiber that would have to wait.
    void wait() const {
        if (!try_wait()) wait_slow();
    }

    /// count_down(n), then wait(). May suspend. Throws as those two do.
    void arrive_and_wait(std::ptrdiff_t n = 1) {
        count_down(n);
        wait();
    }

private:
    static constexpr std::uint64_t parked_bit = 1;  // P
    static constexpr std::uint64_t one = 2;         // one unit of the count

    static constexpr std::uint64_t checked_initial(std::ptrdiff_t expected) {
        if (expected < 0) throw std::logic_error("weft::latch: negative initial count");
        return static_cast<std::uint64_t>(expected);
    }

    void wait_slow() const {
        for (;;) {
            std::uint64_t s = word_.load(std::memory_order_acquire);  // acquire: as in try_wait()
            if (s < one) return;
            // relaxed: P publishes nothing; the bucket lock orders L2.
            if (!(s & parked_bit) &&
                !word_.compare_exchange_weak(s, s | parked_bit, std::memory_order_relaxed, std::memory_order_relaxed))
                continue;
            const detail::park_outcome out = detail::park_if(
                &word_,
                [this] {
                    // relaxed: under the bucket lock (L2).
                    const std::uint64_t w = word_.load(std::memory_order_relaxed);
                    return w >= one && (w & parked_bit);
                },
                detail::no_deadline, "latch");
            if (out.result == detail::park_result::cancelled) detail::throw_cancelled();
            // unparked (possibly by a stale key, P4) or invalid: look again.
        }
    }

    mutable std::atomic<std::uint64_t> word_;  // bit 0: P; bits 1..63: the count (file comment)
};

}  // namespace weft
