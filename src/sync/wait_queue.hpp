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
//
// Memory orders. Thread waiters: word.store(1, release) by the waker /
// load(acquire) by the sleeper, so whatever the waker wrote before (a result,
// a handed-off value) is visible when the thread returns. The futex wake may
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

#include "sched/fiber.hpp"
#include "sync/waiter.hpp"
#include "util/spinlock.hpp"

namespace weft::detail {

/// The calling fiber (or thread) as a waiter record.
waiter make_waiter() noexcept;

/// Blocks until unpark_waiter(w) (or, for a fiber, cancellation). Precondition:
/// `lk` held and `w` linked. `lk` is released in every case. `why` is shown by
/// dumps ("join", ...). A fiber whose cancellation was already requested does
/// not park and returns cancelled at once (w stays linked: Q3).
wake_reason park_waiter(waiter& w, spinlock& lk, const char* why) noexcept;

/// Wakes w (already unlinked: Q1). False if a fiber waiter was claimed by its
/// canceller first (Q2).
bool unpark_waiter(waiter& w) noexcept;

}  // namespace weft::detail
