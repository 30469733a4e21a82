// The I/O reactor: an edge-triggered epoll set per runtime, polled by idle
// workers, and a process-wide table of poll descriptors (one per fd number)
// that hold the fibers waiting for a descriptor to become ready.
//
// Vocabulary. A *poll descriptor* (pd) belongs to an fd number for the life
// of the process (the table never shrinks, as Go's pollcache). It is
// *owned* (registered once, edge-triggered, for IN|OUT|RDHUP) when weft's
// sockets wait on it: they close through io_close, which forgets the
// registration. A descriptor the user passes to io::wait_readable is armed
// *one-shot* (level-triggered, EPOLLONESHOT) for each wait instead, so a
// plain ::close() and reuse of the number can never leave a stale
// registration behind.
//
// Ownership. A pd's fields are guarded by its spinlock, except `gen`, which is
// written under it and read without it by plain-thread waiters, and the edge
// counts `rseq`/`wseq`, written under it and read without it by io_seq (E7).
// The epoll fd and eventfd are the reactor's; any thread may epoll_ctl and
// epoll_wait.
//
// Invariants.
//  E1 epoll_event.data = fd | gen << 32. An event whose gen differs from the
//     pd's is stale (the descriptor was closed and maybe reused) and is
//     dropped. io_close bumps gen under the lock, wakes every waiter with
//     EBADF, then closes: no event of the old file reaches a new waiter.
//  E2 Owned, edge-triggered: an edge that finds no waiter of its direction
//     sets `ready` for it; a waiter that finds `ready` clears it and returns
//     without parking (the caller retries its syscall). A waiter that finds it
//     clear parks; the next edge wakes every waiter of that direction. The
//     check and the link happen under the pd lock and the poller takes the same
//     lock, so an edge is never lost between a caller's EAGAIN and its park.
//     Registration (EPOLL_CTL_ADD) reports the current state as a first edge.
//  E3 One-shot: the waiter links itself, then (still under the lock) arms the
//     union of its waiters' directions. Level-triggered arming reports a
//     descriptor that is already ready, so nothing is lost. The poller
//     re-arms for the waiters an event did not wake.
//  E4 At most one worker blocks in epoll_wait (`poller_busy_`); it is a
//     parked worker (in the idle set's sleepers) that sets `in_epoll` before
//     re-checking its sleep word, and a waker stores the word before loading
//     `in_epoll` (a seq_cst fence between store and load on each side:
//     Dekker), then writes the eventfd: a wake-up is never lost in
//     epoll_wait. Non-blocking polls may run on any worker at any time
//     (epoll hands each edge to one caller).
//  E9 A backstop, as Go's sysmon (it polls the network when nobody has for
//     10 ms): busy workers poll only when they switch fibers (W7), so while
//     every awake worker runs one fiber that never switches and the others
//     sleep on their futexes, nobody would watch the epoll set (the poller
//     woke for some fiber and runs it; or the others went to sleep before
//     anything was registered): a review measured readiness waiting 1.4 s
//     for such a computation. The stall monitor (diag/stall.hpp S6) checks
//     at each look: the reactor active, no blocking poller, some worker
//     asleep, and some worker still in the fiber it ran at the last look;
//     then it wakes one sleeper (idle_set::notify_one), which finds nothing,
//     goes back to sleep and, the role being free, blocks in epoll_wait. So
//     readiness waits at most about two looks (100 ms by default) behind a
//     stuck worker, with nothing added to any hot path. Rejected: handing
//     the role over eagerly whenever the poller wakes (correct, but each
//     readiness event then also woke a second worker: 2.4 voluntary
//     switches per event instead of 1, and 7% fewer echo requests/s at
//     1,000 connections); Go does not hand over eagerly either. The
//     backstop runs with stall warnings off too (stall_warning < 0).
//  E5 Woken fibers go to the polling worker (its LIFO slot, then its woken
//     queue, where idle workers steal them): readiness runs where it was seen.
//  E6 Drained waits (for net.cpp's N6). Every harvested read-side event of
//     the current generation adds one to the pd's `rseq` (under the lock), and
//     one whose mask says hang-up, error or urgent data sets `rsticky` (a state
//     that a read can stop short at without a new edge to follow; cleared only
//     by registration and io_close). A reader that loaded rseq = s before a
//     recv(2) that came back short (the receive queue was empty at that moment)
//     may later wait *without* another recv: io_wait_drained(fd, s) parks only
//     if, under the lock, `rready` and `rsticky` are clear and rseq is still s.
//     Sound because every byte queued after the short read came with a wake-up
//     of the epoll item after it, i.e. an edge not yet harvested (it will wake
//     the parked reader: E2) or one harvested since (rseq moved: no park).
//  E7 Several waiters of one direction. E2's `ready` bit keeps an edge only
//     when it found no waiter: an edge that woke fiber A is lost to fiber B
//     whose syscall said EAGAIN before that edge but who links after its
//     harvest (B would park with the readiness already used up; found by a
//     test with four readers on one stream). So the poller also counts the
//     edges of each direction (rseq, wseq, under the lock), a caller loads
//     the count before its syscall (io_seq) and, after EAGAIN, parks only if
//     the count has not moved: by the argument of E6, the EAGAIN proved the
//     descriptor not ready after that load, so any readiness since came with
//     an edge that is either harvested (the count moved) or still to be
//     harvested (it wakes the parked caller). The counts are 64-bit, so no
//     wrap can make a moved count look unmoved (net.cpp's N6 mark keeps 63
//     bits of rseq: past 2^63 edges its waits would only see "moved" and
//     recv once more).
//  E8 Handing a descriptor out of weft (tcp_stream::release) or into it
//     (adoption) forgets its owned registration (io_forget: EPOLL_CTL_DEL,
//     gen bumped, owner cleared). A releaser has no call in flight (take_fd
//     checks); an adopter should have none, so no fiber should be linked; one
//     that is (two owners of one descriptor, a misuse) is woken to retry. The
//     gen bump drops events of the old registration still in flight (E1); a
//     plain thread inside io::wait_* on that number sees it as a close (EBADF).
//     Without E8, a plain close(2) of a released descriptor drops the kernel's
//     registration but not `owner`, and the next socket given that number
//     would skip registering and park for good.
//  E10 Prefetch hints (no ordering, no correctness role). With thousands of
//     connections, what a woken fiber touches first is cold: its descriptor,
//     the top of its saved stack (the switch's registers, the frames of the
//     wait), and its socket's net_fd (net.cpp re-checks C after the wait).
//     poll() prefetches both lines of the batch's descriptors before it takes
//     their locks, and each claimed waiter's stack top (1 KiB; 512 B and 2 KiB
//     measured no better) and its hint (io_wait_owned's `touch`, kept in the
//     waiter's `key`, which only the parking lot uses otherwise) before it
//     wakes the fiber. Reading the fiber's fctx is ordered: the parker stored
//     it before publishing `parked` and releasing the pd lock we hold (W1),
//     and only a parked fiber can be claimed. Measured (release build) at
//     10,000 echo connections: the server's user-space share of its CPU from
//     14% to 10%; echo requests/s +1% at 10,000 and +4% at 1,000 connections
//     (2 workers, interleaved runs).
//  E11 Eviction (net.cpp N3, as Go's pollDesc evict). close() of a socket that
//     calls are still using cannot close the descriptor (their numbers must
//     not be reused under them: N2), so io_evict wakes its waiters instead:
//     under the lock it sets the sticky `evicted` and claims every waiter with
//     the closed token (they throw EBADF), and every later wait, fiber or
//     thread, throws EBADF instead of parking. A fiber checks `evicted` under
//     the lock it would park under, so none parks after the eviction; a plain
//     thread loads it (acquire, against the eviction's release store) before
//     each poll(2) slice of at most 100 ms. io_evict installs the number's
//     table chunk if it is missing (a call about to wait may be installing
//     it: with nothing marked, that call would wait unwoken; when the chunk
//     cannot be had, it falls back to shutdown(2)). io_close and io_forget clear it
//     with the new generation. It replaced shutdown(2), which woke the calls
//     through the kernel but shut the connection down for every duplicate of
//     the descriptor too (dup, SCM_RIGHTS, a child's inherited copy: a
//     listener stopped listening, a peer saw end of stream while a copy was
//     open; found by review), which neither close(2) nor Go's Close does.
//
// Memory orders: see each atomic. The pd lock orders everything about
// waiters; a waiter is claimed under it and woken after it is released (the
// claim, Q4 of sync/wait_queue.hpp, already excludes its deadline and the
// canceller); a woken fiber is published by the run-queue hand-off.
//
// Tested by test/api/io_test.cpp and test/api/net_test.cpp.
#pragma once
#include "util/private.hpp"

#include <atomic>
#include <cstdint>

struct epoll_event;

namespace weft::detail {

class worker;

class reactor {
public:
    reactor();  // throws std::system_error
    ~reactor();
    reactor(const reactor&) = delete;
    reactor& operator=(const reactor&) = delete;

    int epoll_fd() const noexcept { return ep_; }
    /// Worth polling: a descriptor is registered or a one-shot waiter is armed.
    // relaxed: a hint. The worker that ran a registering fiber sees its own increment (program
    // order) and polls before it sleeps; a worker already asleep is E9's (the stall monitor).
    bool active() const noexcept { return active_.load(std::memory_order_relaxed) > 0; }
    void add_active(int n) noexcept { active_.fetch_add(n, std::memory_order_relaxed); }  // relaxed: a counter
    /// A worker is in (or entering) the blocking epoll_wait (E4). A hint (E9).
    bool poller_present() const noexcept { return poller_busy_.load(std::memory_order_relaxed); }  // relaxed: E9

    /// Harvests up to `capacity` ready events into `evs` and wakes their fibers
    /// onto the calling worker (E5). timeout_ns: 0 = do not block, < 0 = until
    /// an event or interrupt(). Returns how many fibers it woke. `evs` is the
    /// worker's (worker::io_events_): a tick poll runs on a fiber's stack,
    /// which should not pay 1.5 KiB for the batch.
    std::size_t poll(std::int64_t timeout_ns, epoll_event* evs, int capacity) noexcept;
    /// The blocking-poller role (E4).
    bool try_become_poller() noexcept { return !poller_busy_.exchange(true, std::memory_order_acquire); }  // acquire: role hand-over
    void stop_being_poller() noexcept { poller_busy_.store(false, std::memory_order_release); }  // release: as above
    /// Makes a blocked epoll_wait return (eventfd write). Async-signal-safe.
    void interrupt() noexcept;

    /// Runtime shutdown, once the workers are joined (and again at destruction):
    /// forgets every registration with this reactor; other runtimes' fibers
    /// parked on such a descriptor are woken to retry with their own.
    void detach_all() noexcept;

    /// The runtime's own descriptors, which io::wait_* must not re-register.
    bool is_internal(int fd) const noexcept { return fd == ep_ || fd == event_fd_; }
    /// epoll_wait failed with something other than EINTR (logged once).
    bool failed() const noexcept { return failed_.load(std::memory_order_relaxed); }  // relaxed: a flag

private:
    int ep_ = -1;
    int event_fd_ = -1;
    bool pwait2_ = true;  // epoll_pwait2 works here (constructor's probe)
    std::atomic<bool> failed_{false};
    std::atomic<int> active_{0};
    std::atomic<bool> poller_busy_{false};
};

/// For weft's own sockets: waits with an owned (persistent, edge-triggered)
/// registration, made on the first fiber wait. Same contract as io_wait
/// (weft/io.hpp): throws timed_out, bad_file_descriptor, operation_cancelled.
/// The socket must be closed with io_close. Plain threads: poll(2).
/// `seq`: io_seq(fd, write) loaded before the system call that said EAGAIN
/// (E7); without it, only `ready` keeps an edge that came in between (E2).
/// `touch`: memory the caller reads first when it resumes, prefetched by the
/// poller that wakes it (E10; a hint, may be null).
void io_wait_owned(int fd, bool write, std::int64_t deadline_ns, const std::uint64_t* seq = nullptr,
                   const void* touch = nullptr);

/// W8 (sched/worker.hpp): an I/O call completed without waiting. On a fiber
/// it may yield (every worker::io_budget calls in a row); never throws.
void io_spent() noexcept;

/// E8: forgets fd's owned registration, if any (the caller holds no call on
/// it). Never suspends; one epoll_ctl when there was a registration.
void io_forget(int fd) noexcept;

/// E11: close() of a socket with calls in flight (net.cpp N3). Wakes every
/// waiter of fd with bad_file_descriptor and makes later waits on fd throw
/// it (a plain thread's within its 100 ms poll slice) until io_close or
/// io_forget. Leaves the open file alone. Never suspends, never throws.
void io_evict(int fd) noexcept;

/// E6/E7: the edge sequence of fd's poll descriptor for one direction, to
/// load before a system call.
std::uint64_t io_seq(int fd, bool write);
/// E6: after a recv that came back short with io_seq(fd, false) == seq before it,
/// waits for data without trying another recv first (a fiber; a plain thread
/// returns at once). Returns when a recv is worth trying: after a wake-up, an
/// edge since `seq`, or at the deadline (no throw: the caller's recv and its
/// ordinary wait then report the timeout, N5). Throws bad_file_descriptor
/// (io_close) and operation_cancelled as io_wait_owned.
void io_wait_drained(int fd, std::uint64_t seq, std::int64_t deadline_ns, const void* touch = nullptr);

}  // namespace weft::detail
