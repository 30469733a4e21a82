// Workers: the OS threads that run fibers, and how a fiber leaves a worker.
//
// Vocabulary (after Go's proc.go G/M/P).
//  - worker: one OS thread with a scheduler context (its own stack), a
//    Chase–Lev deque (sched/deque.hpp), a one-fiber LIFO slot and a stack cache.
//  - injector: the runtime-wide MPMC queue (Boost.Lockfree) for fibers spawned
//    or woken off-worker and for deque overflow.
//  - schedule: put a fiber on *this* worker's queues; post: put it on the
//    injector (any thread). suspend/resume are for fibers, park/unpark for
//    worker threads (sched/idle.hpp) — and "park" also names a fiber blocking
//    on a waiter list (sync/wait_queue.hpp), the one primitive every blocking
//    call uses.
//  - post-switch action: what the side that *arrives* after a switch does on
//    behalf of the side that left: requeue it (yield), publish it as parked and
//    release the lock that guards its waiter entry (park), or free its stack
//    (exit). This is the "unlock after switch" rule.
//
// Ownership. Everything in a worker except `dq_` (stealers), the statistics
// atomics (readers) and `sleep_word` (idle_set) is touched only by its own
// thread: by the scheduler loop or by the fiber it is running. Fibers migrate:
// a fiber may suspend on one worker and resume on another, so code must not
// keep a worker pointer (or any thread_local address) across a switch; every
// switch returns the worker that resumed the caller.
//
// Invariants.
//  W1 A fiber's saved context is recorded (by the arriving side) before the
//     fiber is published anywhere another thread can find it: requeued, made
//     claimable as parked, or its waiter-list lock released.
//  W2 A fiber is in at most one place: one deque, one LIFO slot, the injector,
//     running on one worker, or parked on one waiter list.
//  W3 pick order, per tick: every `fairness_interval`th tick the injector and
//     the oldest deque item come first; otherwise the LIFO slot (at most
//     `lifo_max_streak` times in a row, so two fibers waking each other cannot
//     starve the rest), then the oldest woken fiber (W6), then the newest
//     spawn-deque item, then the injector, then the yield ring. A yield takes the LIFO slot, then the oldest deque item,
//     then the injector, then the yield ring's head: a yielder runs again only
//     after every fiber that was runnable when it yielded (round robin).
//  W6 Woken fibers that leave the LIFO slot queue in a second work-stealing
//     deque that everyone takes from its oldest end (owner included), ahead of
//     the spawn deque: a stream of wake-ups (timers firing, a server's
//     connections) is served first come, first served. In the spawn deque the
//     owner's LIFO end would let the oldest wake-ups starve (seen: 0.1% of
//     sleeps 45-85 ms late), while spawns want LIFO (depth-first, few stacks).
//  W5 The yield ring (yielded fibers, FIFO, private: no atomics) is moved into
//     the deque — as much as fits, so the order holds — where thieves can see
//     it, every fairness tick and whenever some worker sleeps; so a yielding
//     fiber is stealable within one tick interval, and a worker with a
//     non-empty ring never sleeps.
//  W7 I/O (io/reactor.hpp E4, E5): a worker that finds nothing to run polls
//     the reactor without blocking before it spins; a busy worker polls it
//     every fairness tick (of pick() and of yields alike) once
//     `io_poll_interval_ns` has passed since its last poll (Go's sysmon does this every 10 ms), so ready descriptors are not
//     starved by CPU-bound fibers; a sleeping worker blocks in epoll_wait
//     instead of on its futex if no other worker does (at most one); when
//     every awake worker is stuck in one fiber and nobody polls, the stall
//     monitor wakes a sleeper to take that role (reactor.hpp E9). While
//     descriptors are registered, idle workers do not spin (spin()): the
//     kernel wakes the poller, and spinning takes CPU from the network stack.
//  W8 I/O budget (Tokio's cooperative budget; Go has preemption instead): a
//     fiber whose I/O calls keep completing without waiting (a fast peer, an
//     accept flood) yields after `io_budget` of them in a row, so the other
//     fibers of its worker (and its timers, and the reactor: W7) still run.
//     "In a row" = since this worker last switched fibers: spend_io_budget()
//     compares n_switches with the value at the start of the streak, so a
//     call that parked (a switch) starts a new streak. Worker-private state.
//  W4 A fiber that never started gets its stack when first picked; one that
//     was cancelled before that starts anyway but skips its task (so its
//     callable dies on its own stack). Nothing is finished in the middle of a
//     switch: the parking fiber may hold a lock its joiners need. A fiber whose
//     stack cannot be mapped waits in `unstartable_` for the scheduler loop.
//
// Memory orders: the deque and the injector carry the release/acquire pairs
// that hand a fiber (and its saved context) to another thread (deque.hpp I2);
// the LIFO slot and the pending action are thread-local. Statistics are
// relaxed atomics written by their worker only (load + store, no RMW).
//
// Lifecycle.
//  1 runtime_impl constructs every worker, then starts their threads (a worker
//    may steal from any other as soon as it runs, so all must exist first).
//  2 The thread records its scheduler context, installs the alternate signal
//    stack for overflow reports, publishes its tid and CPU clock for the stall
//    monitor (S4), and loops: pick, search, park.
//  3 At shutdown the runtime first waits for every fiber to finish, stops the
//    stall monitor (S5), then sets stop and wakes every worker; the loop exits
//    only with empty queues, and the thread frees its stack cache. Stopping
//    last is what makes freeing the caches safe: no fiber can exit onto a
//    worker that is gone.
//
// Rejected: switching always through the scheduler context (two jumps per
// switch; fiber-to-fiber direct switches halve yield cost); a stealable LIFO
// slot (an atomic exchange on every wake; Tokio's trade-off, same as ours).
//
// Tested by test/api/runtime_test.cpp, test/stress/*, test/death/*.
#pragma once
#include "util/private.hpp"

#include <sys/epoll.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "context/stack.hpp"
#include "context/switch.hpp"
#include "sched/deque.hpp"
#include "sched/fiber.hpp"
#include "time/timer_queue.hpp"

namespace weft::detail {

class runtime_impl;

/// Marks f finished and wakes every joiner (fiber.hpp F2).
void finish_and_wake_joiners(fiber* f) noexcept;

class worker {
public:
    static constexpr std::uint32_t fairness_interval = 61;  // prime, as Go's schedtick % 61
    static constexpr std::uint32_t lifo_max_streak = 16;
    // A searching worker looks up to spin_window_ before sleeping: spin_max_ns after a
    // spin that found work, halved by each spin that found none, down to spin_min_ns;
    // doubled (to at least twice the sleep) by a sleep that work ended within
    // spin_max_ns (spin(), sleep()).
    static constexpr std::int64_t spin_max_ns = 50'000;
    static constexpr std::int64_t spin_min_ns = 1'000;
    static constexpr std::int64_t io_poll_interval_ns = 200'000;  // W7
    static constexpr std::uint32_t io_budget = 128;  // W8: as Tokio's per-task budget

    worker(runtime_impl& rt, unsigned index, std::size_t deque_capacity);
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    void start();
    void join();

    /// The worker of the calling thread, or nullptr. Never inlined: callers
    /// after a switch must see the thread they now run on.
    static worker* current() noexcept;

    runtime_impl& rt() const noexcept { return rt_; }
    unsigned index() const noexcept { return index_; }
    fiber* running() const noexcept { return current_; }
    /// The fiber whose stack the worker is switching away from (its registers are
    /// being saved there), between running() naming the next fiber and the jump;
    /// else nullptr. For the overflow report (diag/overflow.hpp), on this thread.
    fiber* switching_from() const noexcept { return pending_fiber_; }
    /// W8: one I/O call of the running fiber completed without waiting; may
    /// yield (never throws, never cancels). Returns the worker we are on after.
    worker* spend_io_budget() noexcept;

    // --- this worker's thread only ---
    void count_spawn() noexcept { bump_release(n_spawned); }
    void count_open_wait() noexcept { bump_release(n_open_waits); }
    void count_open_done() noexcept { bump_release(n_open_done); }
    /// A spawned fiber: newest end of the deque (overflow to the injector).
    void schedule_spawned(fiber* f) noexcept;
    /// A woken fiber: the LIFO slot (the previous occupant moves to the deque).
    void schedule_woken(fiber* f) noexcept;

    /// The running fiber lets others run first. Returns the worker it resumed on.
    worker* yield_current() noexcept;
    /// The running fiber parks: after the switch, `unlock(arg)` runs on the
    /// arriving side (W1), after arming `deadline_ns` (steady ns; none = no
    /// deadline) in this worker's timer queue. Returns the worker it resumed on.
    /// The hook runs unlock(arg), then after(after_arg) if given; all four are
    /// copied into the worker, never read from the parking fiber's stack (a
    /// timer armed by the hook may resume the fiber elsewhere first).
    worker* park_current(void (*unlock)(void*), void* arg, std::int64_t deadline_ns = timer_queue::none,
                         bool cancellable = true, void (*after)(void*) = nullptr, void* after_arg = nullptr) noexcept;
    /// The running fiber has finished; never returns.
    [[noreturn]] void exit_current() noexcept;

    /// Entry point of every fiber (first resumption).
    static void fiber_main(transfer t) noexcept;

    // --- any thread ---
    fiber* steal() noexcept { return dq_.steal(); }
    std::size_t queue_depth() const noexcept;
    std::size_t stealable_depth() const noexcept { return dq_.size() + wq_.size(); }  // any thread
    void wake_thread() noexcept;  // idle_set and shutdown only
    /// T4: if this worker sleeps past `deadline_ns`, make it look again.
    bool nudge_if_sleeping_past(std::int64_t deadline_ns) noexcept;
    std::int64_t earliest_timer() const noexcept { return timers_.earliest(); }

    static constexpr std::uint32_t nudged = 2;
    // 0 awake, 1 asleep (set under idle_set::mu_), nudged (T4: re-read the deadlines)
    std::atomic<std::uint32_t> sleep_word{0};

    // statistics: written by this worker only (relaxed load+store), read by anyone
    std::atomic<std::uint64_t> n_switches{0}, n_steals{0}, n_parks{0}, n_unparks{0}, n_sleeps{0};
    std::atomic<std::uint64_t> running_id{0};  // id of the fiber running here, 0 in the scheduler (diag/stall.hpp)
    // Yields that found nothing else to run (no switch): progress for the stall monitor (S1).
    std::atomic<std::uint64_t> n_lone_yields{0};
    // S4 (diag/stall.hpp): this worker's thread, for the monitor's look at its state and CPU time.
    // os_tid is stored (release) after cpu_clock, once, before the first fiber runs; 0 until then.
    std::atomic<int> cpu_clock{0};  // a clockid_t
    std::atomic<int> os_tid{0};
    // R2 counters (runtime_impl.hpp): release increments, single writer
    std::atomic<std::uint64_t> n_spawned{0}, n_exited{0};
    // Fibers in an *open* wait, one that something other than a weft thread may
    // end (a descriptor's readiness, or time itself in a sleep with no end) = sum
    // of n_open_waits - sum of n_open_done over the workers (a wait may end on
    // another worker); release increments, single writer, read as R2's (done
    // first). For the deadlock watch (diag/deadlock.hpp).
    std::atomic<std::uint64_t> n_open_waits{0}, n_open_done{0};
    std::atomic<bool> lifo_full{false};  // relaxed mirror of lifo_ for stats

    /// True when this worker has another fiber ready to run (owner only).
    bool has_local_work() const noexcept {
        return lifo_ || yq_head_ || wq_.owner_nonempty() || dq_.owner_nonempty();
    }
    /// A woken fiber into the FIFO woken queue (stealable; W6).
    void push_woken(fiber* f) noexcept;

private:
    enum class action : std::uint8_t { none, requeue, park, exited };

    void run() noexcept;
    fiber* pick() noexcept;           // W3, with W4 applied
    fiber* pick_for_yield() noexcept;
    fiber* search() noexcept;
    void run_timers() noexcept;
    fiber* run_others_timers() noexcept;
    fiber* take_injected() noexcept;
    void register_current() noexcept;
    void yq_push(fiber* f) noexcept;
    fiber* yq_pop() noexcept;
    void yq_flush() noexcept;
    void stop_searching() noexcept;
    fiber* spin() noexcept;
    void sleep() noexcept;
    void poll_io_tick() noexcept;
    fiber* poll_io() noexcept;
    enum class epoll_sleep : std::uint8_t { not_used, returned, got_work };
    epoll_sleep sleep_in_epoll(std::int64_t timeout_ns) noexcept;
    std::size_t poll_reactor(std::int64_t timeout_ns) noexcept;  // into io_events_
    void push_local(fiber* f) noexcept;
    void resume_from_scheduler(fiber* f) noexcept;
    worker* switch_away(fiber* self, fiber* next, action a, bool exiting = false) noexcept;
    void complete_switch(transfer t) noexcept;
    void complete_other() noexcept;
    worker* yield_slow() noexcept;
    bool prepare(fiber* f) noexcept;
    void drain_unstartable() noexcept;
    void set_lifo(fiber* f) noexcept;
    std::uint32_t next_random() noexcept;

    static void bump_release(std::atomic<std::uint64_t>& c) noexcept {
        c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_release);  // release: R2 in runtime_impl.hpp
    }
    static void bump(std::atomic<std::uint64_t>& c) noexcept {
        c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // relaxed: single writer, stats
    }

    runtime_impl& rt_;
    const unsigned index_;
    ws_deque<fiber> dq_;  // spawned fibers: owner LIFO (depth-first), thieves FIFO
    ws_deque<fiber> wq_;  // woken fibers displaced from the LIFO slot: FIFO for all (W6)
    stack_cache stacks_;
    exec_context sched_ctx_;
    eh_state* thread_eh_ = nullptr;  // this thread's exception state record (context/switch.hpp X1)
    fiber* current_ = nullptr;
    fiber* lifo_ = nullptr;
    std::uint32_t lifo_streak_ = 0;
    std::uint32_t tick_ = 0;
    std::uint32_t yield_countdown_ = fairness_interval;
    std::uint32_t rng_;
    fiber* yq_head_ = nullptr;  // yield ring (W5)
    fiber* yq_tail_ = nullptr;
    bool searching_ = false;
    std::int64_t spin_window_ns_ = spin_max_ns;  // owner only

    // post-switch action, written by the leaving side, run by the arriving side
    action pending_ = action::none;
    fiber* pending_fiber_ = nullptr;
    exec_context* pending_from_ = nullptr;
    void (*pending_unlock_)(void*) = nullptr;
    void* pending_arg_ = nullptr;
    void (*pending_after_)(void*) = nullptr;  // runs after pending_unlock_ (wait_queue.hpp after_unlock)
    void* pending_after_arg_ = nullptr;
    std::uint64_t pending_gen_ = 0;
    std::int64_t pending_deadline_ = timer_queue::none;

    timer_queue timers_;
    std::atomic<std::int64_t> sleep_deadline_{timer_queue::none};  // T4: while asleep, when we will wake
    std::atomic<bool> in_epoll_{false};  // E4 (io/reactor.hpp): blocked in epoll_wait, not on sleep_word
    std::int64_t last_poll_ns_ = 0;      // W7: when this worker last polled the reactor
    // A reactor poll's batch: here, not on the stack of the fiber a tick poll runs on.
    // 128: batches of 256 to 1,024 measured the same (docs/design/io.md).
    std::array<epoll_event, 128> io_events_{};
    std::uint64_t io_streak_mark_ = ~std::uint64_t{0};  // W8: n_switches when the streak began
    std::uint32_t io_budget_left_ = 0;                 // W8

    std::vector<fiber*> unstartable_;  // W4: no stack could be mapped; finished by the scheduler loop
    std::thread thread_;
};

}  // namespace weft::detail
