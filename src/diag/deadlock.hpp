// The "all fibers are asleep" report: when nothing in the process can ever
// wake anyone again, say so with every wait, as Go does, and abort.
//
// The verdict (a *quiet* look, made by each runtime's monitor thread at each
// of its looks, diag/stall.hpp):
//   - every runtime that exists is quiet: not shutting down, all its workers
//     asleep (idle.hpp), no fiber queued, no timer armed in any worker's heap
//     (sleeps, deadlines, timed waits), no fiber in an *open* wait (parked on
//     a descriptor, or in a sleep with no end: worker.hpp), no spawn or wake
//     from outside its workers in flight;
//   - the callback-timer service (after, ticker) has no live timer;
//   - the blocking pool runs and queues no job;
//   - every thread of the process (/proc/self/status) is one of weft's own
//     (workers, monitors, the ticker thread, pool threads) or a plain thread
//     in a weft call with no deadline that no waker has claimed;
//   - something waits: a fiber is alive, or a plain thread is so blocked.
// Every wake-up comes from a running thread, a timer or a descriptor. A quiet
// state has none of them, so it lasts for ever: a deadlock. Outside the
// process, only a descriptor could wake a fiber (none is waited on).
//
// Invariants.
//  Z1 own_threads_ counts weft's own threads. Each increments it as the first
//     thing it runs and decrements it as the last, so it never counts a thread
//     that does not exist: "threads in the process == own + blocked plain"
//     leaves no room for any other thread.
//  Z2 A plain thread's untimed wait (wait_queue.cpp park_waiter) is listed
//     once it has nothing left to do but sleep (after it released the
//     waited-on lock and ran its after-unlock step, which may wake others)
//     until after its wait returns, and counts as blocked only while its word
//     is 0: a waker's claim (0 -> 3), before or after the listing, turns it
//     into a running thread at once, though still listed. Before it is
//     listed it is a thread the look does not know: no report. Timed plain
//     waits are never listed: they end by themselves.
//  Z3 Whatever a look reads that can change without passing through a state
//     the look sees as busy bumps events_ *before* it changes: an own thread
//     starting or ending (Z1), a plain wait listed or unlisted, a plain waiter
//     claimed, a runtime registered or unregistered. Fiber switches, spawns,
//     exits, parks and descriptor waits are counted by their workers (the
//     runtime's progress()). Everything else a look reads stays busy from the
//     moment it starts until its effect is counted: a woken fiber keeps a
//     worker awake (idle.hpp D3) until it has run (a switch); a pool job keeps
//     its thread busy until its fiber is woken; a firing timer holds the
//     ticker's lock.
//  Z4 A report needs two quiet looks at least `confirm` apart with the same
//     event sum (events_ plus every runtime's progress()) read at the start
//     of the first look and at the end of the second, so nothing switched,
//     spawned, woke, started or ended in between. A single look reads its
//     parts at different instants; a change between two of its reads is
//     either busy when the next look comes or has bumped the sum (Z3).
//  Z5 One report per episode: with WEFT_DEADLOCK=warn, a state is reported
//     again only after the event sum moved; with abort there is no again.
//
// Memory orders. events_ and own_threads_ are seq_cst read-modify-writes
// and loads: a bump sequenced before a change is then seen by a look that
// saw the change and reads events_ afterwards (the single total order). The
// per-worker counters are single-writer atomics read with acquire; the
// two looks that bracket a verdict are `confirm` (1 s) and several system
// calls apart, far beyond any store's time to become visible. The lists are
// guarded by their spinlock and the registry by its mutex.
//
// fork(): the child has none of the threads and waiters the parent's watch
// counted, so fork handlers (deadlock.cpp) hold the watch's locks across it
// and start the child from nothing. No fork handler starts a thread (the
// timer thread and the pool's start at their first use in the child), so
// every own thread of the child is counted after the reset.
//
// Limits, said in the README. A thread weft does not know (a library's
// helper thread, ThreadSanitizer's background thread, a thread in sleep(3)
// or in a blocking system call) may wake a fiber at any time: while one
// exists, there is no report. A signal handler may not call weft (nothing in
// weft is async-signal-safe). The looks are made by the runtimes' monitor
// threads: a runtime with one worker and stall warnings off has none. A
// thread blocked in std::thread::join, std::future::get or a std:: lock is
// such an unknown thread, so "main joins plain threads that deadlocked on
// weft primitives" is not reported; the same with weft's join is.
//
// Cost: a look that finds its own runtime's workers awake reads one atomic.
// Otherwise it takes the registry mutex and reads each runtime's counters;
// /proc/self/status is read only when everything else is quiet. Plain
// threads pay a spinlock round trip per untimed wait and a bump per wake.
//
// Tested by test/death/deadlock_death_test.cpp (the report) and
// test/api/deadlock_test.cpp (no report where a wake-up can still come).
#pragma once
#include "util/private.hpp"

#include <chrono>
#include <cstdint>

namespace weft::detail {

class runtime_impl;
struct waiter;

namespace deadlock {

enum class mode : std::uint8_t { abort, warn, off };

/// WEFT_DEADLOCK: unset, empty or "abort": abort; "warn": log the report at
/// error level and go on; "off": no looks. Throws std::invalid_argument.
mode mode_from_env();

/// The process's mode, read once; a bad value means abort (every runtime's
/// construction has thrown for it by then: resolve_options).
mode current_mode() noexcept;

/// Z3: something a look reads is about to change.
void note_event() noexcept;

/// fork(): the child starts with no runtime, no listed waiter and no own
/// thread counted (deadlock.cpp). Idempotent and never blocks; called before
/// any of weft's threads is started, and by each as it starts.
void install_fork_handlers() noexcept;


/// Z1: the first object of each of weft's own threads, destroyed last.
class own_thread {
public:
    own_thread() noexcept;
    ~own_thread();
    own_thread(const own_thread&) = delete;
    own_thread& operator=(const own_thread&) = delete;
};

/// Z2: a plain thread's untimed wait on `w`, from just before its sleep until
/// it returns.
class plain_wait {
public:
    plain_wait(const waiter& w, const char* why) noexcept;
    ~plain_wait();
    plain_wait(const plain_wait&) = delete;
    plain_wait& operator=(const plain_wait&) = delete;

private:
    friend struct plain_list;
    const waiter* w_;
    const char* why_;
    int tid_;
    bool listed_;
    plain_wait* prev_ = nullptr;
    plain_wait* next_ = nullptr;
};

/// After the runtime's threads have started / once they have all been joined.
/// register_runtime throws std::bad_alloc.
void register_runtime(runtime_impl& rt);
void unregister_runtime(runtime_impl& rt) noexcept;

/// One monitor's memory across its looks (Z4).
class watch {
public:
    static constexpr std::chrono::milliseconds confirm{1000};
    /// One look, from `self`'s monitor thread.
    void look(runtime_impl& self) noexcept;

private:
    bool quiet_before_ = false;
    std::uint64_t first_sum_ = 0;  // the sum at the start of the first quiet look
    std::chrono::steady_clock::time_point first_at_{};
};

}  // namespace deadlock
}  // namespace weft::detail
