// An asymmetric Dekker fence: a hot side that pays (nearly) nothing and a rare
// side that pays for both, as folly's asymmetric_thread_fence_{light,heavy}.
//
// The pattern it serves (store-buffering): the hot side stores X then loads
// Y; the rare side stores Y then loads X; at least one of them must see the
// other's store. A seq_cst fence on each side does it, but the hot side is a
// fiber's park (sched/worker.cpp: publish `parked`, then look for a cancel
// request), where a fence is a locked instruction on every park (~7% of a
// channel round trip, fiber.hpp). So the rare side, a canceller, calls
// heavy() between its store and its load: membarrier(2)
// MEMBARRIER_CMD_PRIVATE_EXPEDITED makes every running thread of the process
// execute a full barrier before it returns (a thread not running has been
// through a context switch, itself a full barrier). Then either the hot
// side's load came after that barrier on its CPU (it sees the rare side's
// store, made before the call), or its store preceded the barrier in program
// order and was drained by it (the rare side's later load sees it). The hot
// side's light() only stops the compiler from moving the load above the store.
//
// Where membarrier is missing (kernel before 4.14, a seccomp filter that
// refuses it), init() leaves `usable` false and both sides use a seq_cst fence.
// init() runs in every runtime's constructor, before its workers start, so
// every hot side of that runtime and every canceller of its fibers (they hold
// a fiber the runtime made) sees the final value; it never changes after the
// first call (std::call_once), so the sides always agree.
//
// TSan does not model membarrier; the accesses this orders are all atomics,
// so it reports no race either way.
#pragma once
#include "util/private.hpp"

#include <atomic>

namespace weft::detail::asym_fence {

extern bool usable;  // written once by init() (call_once), read after: see above

void init() noexcept;

/// The hot side: between its store and its load.
inline void light() noexcept {
    if (usable) std::atomic_signal_fence(std::memory_order_seq_cst);  // compiler only: heavy() does the rest
    else std::atomic_thread_fence(std::memory_order_seq_cst);
}

/// The rare side: between its store and its load. A system call when usable.
void heavy() noexcept;

}  // namespace weft::detail::asym_fence
