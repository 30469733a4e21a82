// this_fiber::sleep_* and weft::timer, on the one deadline path
// (sync/wait_queue.hpp park_waiter with a deadline; time/timer_queue.hpp).
#include <weft/error.hpp>
#include <weft/this_fiber.hpp>
#include <weft/timer.hpp>

#include <new>
#include <thread>

#include "sched/worker.hpp"
#include "sync/wait_queue.hpp"
#include "time/timer_queue.hpp"
#include "util/check.hpp"

namespace weft::detail {

// A timer: its deadline, whether it was cancelled, and who waits. Guarded by lock.
struct timer_state {
    spinlock lock;
    std::int64_t deadline_ns = 0;  // guarded by lock
    bool cancelled = false;        // guarded by lock
    waiter_list waiters;           // guarded by lock

    void wake_all_locked() noexcept {
        // A waiter that loses its claim (timeout, cancellation) unlinks itself (Q3);
        // a winner re-reads the state under the lock.
        while (waiter* w = waiters.pop_front()) (void)unpark_waiter(*w);
    }
};

std::int64_t steady_now_ns() noexcept { return now_ns(); }

void sleep_until_steady_ns(std::int64_t deadline_ns) {
    worker* wk = worker::current();
    if (!wk || !wk->running()) {  // a plain thread sleeps
        const std::int64_t now = now_ns();
        if (deadline_ns > now) std::this_thread::sleep_for(std::chrono::nanoseconds(deadline_ns - now));  // no overflow
        return;
    }
    if (deadline_ns <= now_ns()) {
        this_fiber::yield();  // see timer.hpp: a past deadline is a yield
        return;
    }
    spinlock lk;  // nobody else ever takes it: only the deadline (or cancellation) wakes us
    waiter_list list;
    waiter me = make_waiter();
    for (;;) {
        lk.lock();
        list.push_back(me);
        const wake_reason r = park_waiter(me, lk, "sleep", deadline_ns);
        lk.lock();
        if (me.linked) list.remove(me);
        lk.unlock();
        if (r == wake_reason::cancelled) throw operation_cancelled();
        if (r == wake_reason::timeout) return;
    }
}

}  // namespace weft::detail

namespace weft {

static_assert(sizeof(detail::timer_state) <= 40, "timer::storage_ (40 bytes) is too small for detail::timer_state");
static_assert(alignof(detail::timer_state) <= 8);

detail::timer_state& timer::state() const noexcept {
    return *std::launder(reinterpret_cast<detail::timer_state*>(storage_));
}

timer::timer(std::int64_t d_ns, from_ns_tag) {
    auto* st = ::new (static_cast<void*>(storage_)) detail::timer_state;
    st->deadline_ns = detail::deadline_after_ns(d_ns);
}

timer::~timer() {
    detail::timer_state& s = state();
    s.lock.lock();
    const bool waited_on = !s.waiters.empty();
    s.lock.unlock();
    if (waited_on) detail::fatal("weft::timer::~timer", "destroying a timer that a fiber or thread waits on");
    s.~timer_state();
}

bool timer::wait() {
    detail::timer_state& s = state();
    detail::waiter me = detail::make_waiter();
    s.lock.lock();
    for (;;) {
        if (s.cancelled) {
            s.lock.unlock();
            return false;
        }
        const std::int64_t deadline = s.deadline_ns;
        if (detail::now_ns() >= deadline) {
            s.lock.unlock();
            return true;
        }
        s.waiters.push_back(me);
        const detail::wake_reason r = detail::park_waiter(me, s.lock, "timer", deadline);
        s.lock.lock();
        if (me.linked) s.waiters.remove(me);  // Q3
        if (r == detail::wake_reason::cancelled) {
            s.lock.unlock();
            throw operation_cancelled();
        }
        me.word.store(0, std::memory_order_relaxed);  // relaxed: a thread waiter's record is reused; we hold the lock
        // notified (cancel or reset) or timeout: re-read the state under the lock
    }
}

bool timer::cancel() noexcept {
    detail::timer_state& s = state();
    s.lock.lock();
    const bool was_pending = !s.cancelled && detail::now_ns() < s.deadline_ns;
    if (was_pending) {  // an expired or cancelled timer stays as it is (Go's Stop)
        s.cancelled = true;
        s.wake_all_locked();
    }
    s.lock.unlock();
    return was_pending;
}

void timer::reset_ns(std::int64_t d_ns) noexcept {
    detail::timer_state& s = state();
    const std::int64_t deadline = detail::deadline_after_ns(d_ns);
    s.lock.lock();
    s.deadline_ns = deadline;
    s.cancelled = false;
    s.wake_all_locked();  // they re-arm with the new deadline
    s.lock.unlock();
}

bool timer::expired() const noexcept {
    detail::timer_state& s = state();
    s.lock.lock();
    const bool e = !s.cancelled && detail::now_ns() >= s.deadline_ns;
    s.lock.unlock();
    return e;
}

timer::clock::time_point timer::deadline() const noexcept {
    detail::timer_state& s = state();
    s.lock.lock();
    const std::int64_t ns = s.deadline_ns;
    s.lock.unlock();
    return clock::time_point(std::chrono::duration_cast<clock::duration>(std::chrono::nanoseconds(ns)));
}

}  // namespace weft
