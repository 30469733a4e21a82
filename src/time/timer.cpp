// this_fiber::sleep_* and weft::timer, on the one deadline path
// (sync/wait_queue.hpp park_waiter with a deadline; time/timer_queue.hpp).
#include <weft/error.hpp>
#include <weft/this_fiber.hpp>
#include <weft/timer.hpp>

#include <new>
#include <thread>
#include <type_traits>

#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"
#include "sync/wait_queue.hpp"
#include "time/timer_queue.hpp"
#include "util/check.hpp"

namespace weft::detail {

// A timer: its deadline, whether it was cancelled, and who waits. Guarded by lock.
//
// Invariants (all under lock, except where a wake-up hands a value over):
//  M1 `inside` counts the callers of wait() that will touch the state again:
//     one enters under the lock and leaves under it, except a waiter whose
//     outcome a waker handed over with the wake-up (M2): that waker leaves on
//     its behalf, and the waiter returns without touching the timer. So a
//     timer may be destroyed once cancel() returned, as a notified
//     std::condition_variable may: the destructor waits for the callers
//     still leaving (M3).
//  M2 A waiter stays linked from its first park until it returns, except
//     when cancel() or reset() decides its outcome - cancelled (return
//     false) or expired (its deadline had passed before the reset: return
//     true). A decider that claims the waiter (wait_queue.hpp Q4) unlinks
//     it and hands the outcome over in `token`, which only a claim winner
//     writes (so the woken waiter reads it without the lock). One whose
//     claim fails is awake already (its deadline, or an earlier reset):
//     the decider writes `outcome`, which the waiter reads under the lock.
//     A decided outcome is never replaced, so a cancel followed by a reset
//     before the waiter runs still returns false, and a waiter woken by a
//     reset, still linked, is decided by what comes next.
//     A reset that decides nothing (the timer had not expired) wakes the
//     waiters it can claim to re-park with the new deadline.
//  M3 Once the timer is cancelled or expired, no caller of wait() parks
//     again: each re-checks both under the lock before parking. The
//     destructor, finding callers still inside, decides those still parked
//     on an expired timer itself (as reset() would) and waits only for those
//     already awake. On a pending timer it waits as well when every waiter
//     still inside is leaving anyway (decided, or a fiber whose cancellation
//     was requested: runtime::shutdown() unwinding a timer's owner and its
//     waiter at once); any other waiter is a misuse, and it aborts.
struct timer_waiter {
    waiter w;  // first: the list holds &w (pointer-interconvertible)
    std::uintptr_t outcome = 0;  // M2: decided while awake; guarded by lock
};
static_assert(std::is_standard_layout_v<timer_waiter>);

struct timer_state {
    static constexpr std::uintptr_t token_cancelled = 1, token_expired = 2;

    spinlock lock;
    std::uint32_t inside = 0;      // M1; guarded by lock
    std::int64_t deadline_ns = 0;  // guarded by lock
    bool cancelled = false;        // guarded by lock
    waiter_list waiters;           // guarded by lock

    /// M3: some linked waiter is neither decided nor a fiber being
    /// cancelled (it really waits). Lock held.
    bool someone_waits_locked() const noexcept {
        for (const waiter* w = waiters.front(); w != nullptr; w = w->next) {
            if (reinterpret_cast<const timer_waiter*>(w)->outcome != 0) continue;
            // relaxed: F4 flags are monotonic; a stale false only means we abort on a misuse that
            // cancellation was about to end, which the caller's next look would have seen.
            if (w->f && cancel_pending(w->f)) continue;
            return true;
        }
        return false;
    }

    /// M2: decides every waiter without an outcome (`token`), or with token 0
    /// wakes those parked to look again. Lock held.
    void decide_all_locked(std::uintptr_t token) noexcept {
        for (waiter* w = waiters.front(); w != nullptr;) {
            waiter* const next = w->next;  // read first: a woken waiter may return at once
            auto* tw = reinterpret_cast<timer_waiter*>(w);
            if (tw->outcome == 0) {
                if (claim_waiter(*w)) {
                    if (token != 0) {
                        waiters.remove(*w);
                        w->token = token;  // handed over by the wake-up (Q4)
                        --inside;          // M1: it will not touch the timer again
                    }
                    complete_unpark(*w);
                } else if (token != 0) {
                    tw->outcome = token;  // awake: it reads this under the lock
                }
            }
            w = next;
        }
    }
};

std::int64_t steady_now_ns() noexcept { return now_ns(); }

void sleep_until_steady_ns(std::int64_t deadline_ns) {
    worker* wk = worker::current();
    if (!wk || !wk->running()) {  // a plain thread sleeps
        const std::int64_t now = now_ns();
        if (deadline_ns > now) std::this_thread::sleep_for(std::chrono::nanoseconds(deadline_ns - now));  // no overflow
        else std::this_thread::yield();  // as a fiber does (timer.hpp)
        return;
    }
    if (deadline_ns <= now_ns()) {
        // A cancellation point all the same (timer.hpp): a cancelled fiber looping on
        // sleep_for(0) held runtime::shutdown() up for ever (found by review).
        // relaxed: as park_waiter's early look (F4: the flags are monotonic).
        const fiber* self = wk->running();
        if (cancel_pending(self)) throw operation_cancelled();
        this_fiber::yield();  // see timer.hpp: a past deadline is a yield
        return;
    }
    spinlock lk;  // nobody else ever takes it: only the deadline (or cancellation) wakes us
    waiter_list list;
    waiter me = make_waiter();
    // A sleep with no end (a saturated deadline) is no deadlock: it waits for time,
    // as Go's time.Sleep(max) does (diag/deadlock.hpp).
    const bool endless = deadline_ns == timer_queue::none;
    for (;;) {
        lk.lock();
        list.push_back(me);
        if (endless) worker::current()->count_open_wait();
        const wake_reason r = park_waiter(me, lk, "sleep", deadline_ns);
        if (endless) worker::current()->count_open_done();
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
    for (;;) {
        s.lock.lock();
        if (s.inside != 0) {
            if (s.cancelled || detail::now_ns() >= s.deadline_ns) {
                // M3: settled. Those parked on an expired timer leave with their outcome now.
                if (!s.cancelled) s.decide_all_locked(detail::timer_state::token_expired);
            } else if (s.someone_waits_locked()) {
                s.lock.unlock();
                detail::fatal("weft::timer::~timer", "destroying a timer that a fiber or thread waits on");
            }
        }
        const bool empty = s.inside == 0;
        s.lock.unlock();
        if (empty) break;
        this_fiber::yield();  // M3: the callers still inside are leaving (a plain thread yields its CPU)
    }
    s.~timer_state();
}

bool timer::wait() {
    detail::timer_state& s = state();
    detail::timer_waiter me{detail::make_waiter()};
    s.lock.lock();
    ++s.inside;  // M1
    for (;;) {
        bool result = false;
        if (me.outcome != 0) {  // M2: decided while we were awake
            result = me.outcome == detail::timer_state::token_expired;
        } else if (s.cancelled) {
            result = false;
        } else if (detail::now_ns() >= s.deadline_ns) {
            result = true;
        } else {
            if (!me.w.linked) s.waiters.push_back(me.w);  // M2: linked until we return
            // relaxed: a thread waiter's record is reused; claimers hold the lock
            me.w.word.store(0, std::memory_order_relaxed);
            const detail::wake_reason r = detail::park_waiter(me.w, s.lock, "timer", s.deadline_ns);
            if (r == detail::wake_reason::notified && me.w.token != 0)  // M2: handed over, and unlinked
                return me.w.token == detail::timer_state::token_expired;  // our waker left for us (M1)
            s.lock.lock();
            if (r == detail::wake_reason::cancelled) {
                if (me.w.linked) s.waiters.remove(me.w);
                --s.inside;
                s.lock.unlock();
                throw operation_cancelled();
            }
            continue;  // a reset, or our deadline: look again
        }
        if (me.w.linked) s.waiters.remove(me.w);
        --s.inside;
        s.lock.unlock();
        return result;
    }
}

bool timer::cancel() noexcept {
    detail::timer_state& s = state();
    s.lock.lock();
    const bool was_pending = !s.cancelled && detail::now_ns() < s.deadline_ns;
    if (was_pending) {  // an expired or cancelled timer stays as it is (Go's Stop)
        s.cancelled = true;
        s.decide_all_locked(detail::timer_state::token_cancelled);
    }
    s.lock.unlock();
    return was_pending;
}

void timer::reset_ns(std::int64_t d_ns) noexcept {
    detail::timer_state& s = state();
    const std::int64_t deadline = detail::deadline_after_ns(d_ns);
    s.lock.lock();
    // M2: waiting callers whose deadline had passed saw the timer expire; the
    // others wait for the new deadline.
    const bool had_expired = !s.cancelled && detail::now_ns() >= s.deadline_ns;
    s.deadline_ns = deadline;
    s.cancelled = false;
    s.decide_all_locked(had_expired ? detail::timer_state::token_expired : 0);
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
