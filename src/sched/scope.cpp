// Structured concurrency: the state behind weft::scope (include/weft/scope.hpp
// is the spec; race and with_timeout are templates over it there).
//
// Vocabulary. A *child* is a scope_task: it exists from its constructor
// (inside scope::spawn, before the fiber can run) to scope_child_end, which
// it calls exactly once - at the end of run(), or from its destructor when
// run() never happened (the fiber was cancelled before it started, no stack
// could be mapped, or the spawn itself failed). The *owner* is whoever holds
// the weft::scope; *waiters* are fibers or threads inside join().
//
// Ownership. Every field is guarded by `lock`, except `ss` (std::stop_source
// is thread-safe) and `links`' fibers, which the canceller touches under
// `lock` (S2).
//
// Invariants.
//  S1 `live` counts the children that exist; scope_add_child (+1) and
//     scope_child_end (-1) are both under `lock`. The waiters are woken, under
//     `lock`, by the end that takes `live` to 0.
//  S2 `links` lists the children inside run(): each link is on its child's
//     own stack, linked by scope_child_begin and unlinked by scope_child_end,
//     both under `lock`. Its fiber is alive while linked (it is running the
//     link's frame), so under `lock` the canceller may flag and claim it.
//  S3 Stop. ss.request_stop() comes first (so a child woken by the
//     cancellation sees stop_requested(): race() and S5 tell its
//     operation_cancelled from a failure by that), then, under `lock`, every
//     linked child's cancel flag, one asymmetric heavy fence, and the claims
//     (fiber.hpp F7: none is lost). A child that links after the stop sees
//     stop_requested() under `lock` and flags itself (its own flag: no fence).
//     A child that has not linked yet and never will (not started) is
//     cancelled by nothing and needs nothing: its task simply ends.
//  S4 The last touch. A child's final unlock in scope_child_end is its last
//     access to the state. A waiter re-takes `lock` after it wakes, before it
//     returns, so join() returns only after that unlock, and only then may the
//     owner free the state (scope_close). (The unlock's futex_wake, when a
//     thread slept on the lock, may come after the free: a system call on a
//     bare address, which at worst wakes a stranger spuriously - every futex
//     waiter re-checks - and never touches the memory.)
//  S5 `first` keeps the first child exception, except operation_cancelled
//     thrown once the stop was requested (the cancellation working). Keeping
//     one stops the scope (S3) unless it was stopped already.
//
// Memory orders: none of its own; `lock` (acquire/release) orders every field,
// and the child's writes before scope_child_end (race()'s outcome) are visible
// to a waiter that re-took `lock` after it (S4).
//
// Tested by test/api/scope_test.cpp.
#include <weft/scope.hpp>

#include <limits>

#include "sched/fiber.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"
#include "sync/wait_queue.hpp"
#include "util/asym_fence.hpp"
#include "util/check.hpp"
#include "util/log.hpp"
#include "util/spinlock.hpp"

namespace weft::detail {

struct scope_state {
    spinlock lock;
    std::size_t live = 0;           // S1
    scope_link* links = nullptr;    // S2
    waiter_list waiters;            // S1
    std::exception_ptr first;       // S5
    std::stop_source ss;            // S3
};

namespace {
fiber* current_fiber() noexcept {
    worker* w = worker::current();
    return w ? w->running() : nullptr;
}

bool is_cancellation(const std::exception_ptr& e) noexcept {
    try {
        std::rethrow_exception(e);
    } catch (const operation_cancelled&) {
        return true;
    } catch (...) {
        return false;
    }
}

// S3, under s->lock; `spare` (race()'s winner) is left alone.
void cancel_linked(scope_state* s, const fiber* spare = nullptr) noexcept {
    bool any = false;
    for (scope_link* l = s->links; l; l = l->next)
        if (l->f != spare) {
            runtime_impl::request_cancel(l->f);
            any = true;
        }
    if (!any) return;
    asym_fence::heavy();
    for (scope_link* l = s->links; l; l = l->next)
        if (l->f != spare) runtime_impl::wake_cancelled(l->f);
}
}  // namespace

scope_state* scope_open() { return new scope_state; }

void scope_close(scope_state* s) noexcept { delete s; }

void scope_add_child(scope_state* s) noexcept {
    s->lock.lock();
    ++s->live;  // S1
    s->lock.unlock();
}

void scope_child_begin(scope_state* s, scope_link& l) noexcept {
    l.f = current_fiber();
    s->lock.lock();
    l.prev = nullptr;
    l.next = s->links;
    if (s->links) s->links->prev = &l;
    s->links = &l;  // S2
    if (s->ss.stop_requested()) runtime_impl::request_cancel(l.f);  // S3: started after the stop
    s->lock.unlock();
}

void scope_child_end(scope_state* s, scope_link* l, std::exception_ptr e) noexcept {
    // S5. Whether to keep e is decided before the lock: request_stop() may run
    // user callbacks registered on the token, which must not run under it.
    const bool failed = e && !(s->ss.stop_requested() && is_cancellation(e));
    const bool stops = failed && s->ss.request_stop();
    s->lock.lock();
    if (failed && !s->first) s->first = std::move(e);
    if (l) {
        if (l->prev) l->prev->next = l->next;
        else s->links = l->next;
        if (l->next) l->next->prev = l->prev;
    }
    if (stops) cancel_linked(s);  // S3 (our own link is gone already)
    if (--s->live == 0)
        while (waiter* w = s->waiters.pop_front()) (void)unpark_waiter(*w);  // Q2: a lost one was cancelled
    s->lock.unlock();  // S4: the last touch
}

void scope_wait(scope_state* s, bool cancellable) {
    waiter me = make_waiter();
    s->lock.lock();
    if (me.f)
        for (scope_link* l = s->links; l; l = l->next)
            if (l->f == me.f) {
                s->lock.unlock();
                throw fiber_error(std::make_error_code(std::errc::resource_deadlock_would_occur),
                                  "a scope's child cannot join its own scope");
            }
    while (s->live != 0) {
        s->waiters.push_back(me);
        const wake_reason r =
            park_waiter(me, s->lock, "scope join", std::numeric_limits<std::int64_t>::max(), cancellable);
        s->lock.lock();  // S4 (and Q3)
        if (r == wake_reason::cancelled) {
            if (me.linked) s->waiters.remove(me);
            s->lock.unlock();
            throw operation_cancelled();
        }
        me.word.store(0, std::memory_order_relaxed);  // relaxed: a thread waiter's word, reused under the lock
    }
    s->lock.unlock();
}

bool scope_request_stop(scope_state* s) noexcept {
    if (!s->ss.request_stop()) return false;  // S3: the token first
    s->lock.lock();
    cancel_linked(s);
    s->lock.unlock();
    return true;
}

bool scope_request_stop_others(scope_state* s) noexcept {
    if (!s->ss.request_stop()) return false;  // S3: the token first
    s->lock.lock();
    cancel_linked(s, current_fiber());
    s->lock.unlock();
    return true;
}

bool scope_caller_cancelled() noexcept {
    // A request made after this look is the caller's own wait's business (that wait
    // is uncancellable here anyway); a fiber destroying its values (F8) acts uncancelled.
    const fiber* f = current_fiber();
    return f && cancel_pending(f);
}

runtime_impl* scope_default_runtime() {
    worker* w = worker::current();
    return w ? &w->rt() : default_runtime().impl();
}

std::stop_token scope_stop_token(scope_state* s) noexcept { return s->ss.get_token(); }

std::exception_ptr scope_take_error(scope_state* s) noexcept {
    s->lock.lock();
    std::exception_ptr e = std::move(s->first);
    s->first = nullptr;
    s->lock.unlock();
    return e;
}

void scope_report_unobserved(std::exception_ptr e) noexcept {
    log().error("scope destroyed with a child exception nobody joined: {}", describe(e));
}

}  // namespace weft::detail

namespace weft {

scope::scope() : scope(detail::scope_default_runtime()->owner) {}

scope::scope(runtime& rt) : st_(detail::scope_open()), rt_(rt.impl()), uncaught_(std::uncaught_exceptions()) {}

scope::~scope() {
    const bool unwinding = std::uncaught_exceptions() > uncaught_;
    if (unwinding || detail::scope_caller_cancelled()) detail::scope_request_stop(st_);
    try {
        detail::scope_wait(st_, /*cancellable=*/false);
    } catch (const std::exception& e) {  // only the self-join check can throw here
        detail::fatal("weft::scope::~scope", e.what());
    }
    if (std::exception_ptr e = detail::scope_take_error(st_); e && !unwinding) detail::scope_report_unobserved(e);
    detail::scope_close(st_);
}

void scope::join() {
    try {
        detail::scope_wait(st_, /*cancellable=*/true);
    } catch (const operation_cancelled&) {
        detail::scope_request_stop(st_);
        detail::scope_wait(st_, /*cancellable=*/false);
        throw;
    }
    if (std::exception_ptr e = detail::scope_take_error(st_)) std::rethrow_exception(e);
}

bool scope::request_stop() noexcept { return detail::scope_request_stop(st_); }

std::stop_token scope::get_stop_token() const noexcept { return detail::scope_stop_token(st_); }

}  // namespace weft
