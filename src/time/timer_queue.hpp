// Per-worker deadlines: a 4-ary min-heap of (deadline, fiber, park generation).
//
// Vocabulary. A *timed park* is a fiber parked with a deadline. When it parks,
// the worker it parks on *arms* an entry in its own timer_queue (in the
// post-switch hook, after the fiber is published as parked: worker.hpp W1).
// When the deadline passes, the entry *fires*: it tries to claim that exact
// park (fiber.hpp F3, generation-checked), and on success makes the fiber
// runnable with reason `timeout`. An entry whose park ended otherwise (woken,
// cancelled) is *stale*; it is dropped when it reaches the top or when the
// heap is compacted. So cancelling a timed wait costs nothing (O(1)): the
// waker's claim is the cancellation, as Go's lazily deleted timers.
//
// Why a heap, not a timing wheel: a wheel needs O(1) unlink, so its nodes must
// outlive the parks they belong to or be unlinked under the wheel's lock by
// the waker (a lock per wake-up on another worker's wheel). With generation
// claims a heap entry is 24 bytes that nobody but the owner touches, and the
// resolution is the clock's, not a tick's (sleep_lateness asks for p99 <= 1 ms).
//
// Ownership. Entries are pushed only by the owning worker. Due entries are run
// by the owner (each pick while the queue is not empty, and before it sleeps,
// with a futex timeout at the earliest deadline) or, with try_lock, by a
// searching worker, so a worker stuck in a long fiber does not hold its
// timers hostage. Every access to heap_ holds lock_.
//
// Memory. Compaction works in place (no allocation). An arm may grow the
// vector, and it runs after its fiber left the stack (W1), where a bad_alloc
// has nobody to go to: out of memory there is a fatal error with a message,
// as in Go, not a fiber parked for ever.
//
// Invariants.
//  T1 Each entry pins its fiber's block (fiber.hpp F1), unpinned when the
//     entry fires or is dropped; so a stale entry never dangles, and dropping
//     it never runs user code (a pin keeps memory, not the task's contents).
//  T2 earliest_ is the top deadline, or `none` when empty; written under lock_,
//     read without it as a hint (a stale hint only delays or wastes one check).
//  T3 A fiber is resumed once per park: the entry fires through the same
//     claim as wakers and the canceller (F3), keyed by the park generation.
//     Fired fibers go to the FIFO woken queue, not the LIFO slot, so that a
//     batch due at once (a worker that woke late) resumes in deadline order.
//  T4 A sleeping worker sleeps until the earliest deadline of *any* worker
//     (so a worker stuck in a long fiber has its timers fired by a sleeper
//     that wakes and searches), and publishes that time in sleep_deadline_.
//     A worker that arms a new earliest deadline nudges one sleeper that would
//     sleep past it (word 1 -> nudged + futex wake). Two-sided StoreLoad:
//     armer stores earliest_ then loads sleep_deadline_; sleeper stores
//     sleep_deadline_ then re-loads every earliest_; all seq_cst, so either
//     the sleeper sees the new deadline or the armer sees it must nudge.
//
// Memory orders: the claim CAS is seq_cst (F3); heap_ is guarded by lock_
// (acquire/release); earliest_ is stored and loaded seq_cst, which only T4's
// StoreLoad needs (as a hint, T2, relaxed would do).
//
// Lifecycle: the queue dies with its worker, after every fiber finished; the
// destructor releases the references of the entries left (T1).
//
// Tested by test/api/timer_test.cpp, test/stress/timer_stress_test.cpp and
// test/unit/min_heap_test.cpp.
#pragma once
#include "util/private.hpp"

#include <atomic>
#include <cstdint>
#include <limits>
#include <vector>

#include "util/spinlock.hpp"

namespace weft::detail {

struct fiber;

class timer_queue {
public:
    static constexpr std::int64_t none = std::numeric_limits<std::int64_t>::max();

    timer_queue() = default;
    ~timer_queue();
    timer_queue(const timer_queue&) = delete;
    timer_queue& operator=(const timer_queue&) = delete;

    /// Owner only: arms (deadline, f, gen); pins f (T1).
    void arm(std::int64_t deadline_ns, fiber* f, std::uint64_t gen) noexcept;

    /// Fires every entry due at `now_ns`. try_only: give up if the lock is
    /// busy (searchers). Returns how many fibers it made runnable.
    std::size_t run_due(std::int64_t now_ns, bool try_only) noexcept;

    std::int64_t earliest() const noexcept {
        return earliest_.load(std::memory_order_seq_cst);  // seq_cst: T4's StoreLoad (and T2's hint)
    }

private:
    struct entry {
        std::int64_t when;
        fiber* f;
        std::uint64_t gen;
    };

    void push_locked(const entry& e);
    entry pop_locked() noexcept;
    void compact_locked() noexcept;
    void publish_locked() noexcept;

    spinlock lock_;
    std::vector<entry> heap_;  // guarded by lock_
    std::size_t compact_at_ = 1024;
    std::atomic<std::int64_t> earliest_{none};  // T2
};

/// steady_clock::now() in nanoseconds.
std::int64_t now_ns() noexcept;

}  // namespace weft::detail
