// Waiters: the one way anything in weft blocks, for fibers and plain threads.
//
// Vocabulary. A waiter is a record (usually on the blocked caller's stack) on
// some object's waiter list: join state, later mutexes, channels, timers, file
// descriptors. It is a *fiber waiter* (f != nullptr: the fiber parks and its
// worker runs others) or a *thread waiter* (a plain OS thread sleeping on the
// record's futex word). Every primitive works from both by using this.
//
// Ownership. A waiter's links and `linked` are guarded by the lock of the list
// it is on (the caller's spinlock). `word` is written by the waker and read by
// the sleeping thread.
//
// Protocol (two steps; "unlock after switch"):
//   blocker: lock(L) ; link w ; park_waiter(w, L, why)   -> L released after the
//            switch (fiber) or before sleeping (thread); returns the wake reason
//   waker:   lock(L) ; unlink w ; unpark_waiter(w) ; unlock(L)
// For a fiber, L is released by the worker that arrives after the switch
// (worker.hpp W1), so a waker can never resume a fiber still on its old stack.
//
// Invariants.
//  Q1 The waker unlinks before calling unpark_waiter, under L.
//  Q2 unpark_waiter on a fiber waiter may lose to a cancellation (fiber.hpp
//     F3): it returns false, and the caller should pass the wake-up on to the
//     next waiter if its primitive hands off (a mutex would; join wakes all).
//  Q3 A cancelled fiber waiter may still be linked: after waking it re-takes L
//     and unlinks itself if `linked`.
//  Q4 A waker that must tell the waiter something (a mutex handing itself
//     over) splits the wake: claim_waiter() commits to it (after that neither
//     its deadline nor the canceller can take it), the waker writes `token`
//     and its own state, then complete_unpark() lets it run. The waiter reads
//     `token` only after it is resumed.
//
// Thread words. 0 waiting; 3 claimed by a waker, wake not yet complete;
// 1 woken; 2 timed out (set by the sleeper itself). The sleeper returns on 1
// or 2 only, and sleeps through 3 (the waker is between claim and complete).
//
// Memory orders. Thread waiters: the waker CASes word 0 -> 3 (acq_rel), then
// stores 1 (release); the sleeper loads it with acquire, so whatever the waker
// wrote before (a token, a handed-off value) is visible when the thread
// returns; a sleeper whose deadline passes CASes 0 -> 2, and exactly one of
// the two CASes wins. The futex wake may
// reach a waiter record that has just returned (its word already 1): futex
// calls on a stale address are harmless, all sleeps re-check in a loop.
// Fiber waiters: the run queue hand-off is the release/acquire (deque.hpp I2).
//
// Rejected: a per-fiber futex for every wait (a syscall per wake even between
// fibers); condition variables per object (no fiber support).
//
// Tested by test/api/runtime_test.cpp (join from fibers and threads, shutdown
// cancelling parked joiners).
#pragma once
#include "util/private.hpp"

#include <atomic>
#include <cstdint>
#include <limits>

#include "sched/fiber.hpp"
#include "sync/waiter.hpp"
#include "util/spinlock.hpp"

namespace weft::detail {

/// The calling fiber (or thread) as a waiter record.
waiter make_waiter() noexcept;

/// Blocks until unpark_waiter(w), the steady-clock deadline `deadline_ns`
/// (timer_queue::none: no deadline) or, for a fiber, cancellation — whichever
/// claims the wake-up first; the result says which (exactly once: F3 for
/// fibers, the CAS on `word` for threads). Precondition: `lk` held and `w`
/// linked. `lk` is released in every case. `why` is shown by dumps ("join",
/// "sleep", ...). Unless the result is `notified`, `w` may still be linked:
/// the caller re-takes `lk` and unlinks it if `w.linked` (Q3). A fiber whose
/// cancellation was requested, or a deadline already past, does not park.
/// An uncancellable wait (fiber.hpp F6) ignores cancellation.
/// This is the one timed-wait path: every _for/_until form goes through it.
/// `after_unlock(arg)`, if given, runs right after `lk` is released, before a
/// thread sleeps or, for a fiber, in its worker's post-switch hook: so it
/// must not block, and `arg` must outlive the wait (a condition variable
/// releases the user's mutex there, atomically with respect to notifiers).
wake_reason park_waiter(waiter& w, spinlock& lk, const char* why, std::int64_t deadline_ns, bool cancellable = true,
                        void (*after_unlock)(void*) = nullptr, void* arg = nullptr) noexcept;
inline wake_reason park_waiter(waiter& w, spinlock& lk, const char* why) noexcept {
    return park_waiter(w, lk, why, std::numeric_limits<std::int64_t>::max());
}

/// Wakes w (already unlinked: Q1). False if it was claimed by its canceller
/// or its deadline first (Q2).
bool unpark_waiter(waiter& w) noexcept;

/// Q4: the two halves of unpark_waiter. claim_waiter() false: as above.
bool claim_waiter(waiter& w) noexcept;
/// `stealable`: see runtime_impl::schedule_woken.
void complete_unpark(waiter& w, bool stealable = false) noexcept;

}  // namespace weft::detail
