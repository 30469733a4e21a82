// The parking lot: waiter queues keyed by address, shared by every primitive.
//
// Vocabulary. A *key* is the address of a primitive's atomic word. Callers
// park on a key; the lot hashes the key to one of `bucket_count` *buckets*,
// each a spinlock and an intrusive FIFO of waiters (sync/waiter.hpp) whose
// `key` field says which key each waits on. Distinct keys may share a bucket.
// The idea is WebKit's ParkingLot (and Linux's futex hash): a primitive is one
// atomic word, its slow path parks on the word's address, so mutexes,
// semaphores, latches, futures and once flags need no waiter list of their own
// and no allocation anywhere.
//
// Invariants.
//  P1 A waiter is on its bucket's list iff `linked`; links change only under
//     the bucket lock (Q1, Q3 of wait_queue.hpp).
//  P2 park_on runs validate() under the bucket lock and links the waiter in
//     the same critical section. A waker changes the primitive's word *before*
//     taking the bucket lock (or inside unpark_one_on's callback). So either
//     validate() sees the new word and the caller does not park, or the
//     waiter is linked before the waker looks: no lost wake-up. This is the
//     futex argument, with the bucket lock as the atomic check-and-sleep.
//  P3 unpark_one_on claims the waiter (Q4) before its callback runs and
//     completes the wake after it, so the token and every write the callback
//     makes are visible to the waiter when it resumes. A waiter that lost its
//     claim to its deadline or canceller is skipped (it unlinks itself later,
//     Q3) and the next one is tried.
//  P4 Wakers touch the key only as a number, so a primitive may be destroyed
//     as soon as its last waiter returns (wait_group::done, latch).
//
// Memory orders. All waiter fields are guarded by the bucket spinlock
// (acquire/release). The primitives' own words carry their own orders, argued
// in each primitive's header; the bucket lock adds the P2 ordering.
//
// Rejected: per-primitive waiter lists (a mutex would be 3 words and each
// primitive would repeat the fiber/thread/deadline/cancel code); a resizable
// table (WebKit grows with the thread count; fibers are too many to size by,
// and 4096 buckets keep chains short for any realistic number of *distinct*
// hot keys).
//
// Tested by test/api/sync_*_test.cpp and the TSan run.
#pragma once
#include "util/private.hpp"

#include <weft/detail/park.hpp>

namespace weft::detail {

inline constexpr std::size_t bucket_count = 4096;

}  // namespace weft::detail
