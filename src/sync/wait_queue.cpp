#include "sync/wait_queue.hpp"

#include <optional>

#include "diag/deadlock.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"
#include "time/timer_queue.hpp"
#include "util/futex.hpp"

namespace weft::detail {

void waiter_list::push_back(waiter& w) noexcept {
    w.next = nullptr;
    w.prev = tail_;
    if (tail_) tail_->next = &w;
    else head_ = &w;
    tail_ = &w;
    w.linked = true;
}

void waiter_list::push_front(waiter& w) noexcept {
    w.prev = nullptr;
    w.next = head_;
    if (head_) head_->prev = &w;
    else tail_ = &w;
    head_ = &w;
    w.linked = true;
}

waiter* waiter_list::pop_front() noexcept {
    waiter* w = head_;
    if (w) remove(*w);
    return w;
}

void waiter_list::remove(waiter& w) noexcept {
    if (w.prev) w.prev->next = w.next;
    else head_ = w.next;
    if (w.next) w.next->prev = w.prev;
    else tail_ = w.prev;
    w.next = w.prev = nullptr;
    w.linked = false;
}

waiter make_waiter() noexcept {
    worker* wk = worker::current();
    return waiter{wk ? wk->running() : nullptr};
}

namespace {
void unlock_spinlock(void* p) noexcept { static_cast<spinlock*>(p)->unlock(); }

}  // namespace

wake_reason park_waiter(waiter& w, spinlock& lk, const char* why, std::int64_t deadline_ns, bool cancellable,
                        void (*after_unlock)(void*), void* arg) noexcept {
    if (!w.f) {
        lk.unlock();
        if (after_unlock) after_unlock(arg);
        // diag/deadlock.hpp Z2: listed once nothing is left to do but sleep.
        std::optional<deadlock::plain_wait> listed;
        if (deadline_ns == timer_queue::none) listed.emplace(w, why);
        for (;;) {
            const std::uint32_t v = w.word.load(std::memory_order_acquire);  // acquire: pairs with the waker's release
            if (v == 1) return wake_reason::notified;
            if (v == 3 || deadline_ns == timer_queue::none) {  // 3: claimed, the waker completes soon (Q4)
                futex_wait(w.word, v);
                continue;
            }
            const std::int64_t now = now_ns();
            const std::int64_t left = deadline_ns <= now ? 0 : deadline_ns - now;  // no overflow for INT64_MIN
            if (left <= 0) {
                std::uint32_t expected = 0;
                // acq_rel: the same CAS the waker races; exactly one wins (header).
                if (w.word.compare_exchange_strong(expected, 2, std::memory_order_acq_rel, std::memory_order_acquire))
                    return wake_reason::timeout;
                continue;  // claimed: wait for the waker to complete
            }
            const timespec ts{static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
            futex_wait(w.word, 0, &ts);
        }
    }
    fiber* self = w.f;
    if (self->cancel_deferred.load(std::memory_order_relaxed)) cancellable = false;  // F8: the park too; our own flag
    // An early look only: the post-switch hook looks again after the fence pair (F7).
    if (cancellable && cancel_pending(self)) {
        lk.unlock();
        if (after_unlock) after_unlock(arg);
        return wake_reason::cancelled;
    }
    if (deadline_ns != timer_queue::none && deadline_ns <= now_ns()) {
        lk.unlock();
        if (after_unlock) after_unlock(arg);
        return wake_reason::timeout;
    }
    self->wait_reason.store(why, std::memory_order_relaxed);  // relaxed: diagnostics
    worker::current()->park_current(&unlock_spinlock, &lk, deadline_ns, cancellable, after_unlock, arg);
    self->wait_reason.store(nullptr, std::memory_order_relaxed);  // relaxed: diagnostics
    return self->reason;
}

bool claim_waiter(waiter& w) noexcept {
    if (!w.f) {
        // diag/deadlock.hpp Z3: before the claim turns a blocked thread into a running one
        if (deadlock::current_mode() != deadlock::mode::off) deadlock::note_event();
        std::uint32_t expected = 0;
        // acq_rel: a failed CAS means the sleeper timed out first and leaves on its own (Q2, Q3).
        return w.word.compare_exchange_strong(expected, 3, std::memory_order_acq_rel, std::memory_order_relaxed);
    }
    return w.f->try_claim_current(wake_reason::notified);  // false: lost to the canceller or a timeout (Q2)
}

void complete_unpark(waiter& w, bool stealable) noexcept {
    if (!w.f) {
        w.word.store(1, std::memory_order_release);  // release: publishes token and the waker's writes (header)
        futex_wake(w.word, 1);
        return;
    }
    fiber* f = w.f;
    f->rt->schedule_woken(f, stealable);
}

bool unpark_waiter(waiter& w) noexcept {
    if (!claim_waiter(w)) return false;  // lost to the canceller or a timeout (Q2)
    complete_unpark(w);
    return true;
}

}  // namespace weft::detail
