// Channels and select: Go's hchan and selectgo, on weft's waiters.
//
// Vocabulary. A channel has one lock, a ring buffer of `slots` slots (none for
// a rendezvous channel; it doubles for an unbounded one), a closed flag and
// two FIFO queues of *chan waiters* (Go's sudog): parked senders, each with a
// pointer to the value it sends, and parked receivers, each with raw storage
// for the value it will get. A chan waiter belongs to one waiter record (the
// parked fiber or thread: sync/wait_queue.hpp). A plain send or recv queues
// one chan waiter; a select queues one per channel case, all on one waiter
// record, on every channel of its cases at once.
//
// Protocol. Every operation takes the channel's lock and first tries to
// complete at once: hand the value to a parked peer, or use the buffer.
// Handing to a peer means *claiming* its waiter record (claim_waiter, Q4):
// the claim is the commitment, after which neither the peer's deadline, nor
// its canceller, nor another channel of the same select can take it. The
// claimer moves the value under the lock, writes the token (the case index
// and whether the channel was closed), unlocks, and only then completes the
// wake (complete_unpark: no futex_wake or scheduler call under the lock).
// If nothing is ready, the caller queues its chan waiter(s) and parks with
// park_waiter, which releases the lock only after the switch (wait_queue.hpp
// "unlock after switch"); a select holds the locks of all its channels,
// taken in address order, and the post-switch hook releases them all.
//
// Invariants (each under the channel's lock unless said otherwise).
//  C1 A queued chan waiter is *live* while its waiter record is unclaimed.
//     A live receiver is never queued while a value is buffered, and a live
//     sender never while the buffer has room: an operation that could
//     complete never parks, and one that frees or fills a slot serves the
//     other queue at once (recv refills from the first live sender).
//  C2 Only a claimer under the channel's lock transfers a value to or from
//     a chan waiter, so each value moves exactly once; a waker whose claim
//     fails (the peer timed out, was cancelled, or its select completed on
//     another channel) drops that stale chan waiter and tries the next.
//  C3 A chan waiter is unlinked by the claimer that takes it, by a waker
//     that drops it as stale (C2), or by its owner after it resumes.
//  C4 A parked caller's frame (its chan waiters, the value it sends, the
//     storage it receives into) stays valid until every lock it queued under
//     has been re-taken by it after waking: a plain op whose chan waiter was
//     claimed was unlinked by its claimer, who touches it only before
//     complete_unpark; any other wake re-takes the lock(s) and unlinks what
//     is still linked. So a waker never touches a frame that has returned.
//  C5 The select's post-switch hook releases its locks in address order,
//     reading the lock list from the parked caller's frame. The caller may be
//     resumed elsewhere as soon as the first lock is free, but it cannot
//     return before it re-took the last one (C4), so the list outlives the
//     hook's last read. Hence the unlinking step must take every lock, in the
//     same order, unconditionally (no try_lock, no skipping a lock because
//     nothing is linked under it); it may sleep on a lock's futex, never park.
//  C6 Lock order: several channel locks are only ever taken together by a
//     select, in ascending address order, once per distinct channel; every
//     other path holds at most one channel lock (and no other lock inside it
//     but the scheduler's own, through complete_unpark after the unlock).
//  C7 closed is monotonic. close() claims every live waiter of both queues
//     and wakes them with the closed token: receivers return closed (they
//     parked only because the buffer was empty, C1), senders get closed and
//     keep their value.
//
// Memory orders. Everything above is guarded by the channel's lock
// (acquire/release, util/spinlock.hpp). The claimer's writes to the peer's
// storage and token are published by complete_unpark (the run-queue hand-off
// for fibers, the release store of the thread word: wait_queue.hpp).
// closed_hint mirrors closed for is_closed() without the lock: stored with
// release under the lock, loaded with acquire, so a caller that sees true
// also sees everything before the close. refs: increments relaxed (the
// caller holds a reference), the decrement acq_rel (the shared_ptr argument).
//
// Rejected: a lock-free ring for buffered channels (close, FIFO hand-off to
// parked peers and select all need the queues and the buffer to change
// together; Go keeps one lock too). Built and measured anyway (2026-11-22:
// Vyukov's ring, a closed mark in the tail as crossbeam's, waiter counts
// read after a seq_cst fence, parked peers served under the lock or woken to
// retry): chan_mpmc at 2 workers got 66-150 ns per item against this lock's
// 68-78, as every slot's line still moves between the workers; a longer
// spinlock back-off then brought the lock to 54-57 (util/spinlock.hpp); a wait-free claim without the lock held
// across the switch (a fiber can only be claimed once it is parked, so the
// lock must cover the gap).
//
// Tested by test/api/channel_test.cpp, test/api/select_test.cpp,
// test/api/go_ports_test.cpp and test/stress/chan_stress_test.cpp.
#pragma once
#include "util/private.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <weft/detail/chan.hpp>

#include "sync/waiter.hpp"
#include "util/spinlock.hpp"

namespace weft::detail {

/// Go's sudog: one parked operation of one waiter record on one channel.
struct chan_waiter {
    waiter* w = nullptr;
    void* elem = nullptr;       // send: the value; recv: raw storage
    std::uint32_t index = 0;    // the select case (0 for send/recv)
    chan_waiter* next = nullptr;
    chan_waiter* prev = nullptr;
    bool linked = false;
};

/// The token a claimer leaves in waiter::token: case index and closed bit.
constexpr std::uintptr_t chan_token(std::uint32_t index, bool closed) noexcept {
    return (static_cast<std::uintptr_t>(index) << 1) | (closed ? 1u : 0u);
}

class chan_queue {
public:
    bool empty() const noexcept { return head_ == nullptr; }
    void push_back(chan_waiter& c) noexcept;
    chan_waiter* pop_front() noexcept;
    void remove(chan_waiter& c) noexcept;

private:
    chan_waiter* head_ = nullptr;
    chan_waiter* tail_ = nullptr;
};

struct chan {
    // The lock has a cache line of its own: callers spinning on it (util/spinlock.hpp)
    // then do not steal the line the holder is writing (measured: chan_mpmc).
    alignas(64) spinlock lock;
    alignas(64) std::atomic<std::uint32_t> refs{1};
    const elem_ops* ops;
    std::size_t stride;     // slot size: ops->size rounded up to ops->align
    bool unbounded;
    // Guarded by lock:
    bool closed = false;
    unsigned char* buf = nullptr;
    std::size_t slots = 0;  // allocated slots: the capacity, fixed, when bounded; grows when unbounded
    std::size_t head = 0;
    std::size_t count = 0;
    chan_queue sendq;
    chan_queue recvq;
    std::atomic<bool> closed_hint{false};

    unsigned char* slot(std::size_t i) const noexcept { return buf + i * stride; }
};

/// What an attempt under the lock did.
enum class attempt : unsigned char {
    done,         // completed; *wake (if set) must be completed after unlocking
    closed,       // the channel is closed (recv: and drained)
    would_block,  // nothing ready
    no_memory,    // an unbounded buffer could not grow
};

/// Under c->lock: tries to send *v now (C1). On `done` with a claimed peer,
/// *wake is its waiter: complete_unpark it after unlocking.
attempt send_locked(chan* c, void* v, waiter** wake) noexcept;
/// Under c->lock: tries to receive into `out` now.
attempt recv_locked(chan* c, void* out, waiter** wake) noexcept;

}  // namespace weft::detail
