#include "sync/wait_queue.hpp"

#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"
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

wake_reason park_waiter(waiter& w, spinlock& lk, const char* why) noexcept {
    if (!w.f) {
        lk.unlock();
        while (w.word.load(std::memory_order_acquire) == 0)  // acquire: pairs with release in unpark_waiter
            futex_wait(w.word, 0);
        return wake_reason::notified;
    }
    fiber* self = w.f;
    // relaxed: an early look only; the post-switch hook re-checks with seq_cst (F3, F4).
    if (self->cancel_requested.load(std::memory_order_relaxed) || self->rt->cancelling(std::memory_order_relaxed)) {
        lk.unlock();
        return wake_reason::cancelled;
    }
    self->wait_reason.store(why, std::memory_order_relaxed);  // relaxed: diagnostics
    worker::current()->park_current(&unlock_spinlock, &lk);
    self->wait_reason.store(nullptr, std::memory_order_relaxed);  // relaxed: diagnostics
    return self->reason;
}

bool unpark_waiter(waiter& w) noexcept {
    if (!w.f) {
        w.word.store(1, std::memory_order_release);  // release: the waker's writes before this are visible to the sleeper
        futex_wake(w.word, 1);
        return true;
    }
    fiber* f = w.f;
    park_state expected = park_state::parked;
    // seq_cst: the same total order as the canceller's CAS (fiber.hpp F3); a waker holds
    // the list lock, which the parking fiber's hook released only after storing `parked`.
    if (!f->pstate.compare_exchange_strong(expected, park_state::woken, std::memory_order_seq_cst,
                                           std::memory_order_relaxed))
        return false;
    f->reason = wake_reason::notified;
    f->rt->schedule_woken(f);
    return true;
}

}  // namespace weft::detail
