// The runtime's shared state: workers, injector, idle set and fiber registry.
//
// Ownership. Everything here is shared by all workers and by outside threads
// that spawn or join; each member documents its own synchronisation.
//
// Invariants.
//  R1 accepting_ and cancelling_ are monotonic (once changed, never back).
//     A spawn from outside the runtime's workers is bracketed by
//     outside_spawns_in_flight_ (incremented before it checks accepting_,
//     decremented once the fiber is counted and queued), and shutdown() waits
//     for that to reach zero after clearing accepting_; a spawn from a fiber
//     needs no bracket, as its spawner is alive and counted until it exits.
//  R2 fibers alive = sum of spawns - sum of exits, over per-worker counters
//     (single writer each, release increments). alive() reads every exit
//     counter before any spawn counter (acquire), so a fiber whose exit it
//     sees has its spawn seen too: the sum never undercounts, and
//     "fibers_alive == 0" means no task code can run any more. An exit is
//     counted after the fiber's last user code (its result's destructor, when
//     nobody holds a handle), so a joiner may still see the fiber alive for a
//     moment after join() returns.
//  R5 The registry holds the fibers that have been suspended at least once
//     (a fiber registers itself before its first park or yield and leaves at
//     exit). Only parked fibers can be asleep in a wait, so the registry has
//     every fiber cancel_all() must find and wake; never-started and running
//     fibers see cancelling_ at their next pick or park (fiber.hpp F4).
//     Fibers that run to completion without pausing (most spawn_join
//     children, skynet leaves) never touch the registry and its shard locks,
//     which other workers write too.
//  R3 injector_len_ (fibers, not chains) is incremented before a push and
//     decremented after a pop, so injector_len_ == 0 implies the injector is
//     empty (used as a cheap hint and by the lost-wake-up re-scan, idle.hpp D2).
//  R4 An injector element is a chain of fibers linked by fiber::next_run, so
//     a deque overflow of 128 fibers costs one queue operation (Go and Tokio
//     batch their overflow the same way, under a lock).
//  R6 A fiber woken from outside the runtime's workers (a plain thread, the
//     timer thread, the blocking pool, another runtime) is posted inside an
//     outside_wakes_in_flight_ bracket, and shutdown() waits for it to reach
//     zero after the last fiber finished: the waker's post() (injector push,
//     then the idle set's notify) may otherwise run on freed memory when the
//     woken fiber ends and the runtime is destroyed at once. The increment
//     happens before the push that makes the fiber runnable, so it is visible
//     to a shutdown that saw that fiber finish.
//
// Memory orders: accepting_ release/acquire (a spawn that saw true happens
// before the sweep that may miss it, R1's retry covers it); registry counts are
// modified under the shard lock and read relaxed for statistics; the injector
// is Boost.Lockfree's (release on push, acquire on pop).
//
// Lifecycle: see runtime::shutdown() and worker.hpp "Lifecycle".
//
// Tested by test/api/runtime_test.cpp.
#pragma once
#include "util/private.hpp"

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <boost/lockfree/queue.hpp>

#include <weft/runtime.hpp>

#include "io/reactor.hpp"
#include "sched/fiber.hpp"
#include "sched/idle.hpp"
#include "sched/worker.hpp"
#include "util/spinlock.hpp"

namespace weft::detail {

class stall_monitor;

/// Applies defaults and the environment; throws std::invalid_argument.
runtime_options resolve_options(runtime_options o);

class runtime_impl {
public:
    runtime_impl(runtime& owner, runtime_options opts);
    ~runtime_impl();

    runtime& owner;
    const runtime_options opts;

    fiber* spawn(task_base* t, const spawn_attrs& attrs);
    /// Makes a woken fiber runnable: this worker's LIFO slot, or the injector.
    /// `stealable`: its FIFO woken queue instead of the LIFO slot, so that an
    /// idle worker can take it at once (a mutex waiter: the waker runs on).
    void schedule_woken(fiber* f, bool stealable = false) noexcept;
    void post(fiber* f) noexcept;  // injector + notify
    /// Posts the chain head -> ... (n fibers linked by next_run, last one null); R4.
    void post_chain(fiber* head, std::size_t n) noexcept;
    /// A chain (R4), or nullptr.
    fiber* injector_pop() noexcept;
    bool injector_maybe_nonempty() const noexcept {
        return injector_len_.load(std::memory_order_relaxed) != 0;  // relaxed: hint; R3 for the re-scan
    }
    /// The earliest timer deadline of any worker (timer_queue::none if none).
    std::int64_t earliest_timer() const noexcept;
    /// T4: an earliest deadline was armed by `by`; wake one sleeper that would sleep past it.
    void nudge_sleeper(std::int64_t deadline_ns, const worker* by) noexcept;
    /// Any queue (injector or a deque) non-empty? For the re-scan before sleeping.
    bool any_work_visible() const noexcept;

    void registry_insert(fiber* f) noexcept;  // R5: by f itself, before its first suspension
    void registry_remove(fiber* f) noexcept;
    /// Sets the cancel flag and wakes the fiber if it is parked (F3, F4).
    static void cancel(fiber* f) noexcept;
    /// The flag only: the caller then runs asym_fence::heavy() and wake_cancelled (F7).
    static void request_cancel(fiber* f) noexcept;
    /// Wakes f with `cancelled` if it is parked (F3); the caller made the request visible.
    static void wake_cancelled(fiber* f) noexcept;
    /// Shutdown has begun: every blocking call throws operation_cancelled (F4).
    bool cancelling(std::memory_order mo) const noexcept { return cancelling_.load(mo); }

    void shutdown();
    runtime_stats stats() const;
    std::string dump_json() const;
    /// "fiber <id> '<name>'" (the name if the fiber is registered: S3 of diag/stall.hpp).
    std::string describe_fiber(std::uint64_t id) const;

    // The deadlock watch (diag/deadlock.hpp); any thread.
    /// Quiet, as the watch means it: not stopping, every worker asleep, nothing
    /// queued or in flight, no timer armed, no fiber waiting on a descriptor.
    bool deadlock_quiet() const noexcept;
    /// A sum that every switch, spawn, exit, park and descriptor wait increases (Z3).
    std::uint64_t progress() const noexcept;
    std::uint64_t fibers_alive() const noexcept { return alive(); }
    /// One line per registered fiber: id, name, wait reason.
    void describe_waits(std::string& out) const;

    bool stopping() const noexcept { return stop_.load(std::memory_order_acquire); }  // acquire: pairs with shutdown()

    std::atomic<std::int64_t> stacks_mapped{0};  // stats; declared before the workers that use it
    reactor io;  // declared before the workers: it outlives them (their polls)
    std::vector<std::unique_ptr<worker>> workers;
    idle_set idle;

private:
    static constexpr std::size_t shard_count = 64;
    struct alignas(64) shard {
        spinlock lock;
        fiber* head = nullptr;  // guarded by lock
    };

    std::uint64_t alive() const noexcept;  // R2
    void cancel_all() noexcept;

    std::array<shard, shard_count> shards_;
    boost::lockfree::queue<fiber*> injector_{1024};
    std::atomic<std::int64_t> injector_len_{0};  // R3
    std::atomic<bool> accepting_{true};          // R1
    std::atomic<bool> cancelling_{false};        // R1, F4
    std::atomic<bool> stop_{false};
    std::atomic<std::int64_t> outside_spawns_in_flight_{0};  // R1
    std::atomic<std::int64_t> outside_wakes_in_flight_{0};   // R6
    std::atomic<std::uint64_t> spawned_outside_{0};          // R2 (spawns from outside any worker)
    std::unique_ptr<stall_monitor> monitor_;  // null when stall_warning < 0 and one worker (S6)
    std::mutex shutdown_mu_;
    bool shut_down_ = false;  // guarded by shutdown_mu_
};

/// Must f's next wait throw operation_cancelled? Its own request or its runtime's
/// shutdown (F4), unless it is destroying its values or its task (F8). Relaxed
/// loads: the flags are monotonic, and this is an early look that the park
/// hook's fenced one backs (F7); callers say what a stale value costs them.
inline bool cancel_pending(const fiber* f) noexcept {
    return !f->cancel_deferred.load(std::memory_order_relaxed) &&
           (f->cancel_requested.load(std::memory_order_relaxed) || f->rt->cancelling(std::memory_order_relaxed));
}

}  // namespace weft::detail
