// Callback timers for after() and ticker: they send the time on a channel,
// with no fiber waiting for them.
//
// One process-wide service: a 4-ary min-heap of (deadline, tick_timer,
// generation) and one thread that sleeps on a futex until the earliest
// deadline, then fires what is due with a non-blocking send. Chosen over
// entries in the per-worker heaps (which hold fiber parks: timer_queue.hpp)
// because a callback timer may be armed, reset and stopped from any thread,
// with or without a runtime, and a worker's heap is only pushed by its owner.
// Timed waits, the hot path (sleep_lateness, timer_churn), stay per-worker.
//
// Invariants (all state below is guarded by the service lock `lock_`).
//  K1 A tick_timer's `gen` changes on every stop and reset; a heap entry
//     carries the gen it was armed with and fires only if it still matches.
//     So stop() and reset() cancel in O(1) (the old entry goes stale and is
//     dropped when it reaches the top), and because firing happens under the
//     same lock, a stop() that returns has excluded every later send (the
//     cancel-versus-fire exclusion). `armed` says whether the current gen has
//     an entry; stale entries are counted, and once they are most of a heap
//     of more than 64, the heap is rebuilt without them (amortised O(1)), so
//     stopped tickers do not pile up until their old deadlines.
//  K2 Each heap entry holds a reference to its tick_timer; the caller's
//     handle (ticker, or after() until it drops it) holds another. The last
//     reference releases the channel.
//  K3 Lock order: service lock, then a channel's lock (the send), then the
//     scheduler's (waking a receiver). Nothing under a channel's or the
//     scheduler's lock takes the service lock.
//  K4 The thread sleeps until the earliest deadline. Arming a new earliest
//     deadline bumps `wake_` under the lock and futex-wakes it; the thread
//     reads `wake_` under the lock before sleeping with it as the expected
//     value, so a bump after that read makes the futex wait return at once
//     (no lost wake-up).
//
// Memory orders: refs as chan.hpp's (increments relaxed, decrement acq_rel);
// wake_ is read and bumped under lock_ (relaxed would do; its only other use
// is the futex's own comparison).
//
//  K5 fork(): the child forgets the timers armed before the fork and starts a
//     thread of its own at its first arm (see the fork handlers).
//
// The service and its thread are created on first use and never destroyed
// (a detached thread asleep on a futex at exit costs nothing).
//
// Tested by test/api/ticker_test.cpp.
#include <weft/ticker.hpp>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <pthread.h>

#include "diag/deadlock.hpp"
#include "time/timer_queue.hpp"
#include "util/min_heap.hpp"
#include "util/futex.hpp"
#include "util/spinlock.hpp"

namespace weft::detail {

struct tick_timer {
    std::atomic<std::uint32_t> refs{1};
    chan* ch;                    // retained (K2)
    std::int64_t period_ns = 0;  // guarded by the service lock
    std::uint64_t gen = 0;       // K1; guarded by the service lock
    bool armed = false;          // K1; guarded by the service lock

    void release() noexcept {
        // acq_rel: the shared_ptr argument (header).
        if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            chan_release(ch);
            delete this;
        }
    }
};

namespace {

class tick_service {
public:
    static tick_service& get() {
        static tick_service* s = new tick_service;  // never destroyed (header)
        return *s;
    }

    /// Made by get(), or null; for the deadlock watch, which must not make it.
    static inline std::atomic<tick_service*> existing{nullptr};

    /// No timer that can fire (diag/deadlock.hpp): no live entry, or no thread
    /// to fire it (a fork child that could not start one, K5).
    bool quiet() noexcept {
        lock_.lock();
        // Live entries counted, not inferred from stale_ (a hint for the rebuild);
        // firing happens under lock_, so none is half done.
        bool q = !has_thread_;
        if (!q) q = std::none_of(heap_.begin(), heap_.end(), [](const entry& e) { return e.gen == e.t->gen; });
        lock_.unlock();
        return q;
    }

    /// Throws std::bad_alloc or std::system_error (then nothing changed).
    void arm_locked(tick_timer* t, std::int64_t when) {
        if (!has_thread_) start_thread_locked();  // K5
        push_locked(entry{when, t, t->gen});
        t->armed = true;
        t->refs.fetch_add(1, std::memory_order_relaxed);  // relaxed: the caller holds one (K2)
        if (heap_.front().t == t && heap_.front().gen == t->gen) {  // a new earliest deadline (K4)
            wake_.fetch_add(1, std::memory_order_relaxed);  // relaxed: under lock_ (header)
            futex_wake(wake_, 1);
        }
    }

    /// K1: t's pending entry (if any) goes stale. May hand back references to
    /// drop (after unlocking) in `dead`.
    void disarm_locked(tick_timer* t, std::vector<tick_timer*>& dead) {
        ++t->gen;
        if (!t->armed) return;
        t->armed = false;
        if (++stale_ <= 64 || stale_ * 2 <= heap_.size()) return;
        std::vector<entry> live;
        live.reserve(heap_.size() - stale_);
        dead.reserve(dead.size() + stale_);  // both before the loop: a throw changes nothing (K2)
        for (const entry& e : heap_) {
            if (e.gen == e.t->gen) live.push_back(e);
            else dead.push_back(e.t);
        }
        heap_.clear();
        for (const entry& e : live) push_locked(e);  // no allocation: capacity kept
        stale_ = 0;
    }

    spinlock lock_;

private:
    struct entry {
        std::int64_t when;
        tick_timer* t;
        std::uint64_t gen;
    };
    void push_locked(const entry& e) { heap_push(heap_, e); }
    entry pop_locked() noexcept { return heap_pop(heap_); }

    tick_service() {
        dead_.reserve(dead_batch);  // run() never allocates: it is noexcept (a bad_alloc would terminate)
        deadlock::install_fork_handlers();  // before our thread counts itself (diag/deadlock.hpp)
        start_thread_locked();  // nobody else can see us yet
        existing.store(this, std::memory_order_release);  // release: built, before a fork handler reads it
        (void)::pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child);  // ENOMEM only
    }

    void start_thread_locked() {
        std::thread([this] { run(); }).detach();
        has_thread_ = true;
    }

    // K5: fork() with lock_ held by another thread would leave it held in the
    // child for ever, and the child has no thread to fire timers. So lock_ is
    // held across the fork; the child forgets the timers armed before it (their
    // channels may be in the middle of an operation by a thread the child does
    // not have: firing them crashed, 4 children in 1,000) and starts a thread at
    // its first arm. The references they held are leaked, never dropped twice.
    static void before_fork() noexcept { existing.load(std::memory_order_acquire)->lock_.lock(); }  // acquire: get()
    static void after_fork_in_parent() noexcept { existing.load(std::memory_order_acquire)->lock_.unlock(); }
    static void after_fork_in_child() noexcept {
        tick_service* s = existing.load(std::memory_order_acquire);  // acquire: as above
        for (const entry& e : s->heap_)  // forgotten: a later stop or reset must not count them stale (K1)
            if (e.gen == e.t->gen) e.t->armed = false;
        s->heap_.clear();
        s->stale_ = 0;
        s->dead_.clear();
        s->has_thread_ = false;
        s->lock_.unlock();
    }

    void run() noexcept {
        const deadlock::own_thread own;  // diag/deadlock.hpp Z1 (never ends)
        ::pthread_setname_np(::pthread_self(), "weft-ticker");
        std::vector<tick_timer*>& dead = dead_;  // ours alone once the thread started
        for (;;) {
            lock_.lock();
            const std::int64_t now = now_ns();
            // At most dead_batch references to drop per round (no reallocation);
            // what is still due is fired by the next round, at once.
            while (!heap_.empty() && heap_.front().when <= now && dead.size() < dead.capacity()) {
                entry e = pop_locked();
                tick_timer* t = e.t;
                if (e.gen != t->gen) {
                    if (stale_ > 0) --stale_;
                } else {  // K1: not stopped or reset since it was armed
                    std::chrono::steady_clock::time_point tp{std::chrono::nanoseconds(now)};
                    // Non-blocking, never allocates (capacity 1); a full channel drops the tick (Go).
                    (void)chan_send(t->ch, &tp, /*try_only=*/true, 0);
                    if (t->period_ns > 0) {
                        // The next tick on the original grid, skipping the ones already missed.
                        const std::int64_t missed = (now - e.when) / t->period_ns;
                        const std::int64_t next = e.when + (missed + 1) * t->period_ns;
                        push_locked(entry{next, t, e.gen});  // keeps the entry's reference; no reallocation (one was just popped)
                        continue;
                    }
                    ++t->gen;  // one-shot: done
                    t->armed = false;
                }
                dead.push_back(t);  // drop the entry's reference outside the lock (K2)
            }
            const std::int64_t next = heap_.empty() ? timer_queue::none : heap_.front().when;
            const std::uint32_t seen = wake_.load(std::memory_order_relaxed);  // relaxed: under lock_ (K4)
            lock_.unlock();
            for (tick_timer* t : dead) t->release();
            dead.clear();
            if (next == timer_queue::none) {
                futex_wait(wake_, seen);
            } else {
                const std::int64_t left = next - now_ns();
                if (left <= 0) continue;
                const timespec ts{static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
                futex_wait(wake_, seen, &ts);
            }
        }
    }

    static constexpr std::size_t dead_batch = 64;
    std::vector<entry> heap_;
    std::vector<tick_timer*> dead_;  // the thread's, reserved before it starts
    std::size_t stale_ = 0;  // entries whose gen no longer matches (K1)
    bool has_thread_ = false;  // K5; guarded by lock_
    std::atomic<std::uint32_t> wake_{0};
};

}  // namespace

bool tick_service_quiet() noexcept {
    tick_service* s = tick_service::existing.load(std::memory_order_acquire);  // acquire: pairs with get()
    return !s || s->quiet();
}

tick_timer* tick_timer_start(chan* c, std::int64_t deadline_ns, std::int64_t period_ns) {
    tick_service& s = tick_service::get();  // first: it may throw (the thread's creation)
    auto* t = new tick_timer;
    chan_retain(c);
    t->ch = c;
    s.lock_.lock();
    t->period_ns = period_ns;
    try {
        s.arm_locked(t, deadline_ns);
    } catch (...) {
        s.lock_.unlock();
        t->release();
        throw;
    }
    s.lock_.unlock();
    return t;
}

void tick_timer_stop(tick_timer* t) noexcept {
    tick_service& s = tick_service::get();
    std::vector<tick_timer*> dead;
    s.lock_.lock();
    try {
        s.disarm_locked(t, dead);
    } catch (...) {  // out of memory for the rebuilt heap: it keeps its stale entries
    }
    s.lock_.unlock();
    for (tick_timer* d : dead) d->release();  // K2: outside the lock
}

void tick_timer_release(tick_timer* t) noexcept { t->release(); }

void tick_timer_reset(tick_timer* t, std::int64_t period_ns) noexcept {
    tick_service& s = tick_service::get();
    std::vector<tick_timer*> dead;
    s.lock_.lock();
    try {
        s.disarm_locked(t, dead);
        t->period_ns = period_ns;
        s.arm_locked(t, deadline_after_ns(period_ns));
    } catch (...) {  // out of memory for the heap: the ticker stays stopped
    }
    s.lock_.unlock();
    for (tick_timer* d : dead) d->release();
}

}  // namespace weft::detail

namespace weft {

ticker::ticker(std::int64_t period_ns, int) : ch_(1), t_(nullptr) {
    if (period_ns <= 0) throw std::invalid_argument("weft::ticker: the period must be positive");
    t_ = detail::tick_timer_start(ch_.native_handle(), detail::deadline_after_ns(period_ns), period_ns);
}

ticker::~ticker() {
    detail::tick_timer_stop(t_);
    detail::tick_timer_release(t_);
}

void ticker::stop() noexcept { detail::tick_timer_stop(t_); }

void ticker::reset_ns(std::int64_t period_ns) {
    if (period_ns <= 0) throw std::invalid_argument("weft::ticker: the period must be positive");
    detail::tick_timer_reset(t_, period_ns);
}

}  // namespace weft
