/// @file
/// `weft::barrier<CompletionFunction>`: std::barrier, for fibers and plain OS
/// threads alike.
///
/// Same interface and rules as std::barrier (a reusable barrier that runs a
/// completion step once per phase), and:
///  - wait() and arrive_and_wait() may suspend: a fiber parks (its worker
///    runs other fibers meanwhile), a plain thread sleeps on a futex. Fibers
///    and threads may take part in one barrier. arrive() and
///    arrive_and_drop() never suspend, except that the arrival that completes
///    a phase runs the completion function, which may.
///  - The completion function runs once per phase, on the participant whose
///    arrival completed the phase (inside its arrive(), arrive_and_wait() or
///    arrive_and_drop()), after every arrival of the phase and before any
///    waiter of the phase is unblocked or any arrival of the next phase is
///    counted. As in std it must be nothrow-invocable (checked at compile
///    time); if it throws anyway, std::terminate is called.
///  - Waiting is a cancellation point: on a fiber cancelled by
///    runtime::shutdown(), wait() throws weft::operation_cancelled instead of
///    waiting (it returns normally if the phase has already completed). The
///    cancelled fiber's arrival still counts.
///  - What std makes a precondition fails loudly and changes nothing: a
///    constructor argument outside [0, max()], arrive(n) with n <= 0 or with
///    n greater than the arrivals still expected in the current phase
///    (including an arrival while the completion step runs), and
///    arrive_and_drop() with no participant left, throw std::logic_error.
///  - wait(token) returns at once for a token of any completed phase.
///  - A waiter may destroy the barrier as soon as its wait() returns, even
///    while the participant that completed the phase is still returning
///    (B4).
/// All members are thread-safe.
///
/// Implementation notes (invariants and memory orders)
/// ---------------------------------------------------
/// The state is one 64-bit word: bit 0 is P ("a waiter may be parked on
/// &word_"), bits 1..32 the arrivals still expected in the current phase,
/// bits 33..63 the phase number (wraps; compared only for equality).
/// `expected_` is the number of participants of the phases to come.
/// Waiters park in the parking lot keyed by &word_ (detail/park.hpp;
/// protocol P1-P4 in src/sync/parking_lot.hpp).
///  B1 An arrival is one CAS that decrements the expected count, after
///     checking n against it; it reads the phase in the same CAS, so the
///     token names exactly the phase the arrival was counted in.
///  B2 The arrival that brings the count to 0 completes the phase: the word
///     then holds (phase k, 0) while it runs the completion function (other
///     arrivals find 0 and throw, waiters of phase k stay parked); then one
///     exchange installs (phase k+1, expected_, P clear). The phase number
///     changes only there, once per phase.
///  B3 A waiter for phase k parks only after setting P and only if, under
///     the bucket lock (validate), the phase is still k and P still set. The
///     completer's exchange reads P: if set, it wakes every waiter after it;
///     by P2 each was queued by then or its validate sees phase k+1. The
///     waiter's CAS and the exchange are read-modify-writes of one word, so
///     they are totally ordered (no seq_cst Dekker pair is needed).
///  B4 The completer's exchange is its last access to *this: the wake uses
///     unpark_on, which takes the key as a number (P4).
///  B5 arrive_and_drop decrements expected_ before its arrival's CAS, so the
///     completer of that phase, whose CAS comes later in the word's order,
///     reads the decrement (see memory orders). It first checks that the phase
///     still expects an arrival, so a drop during the completion step throws
///     without having lowered expected_ while the completer may read it.
/// Memory orders. Arrivals CAS with acq_rel: release publishes the
/// participant's writes (and a drop's expected_ decrement) to the completer,
/// acquire lets the completer see every earlier arrival (all changes to the
/// word are read-modify-writes, so each arrival's release sequence reaches
/// the completing CAS). The completer's exchange is release and waiters load
/// with acquire: arrivals and the completion function happen before any
/// wait of the phase returns (std's requirement). Setting P is relaxed: it
/// publishes nothing. expected_ is relaxed: ordered by the word (B5).
/// Rejected: a tree or combining barrier (scales arrivals over many cores;
/// this machine-agnostic word costs one CAS per arrival and is simpler).
/// Tested by test/api/latch_barrier_test.cpp.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <weft/config.hpp>
#include <weft/detail/deadline.hpp>
#include <weft/detail/park.hpp>

namespace weft {

namespace detail {
/// The default completion function of weft::barrier: does nothing.
struct barrier_no_completion {
    void operator()() noexcept {}
};
}  // namespace detail

/// std::barrier for fibers and threads (see the file comment). Thread-safe.
template <class CompletionFunction = detail::barrier_no_completion>
class barrier {
    static_assert(std::is_nothrow_invocable_v<CompletionFunction&>,
                  "weft::barrier: the completion function must be invocable as an lvalue without throwing");

    static constexpr std::uint64_t parked_bit = 1;            // P
    static constexpr std::uint64_t one = 2;                   // one expected arrival
    static constexpr std::uint64_t count_mask = 0xFFFF'FFFFull << 1;
    static constexpr int phase_shift = 33;

    static constexpr std::uint64_t count_of(std::uint64_t s) noexcept { return (s & count_mask) >> 1; }
    static constexpr std::uint32_t phase_of(std::uint64_t s) noexcept {
        return static_cast<std::uint32_t>(s >> phase_shift);
    }

public:
    /// What arrive() returns and wait() takes: the phase of that arrival.
    class arrival_token {
    public:
        arrival_token(arrival_token&&) noexcept = default;
        arrival_token& operator=(arrival_token&&) noexcept = default;

    private:
        friend class barrier;
        explicit arrival_token(std::uint32_t phase) noexcept : phase_(phase) {}
        std::uint32_t phase_;
    };

    /// The largest number of participants.
    static constexpr std::ptrdiff_t max() noexcept { return 0xFFFF'FFFF; }

    /// A barrier for `expected` participants. Throws std::logic_error unless
    /// 0 <= expected <= max() (std: precondition).
    constexpr explicit barrier(std::ptrdiff_t expected, CompletionFunction f = CompletionFunction())
        : word_(checked_initial(expected) * one), expected_(expected), completion_(std::move(f)) {}
    ~barrier() = default;
    barrier(const barrier&) = delete;
    barrier& operator=(const barrier&) = delete;

    /// Counts `n` arrivals in the current phase; the one completing it runs
    /// the completion step and wakes the waiters. Never suspends, but for the
    /// completion function. Throws std::logic_error, changing nothing, if
    /// n <= 0 or n exceeds the arrivals still expected (std: precondition).
    [[nodiscard]] arrival_token arrive(std::ptrdiff_t n = 1) {
        if (n <= 0) throw std::logic_error("weft::barrier::arrive: update must be positive");
        const auto un = static_cast<std::uint64_t>(n);
        std::uint64_t s = word_.load(std::memory_order_relaxed);  // relaxed: the CAS re-checks
        do {
            if (un > count_of(s))
                throw std::logic_error("weft::barrier::arrive: more arrivals than expected in this phase");
            // acq_rel: release publishes this arrival, acquire makes the completer see them all (file comment).
        } while (!word_.compare_exchange_weak(s, s - un * one, std::memory_order_acq_rel, std::memory_order_relaxed));
        const std::uint32_t phase = phase_of(s);  // B1
        if (un == count_of(s)) complete(phase);   // B2
        return arrival_token(phase);
    }

    /// Waits until the phase of `arrival` has completed. May suspend. Throws
    /// operation_cancelled on a cancelled fiber that would have to wait.
    void wait(arrival_token&& arrival) const {
        const std::uint32_t phase = arrival.phase_;
        for (;;) {
            // acquire: pairs with the completer's exchange (file comment).
            std::uint64_t s = word_.load(std::memory_order_acquire);
            if (phase_of(s) != phase) return;
            // relaxed: P publishes nothing; the bucket lock orders B3.
            if (!(s & parked_bit) &&
                !word_.compare_exchange_weak(s, s | parked_bit, std::memory_order_relaxed, std::memory_order_relaxed))
                continue;
            const detail::park_outcome out = detail::park_if(
                &word_,
                [this, phase] {
                    // relaxed: under the bucket lock (B3).
                    const std::uint64_t w = word_.load(std::memory_order_relaxed);
                    return phase_of(w) == phase && (w & parked_bit);
                },
                detail::no_deadline, "barrier");
            if (out.result == detail::park_result::cancelled) detail::throw_cancelled();
            // unparked (possibly by a stale key, P4) or invalid: look again.
        }
    }

    /// wait(arrive()). May suspend. Throws as those two do.
    void arrive_and_wait() { wait(arrive()); }

    /// Removes the caller from the phases to come and arrives once in the
    /// current one. Never suspends, but for the completion function. Throws
    /// std::logic_error, changing nothing, if no participant is left or no
    /// arrival is expected in this phase.
    void arrive_and_drop() {
        for (;;) {
            if (expected_.load(std::memory_order_relaxed) <= 0)  // relaxed: re-checked by the CAS below
                throw std::logic_error("weft::barrier::arrive_and_drop: no participant left");
            std::uint64_t s = word_.load(std::memory_order_relaxed);  // relaxed: the CAS re-checks
            // Before expected_ changes: a completer reading it meanwhile would open the
            // next phase one short (B5; found by review: the old order lowered it, then
            // let arrive() throw during the completion step, then put it back).
            if (count_of(s) == 0)
                throw std::logic_error("weft::barrier::arrive_and_drop: no arrival expected in this phase");
            std::ptrdiff_t e = expected_.load(std::memory_order_relaxed);  // relaxed: the CAS re-checks
            do {
                if (e <= 0) throw std::logic_error("weft::barrier::arrive_and_drop: no participant left");
                // relaxed: published to the completer by the arrival's acq_rel CAS below (B5).
            } while (!expected_.compare_exchange_weak(e, e - 1, std::memory_order_relaxed, std::memory_order_relaxed));
            // acq_rel: as arrive(). Only our own arrival can complete this phase (the count
            // was >= 1 and we have not arrived), so no completer reads expected_ before it.
            if (word_.compare_exchange_strong(s, s - one, std::memory_order_acq_rel, std::memory_order_relaxed)) {
                if (count_of(s) == 1) complete(phase_of(s));  // B1, B2
                return;
            }
            expected_.fetch_add(1, std::memory_order_relaxed);  // relaxed: undoes ours; the word moved, look again
        }
    }

private:
    static constexpr std::uint64_t checked_initial(std::ptrdiff_t expected) {
        if (expected < 0 || expected > max())
            throw std::logic_error("weft::barrier: participant count outside [0, max()]");
        return static_cast<std::uint64_t>(expected);
    }

    /// B2: the completion step of `phase`, run by the arrival that completed it.
    void complete(std::uint32_t phase) noexcept {
        completion_();
        const void* key = &word_;  // B4: only the address after the exchange
        const std::uint64_t next_phase = static_cast<std::uint64_t>(phase + 1u) << phase_shift;
        // relaxed: every arrival of this phase, drops included, was acquired by our CAS (B5).
        const auto e = static_cast<std::uint64_t>(expected_.load(std::memory_order_relaxed));
        // release: publishes the arrivals and the completion to the waiters (file comment).
        const std::uint64_t old = word_.exchange(next_phase | e * one, std::memory_order_release);
        if (old & parked_bit) (void)detail::unpark_on(key, std::numeric_limits<std::size_t>::max());
    }

    mutable std::atomic<std::uint64_t> word_;  // bit 0: P; bits 1..32: expected count; 33..63: phase
    std::atomic<std::ptrdiff_t> expected_;     // participants of the phases to come (B5)
    CompletionFunction completion_;
};

}  // namespace weft
