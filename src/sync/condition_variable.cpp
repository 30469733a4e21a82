// weft::condition_variable's waits and notifications.
//
// The waiters park on the address of the condition variable (parking lot,
// sync/parking_lot.hpp); `has_waiters_` lets a notify with nobody waiting
// skip the bucket lock.
//
// Invariants.
//  C1 Atomic release-and-wait: the waiter links itself under the bucket lock
//     and releases the user's mutex only after that (park_on's after_unlock:
//     for a fiber, in its worker's post-switch hook). Any notifier that
//     locked the mutex after the waiter released it finds the waiter linked.
//  C2 has_waiters_ is set (if it is not already) by each waiter under the
//     bucket lock (validate) before it links; it is cleared only under the
//     bucket lock by a notify_one that found nobody linked (so it stays set
//     after the last waiter is woken, and the next notify clears it: one
//     bucket visit instead of a store per wait), or just before a notify_all
//     sweeps the bucket (a waiter that links after the store sets it again).
//     So it is never false while a waiter that a notify must see is linked.
//  C3 The mutex's owner is cleared before the wait (the hook that releases
//     the state runs on another fiber's behalf), and the waiter re-takes the
//     mutex with an uncancellable lock on every exit (std's postcondition).
//
// Memory orders. has_waiters_ stores and loads are seq_cst: a notifier that
// does not hold the mutex still synchronizes with the waiter through some
// other variable; the store (before the waiter's mutex release) and the
// notifier's load must not be reordered around it (the Dekker argument).
// The user's data is ordered by the mutex itself.
//
// Tested by test/api/condition_variable_test.cpp.
#include <system_error>

#include <weft/condition_variable.hpp>
#include <weft/detail/park.hpp>

#include "util/private.hpp"

namespace weft {

bool condition_variable::wait_until_ns(std::unique_lock<mutex>& lock, std::int64_t deadline_ns, bool cancellable) {
    mutex* m = lock.mutex();
    const std::uint64_t me = detail::self_token();
    if (!m || !lock.owns_lock() || m->owner_.load(std::memory_order_relaxed) != me)  // relaxed: our own store
        throw std::system_error(std::make_error_code(std::errc::operation_not_permitted),
                                "weft::condition_variable::wait: the lock is not held by the caller");
    detail::mutex_base& base = *m;
    base.owner_.store(0, std::memory_order_relaxed);  // C3, before the park; relaxed: see mutex.hpp
    const detail::park_outcome out = detail::park_on(
        this,
        [](void* cv) {
            auto& flag = static_cast<condition_variable*>(cv)->has_waiters_;
            // relaxed load: under the bucket lock nobody clears it (C2); seq_cst store: header.
            if (!flag.load(std::memory_order_relaxed)) flag.store(true, std::memory_order_seq_cst);
            return true;
        },
        this, deadline_ns, "condition_variable", cancellable,
        [](void* b) { static_cast<detail::mutex_base*>(b)->release_state(); },  // C1, C3
        &base);
    (void)base.acquire(me, detail::no_deadline);  // C3: uncancellable, on every exit
    if (out.result == detail::park_result::cancelled) detail::throw_cancelled();
    return out.result != detail::park_result::timeout;
}

void condition_variable::notify_slow(bool all) noexcept {
    if (all) {
        has_waiters_.store(false, std::memory_order_seq_cst);  // C2: before the sweep
        (void)detail::unpark_on(this, static_cast<std::size_t>(-1));
        return;
    }
    detail::unpark_one_on(
        this,
        [](void* cv, detail::unpark_info info) -> std::uintptr_t {
            if (!info.did_unpark)  // C2: under the bucket lock, nobody is linked
                static_cast<condition_variable*>(cv)->has_waiters_.store(false, std::memory_order_seq_cst);
            return 0;
        },
        this);
}

}  // namespace weft
