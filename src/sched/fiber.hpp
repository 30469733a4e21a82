// The runtime's fiber object.
//
// Vocabulary. A fiber is *runnable* (in a deque, a LIFO slot or the injector),
// *running* (some worker's `current`), *parked* (suspended in a blocking call,
// on exactly one waiter list) or *finished* (its task returned; its stack is
// gone). A fiber never started has no stack yet: the stack is taken from the
// running worker's cache at its first resumption, so a burst of spawns costs
// no stacks until the fibers actually run.
//
// Ownership. `ctx`, `stk` and `worker` are touched only by the worker running
// or switching the fiber (handed over with the run queues' release/acquire).
// `name` is written only by the fiber itself and read by dumps under
// `meta_lock`. Join state is guarded by `join_lock`.
//
// Invariants.
//  F1 Two counts. `refs` keeps the task's contents (the callable's result and
//     exception): the runtime's reference (dropped by the fiber itself at exit,
//     on its own stack) plus one per fiber_ref; whoever drops the last one
//     destroys the contents, so user destructors run on the fiber's own stack
//     or on the handle owner's thread, never inside a post-switch hook.
//     `pins` keeps the block's memory: one while the contents live, one until
//     the exit hook has recycled the stack, one per timer entry; the last unpin
//     frees the block (no user code).
//  F2 finished is monotonic; it is set under join_lock, after the task's
//     result is written, and before any joiner is woken.
//  F3 park_state goes running -> parking (by the fiber, lock held) -> parked
//     (by the post-switch hook, lock still held) -> woken (by exactly one
//     claimer: a waker, the canceller, or its timer entry) -> running (when
//     resumed). Only the claimer that wins parked -> woken may schedule the
//     fiber; it writes `reason` first, so the fiber knows which one it was.
//     Each park has a generation (pword's high bits): a claim names it, so a
//     timer entry left from an earlier park can never claim a later one.
//  F4 cancel_requested (this fiber) and runtime_impl::cancelling_ (all of
//     the runtime's fibers) are monotonic; once either is set, every blocking
//     call of the fiber throws operation_cancelled, and a fiber that has not
//     started never runs its task.
//  F6 A park may be uncancellable (a condition variable re-taking its mutex
//     after a cancelled wait: std requires the lock held on every exit). Its
//     words carry no_cancel_bit; the canceller's claim refuses them, while
//     wakers and timers claim them as usual. Cancellation is still sticky:
//     the next cancellable park of the fiber sees the request.
//  F8 While a fiber destroys its fiber_local values (after its task, before
//     it finishes: sched/fiber_local.cpp), and while it drops the runtime's
//     reference to its task (exit_current: the result's destructor), its
//     cancellation is deferred: every wait is uncancellable (park_waiter,
//     sleep), as a destructor may block and must not throw. The flag stays
//     set from then on: only destructors run after it.
//  F5 A fiber and its task share one allocation (the task `fiber_header_size`
//     bytes after the fiber), from sched/block_pool.hpp: recycled through
//     per-thread lists by 16-byte size class, carved from huge-page chunks
//     when fresh; so a spawn is one list pop, not two mallocs.
//
// Memory orders.
//  - refs: increments relaxed (the caller already holds a reference);
//    decrement acq_rel so that the last owner sees every write made through
//    other references before deleting (the shared_ptr argument).
//  - finished: release store under join_lock / acquire load in is_finished()
//    publishes the task's result to a joiner that skips the lock (F2).
//  - park_state / cancel flags: the canceller stores the flag, then loads
//    pword to claim; the post-switch hook stores `parked`, then loads the
//    flags. That is store-buffering: without StoreLoad on both sides the two
//    can cross (the hook misses the request while the canceller saw
//    `parking`). A locked instruction on every park costs ~7% of a channel
//    round trip, so the fence is asymmetric (util/asym_fence.hpp): the hook
//    has only a compiler barrier (light), the canceller runs membarrier(2)
//    between its store and its load (heavy). publish_parked stays a release
//    store (a plain mov on x86). Every claim is a seq_cst CAS (one order
//    among claimers), and it acquires the release of publish_parked, so the
//    claimer sees the saved context.
//  F7 A cancel request is never lost: either the canceller's load finds the
//     park published and claims it, or the hook's load finds the flag and
//     wakes the fiber itself (both through the fence pair above); a park
//     that begins later checks the flag before it links (wait_queue.cpp).
//     An uncancellable park (F6) is left alone; the flag stays set.
//     runtime::shutdown() still sweeps every millisecond until no fiber is
//     alive (sched/runtime.cpp): fibers that park for the first time after a
//     sweep are registered then (R5), and cancelled ones may be unwinding.
//
// Tested by test/api/runtime_test.cpp (join, shutdown with parked and queued
// fibers) and the TSan run.
#pragma once
#include "util/private.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

#include <weft/detail/task.hpp>

#include "context/stack.hpp"
#include "context/switch.hpp"
#include "sync/waiter.hpp"
#include "util/spinlock.hpp"

namespace weft::detail {

class worker;
struct local_table;

enum class park_state : std::uint8_t { running, parking, parked, woken };
enum class wake_reason : std::uint8_t { notified, cancelled, timeout };

struct fiber {
    exec_context ctx;
    stack stk;
    task_base* task = nullptr;  // lives in the same block, right after the fiber (F5)
    std::uint32_t block_size = 0;  // bytes of the whole block (fiber + task storage)
    runtime_impl* rt = nullptr;
    std::uint64_t id = 0;

    std::atomic<std::uint32_t> refs{2};  // F1: runtime + first handle
    std::atomic<std::uint32_t> pins{2};  // F1: contents + exit hook
    // F3: (park generation << 8) | park_state. The generation grows by one per
    // park, so a claim for an old park (a late timer entry) can never win a newer one.
    std::atomic<std::uint64_t> pword{0};
    std::atomic<bool> cancel_requested{false};
    // F8: set by the fiber itself while its fiber_local destructors run; its waits are
    // then uncancellable. Relaxed: read by the fiber itself, and by timer.cpp's misuse check.
    std::atomic<bool> cancel_deferred{false};
    wake_reason reason = wake_reason::notified;  // written by the claimer before scheduling (F3)
    bool started = false;                        // touched by the running worker only
    std::uint8_t park_flags = 0;                 // no_cancel_bit or 0; the fiber's own, read by its hook (F6)
    bool registered = false;                     // in the runtime registry (R5); touched by the fiber only

    std::atomic<bool> finished{false};  // F2
    spinlock join_lock;
    waiter_list joiners;  // guarded by join_lock

    std::atomic<const char*> wait_reason{nullptr};  // relaxed: diagnostics only
    std::atomic<int> last_worker{-1};               // relaxed: diagnostics only

    local_table* locals = nullptr;  // fiber_local values; the fiber's own (sched/fiber_local.cpp)

    spinlock meta_lock;
    std::string* name = nullptr;  // owned; set by the fiber itself under meta_lock (8 bytes, not 32: F5)

    fiber* next_run = nullptr;  // link in an injector chain or a worker's yield ring; owned by whoever holds f
    fiber* reg_prev = nullptr;  // registry shard list, guarded by the shard lock
    fiber* reg_next = nullptr;

    fiber() = default;
    fiber(const fiber&) = delete;
    fiber& operator=(const fiber&) = delete;
    ~fiber() { delete name; }

    std::string name_copy() noexcept;      // under meta_lock; "" when unnamed
    void set_name(std::string_view n);     // by the fiber itself

    static constexpr park_state state_of(std::uint64_t w) noexcept { return static_cast<park_state>(w & 0x7f); }
    static constexpr std::uint64_t word(std::uint64_t gen, park_state s) noexcept {
        return (gen << 8) | static_cast<std::uint64_t>(s);
    }

    /// By the fiber itself: a new park begins. Returns its generation.
    /// An uncancellable park (F6) carries this bit in every word of its generation.
    static constexpr std::uint64_t no_cancel_bit = 0x80;
    std::uint64_t begin_park(bool cancellable = true) noexcept {
        const std::uint64_t gen = (pword.load(std::memory_order_relaxed) >> 8) + 1;  // relaxed: own variable
        park_flags = cancellable ? 0 : no_cancel_bit;
        pword.store(word(gen, park_state::parking) | park_flags, std::memory_order_relaxed);  // relaxed: claimers CAS from `parked` only
        return gen;
    }
    /// By the post-switch hook: the fiber is saved and may be claimed now (F3).
    void publish_parked(std::uint64_t gen) noexcept {
        // release: claimers' CAS acquires it (they see the saved context); the StoreLoad
        // with the cancel flags is the asymmetric fence's (F7). park_flags was written by the fiber
        // before its switch, which the hand-over to this hook orders (W1).
        pword.store(word(gen, park_state::parked) | park_flags, std::memory_order_release);
    }
    /// By the fiber itself, once resumed.
    void end_park(std::uint64_t gen) noexcept {
        pword.store(word(gen, park_state::running), std::memory_order_relaxed);  // relaxed: claimers CAS from `parked` only
    }
    /// Exactly one claimer of a park wins (F3); the winner then schedules the fiber.
    bool try_claim_park(std::uint64_t gen, wake_reason why) noexcept {
        const std::uint64_t w = pword.load(std::memory_order_seq_cst);  // seq_cst: F3
        return (w & ~no_cancel_bit) == word(gen, park_state::parked) && claim_word(w, why);
    }
    /// Claims whatever park the fiber is in now, if it is parked (wakers, canceller).
    bool try_claim_current(wake_reason why) noexcept {
        const std::uint64_t w = pword.load(std::memory_order_seq_cst);  // seq_cst: F3
        return state_of(w) == park_state::parked && claim_word(w, why);
    }
    bool is_parked_in(std::uint64_t gen) const noexcept {
        // relaxed: see timer_queue T3
        return (pword.load(std::memory_order_relaxed) & ~no_cancel_bit) == word(gen, park_state::parked);
    }

    /// The one CAS that claims a park (F3), from the word `w` just read; the
    /// canceller never claims an uncancellable park (F6).
    bool claim_word(std::uint64_t w, wake_reason why) noexcept {
        if ((w & no_cancel_bit) && why == wake_reason::cancelled) return false;
        // seq_cst: one total order with publish_parked() and the other claimers (F3).
        if (!pword.compare_exchange_strong(w, word(w >> 8, park_state::woken), std::memory_order_seq_cst,
                                           std::memory_order_relaxed))
            return false;
        reason = why;
        return true;
    }

    void release() noexcept;  // F1: drops a contents reference
    void pin() noexcept { pins.fetch_add(1, std::memory_order_relaxed); }  // relaxed: caller holds a pin (F1)
    void unpin() noexcept;    // F1: drops a pin; the last frees the block
};

/// Bytes from a fiber to its task storage (F5).
inline constexpr std::size_t fiber_header_size =
    (sizeof(fiber) + alignof(std::max_align_t) - 1) / alignof(std::max_align_t) * alignof(std::max_align_t);

inline fiber* fiber_of_task(void* task_storage) noexcept {
    return reinterpret_cast<fiber*>(static_cast<char*>(task_storage) - fiber_header_size);
}

/// e.what() of an exception_ptr, or "unknown exception" (for reports).
std::string describe(std::exception_ptr e) noexcept;

/// By the fiber itself, after its task returned: destroys its fiber_local values.
void destroy_fiber_locals(fiber* f) noexcept;

/// Ids for fibers and for plain threads come from one counter.
std::uint64_t next_id() noexcept;

}  // namespace weft::detail
