// A worker's run queue: a bounded Chase–Lev work-stealing deque.
//
// Algorithm: D. Chase and Y. Lev, "Dynamic Circular Work-Stealing Deque"
// (SPAA 2005), with the C11 memory orders of N. M. Lê, A. Pop, A. Cohen and
// F. Zappa Nardelli, "Correct and Efficient Work-Stealing for Weak Memory
// Models" (PPoPP 2013), figure 1, minus resizing: the buffer is fixed and a
// full push fails (the caller moves half the deque to the injector, as Go's
// runqputslow does). Lines below are labelled with the paper's figure-1 steps
// (take/push/steal and their line numbers in the figure).
//
// Vocabulary. bottom_ is where the owner pushes and pops (LIFO end); top_ is
// where thieves steal (FIFO end). Items live in [top_, bottom_).
//
// Ownership. The owner (`deque_owner` role: the worker thread that holds the
// deque) is the only caller of push(), pop() and pop_oldest(). Any thread may
// call steal() and size() (`deque_stealer` role).
//
// Invariants.
//  I1 Only the owner writes bottom_ and the buffer; top_ only grows
//     (monotonic), and only by a successful CAS.
//  I2 A slot written by push() is published by the release store of bottom_;
//     a thief reads it only after an acquire load of bottom_ that saw it, or
//     a later value of it: pop()'s decrement is a release store too (C++20
//     release sequences hold RMWs only, P0982), and its restores follow its
//     seq_cst fence, itself a release.
//  I3 The owner overwrites slot i only after it has read top_ > i with
//     acquire, i.e. after the thief that took slot i has read it (its CAS is
//     a release, and the slot read precedes it).
//  I4 The last item (top_ == bottom_ - 1) goes to exactly one of the owner's
//     pop() and a thief's steal(): both must win the CAS on top_.
//
// Memory-ordering argument (two-sided).
//  - push: slot store (relaxed) ; bottom_.store(release). steal: top_ load
//    (acquire) ; fence(seq_cst) ; bottom_.load(acquire) ; slot load. The
//    release/acquire pair on bottom_ publishes the slot (I2).
//  - pop: bottom_.store(b - 1) ; fence(seq_cst) ; top_.load. steal: top_.load ;
//    fence(seq_cst) ; bottom_.load. This is StoreLoad on both sides (Dekker):
//    acquire/release cannot order a store before a later load, so without the
//    two seq_cst fences the owner could read a stale top_ while the thief reads
//    a stale bottom_, and both would take the same item. With them, at least
//    one side sees the other's write; the remaining tie (one item) is decided
//    by the CAS on top_ (I4).
//  - pop_oldest (owner takes from the top, used by yield and for fairness):
//    the owner knows bottom_ exactly, so it needs no fence; it competes with
//    thieves only through the CAS on top_, which also decides ties (I4).
//  - Buffer slots are std::atomic with relaxed accesses: a thief may read a
//    slot the owner is concurrently rewriting after a lost CAS (the paper's
//    "racy read"); the value is discarded when the CAS fails.
//
// Lifecycle. Constructed with its worker before the worker thread starts;
// drained (must be empty) after the worker thread is joined.
//
// Rejected: the unbounded (resizing) variant (memory reclamation of old
// buffers; the injector is the overflow); a steal-half CAS of top_ by k
// (races with the owner's fence-less fast path in pop() for k > 1 — steal
// half is done as repeated single steals instead).
//
// Tested by test/unit/deque_test.cpp (both ends, capacity, concurrent thieves
// taking each item once), test/api/scheduler_test.cpp (IdleWorkersStealWork),
// test/stress/spawn_storm_test.cpp, and the TSan run with -Dchaos=true (4-slot
// deques, so overflow and stealing are hot). TSan does not model the two
// seq_cst fences (gcc's -Wtsan says so), so the StoreLoad argument above is
// checked by review and by the concurrent-thief unit test, not by TSan.
#pragma once
#include "util/private.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace weft::detail {

template <class T>
class ws_deque {
public:
    explicit ws_deque(std::size_t capacity_pow2)
        : mask_(capacity_pow2 - 1), buf_(std::make_unique<std::atomic<T*>[]>(capacity_pow2)) {}

    std::size_t capacity() const noexcept { return mask_ + 1; }

    /// Owner only. False when full (nothing is written).
    bool push(T* x) noexcept {
        std::int64_t b = bottom_.load(std::memory_order_relaxed);  // relaxed: only the owner writes bottom_ (I1)
        std::int64_t t = top_.load(std::memory_order_acquire);     // acquire: a thief is done with slot t-1 (I3); push:2
        if (b - t > static_cast<std::int64_t>(mask_)) return false;
        buf_[b & mask_].store(x, std::memory_order_relaxed);       // relaxed: published by the bottom_ release (I2); push:4
        bottom_.store(b + 1, std::memory_order_release);           // release: publishes the slot to steal() (I2); push:5-6
        return true;
    }

    /// Owner only. Newest item (LIFO), or nullptr.
    T* pop() noexcept {
        std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;  // relaxed: own variable (I1); take:2
        // release: a thief whose acquire load reads this value must still see the slots
        // that push() published (C++20 release sequences no longer include a thread's
        // later plain stores, P0982; a plain mov on x86). The fence below orders it; take:4
        bottom_.store(b, std::memory_order_release);
        std::atomic_thread_fence(std::memory_order_seq_cst);           // StoreLoad: bottom_ store before top_ load; take:5
        std::int64_t t = top_.load(std::memory_order_relaxed);         // relaxed: ordered by the fence; take:6
        if (t > b) {                                                   // empty
            bottom_.store(b + 1, std::memory_order_relaxed);           // relaxed: restores; take:17
            return nullptr;
        }
        T* x = buf_[b & mask_].load(std::memory_order_relaxed);        // relaxed: own write (I1); take:8
        if (t == b) {                                                  // last item: race thieves for it (I4)
            if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,  // seq_cst: paper's choice; take:10
                                              std::memory_order_relaxed))
                x = nullptr;                                           // a thief won
            bottom_.store(b + 1, std::memory_order_relaxed);           // relaxed: owner-only; take:13
        }
        return x;
    }

    /// Owner only. Oldest item (FIFO end), or nullptr. See "pop_oldest" above.
    T* pop_oldest() noexcept {
        std::int64_t b = bottom_.load(std::memory_order_relaxed);  // relaxed: own variable (I1)
        std::int64_t t = top_.load(std::memory_order_relaxed);     // relaxed: validated by the CAS below
        while (t < b) {
            T* x = buf_[t & mask_].load(std::memory_order_relaxed);  // relaxed: own write (I1)
            if (top_.compare_exchange_weak(t, t + 1, std::memory_order_relaxed,  // relaxed: we wrote the slot ourselves;
                                           std::memory_order_relaxed))           // the CAS only decides ownership (I4)
                return x;
        }
        return nullptr;
    }

    /// Any thread. Oldest item, or nullptr when empty or when it lost a race
    /// (callers treat both as "nothing here now").
    T* steal() noexcept {
        std::int64_t t = top_.load(std::memory_order_acquire);     // acquire: pairs with the CAS release of other thieves; steal:2
        std::atomic_thread_fence(std::memory_order_seq_cst);       // StoreLoad partner of pop()'s fence; steal:3
        std::int64_t b = bottom_.load(std::memory_order_acquire);  // acquire: pairs with push()'s release (I2); steal:4
        if (t >= b) return nullptr;
        T* x = buf_[t & mask_].load(std::memory_order_relaxed);    // relaxed: published by the bottom_ acquire; steal:7
        if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,  // seq_cst: paper's choice; also the
                                          std::memory_order_relaxed))           // release half of I3; steal:8
            return nullptr;
        return x;
    }

    /// Owner only: false means empty (a stale top_ is never larger than the real one).
    bool owner_nonempty() const noexcept {
        return top_.load(std::memory_order_relaxed) <  // relaxed: top_ only grows (I1), so a stale value errs towards "non-empty"
               bottom_.load(std::memory_order_relaxed);  // relaxed: own variable (I1)
    }

    /// Any thread; a snapshot, exact only for the owner.
    std::size_t size() const noexcept {
        std::int64_t b = bottom_.load(std::memory_order_relaxed);  // relaxed: statistics and hints only
        std::int64_t t = top_.load(std::memory_order_relaxed);     // relaxed: statistics and hints only
        return b > t ? static_cast<std::size_t>(b - t) : 0;
    }

private:
    alignas(64) std::atomic<std::int64_t> top_{0};
    alignas(64) std::atomic<std::int64_t> bottom_{0};
    alignas(64) const std::size_t mask_;
    std::unique_ptr<std::atomic<T*>[]> buf_;
};

}  // namespace weft::detail
