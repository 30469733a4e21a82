/// @file
/// `weft::once_flag` and `weft::call_once`: std::call_once, for fibers and
/// plain OS threads alike.
///
/// Same interface and rules as std::call_once:
///  - Exactly one call per flag runs its callable to completion (the
///    "returning" execution); every call_once on the flag returns only after
///    it did, and sees its effects.
///  - If the running callable throws, the flag stays unset, the exception
///    propagates to that caller, and one of the callers waiting on the flag
///    (or a later one) runs its own callable next. (All waiters are woken and
///    race to run it; exactly one wins, the others wait again.)
///  - call_once may suspend: a caller that finds another one running the
///    callable waits for it (a fiber parks, a plain thread sleeps on a
///    futex). That wait is for a lock, not an event, so it is not a
///    cancellation point: a fiber cancelled by runtime::shutdown() still waits
///    for the running callable (weft::mutex::lock() behaves the same). The
///    callable itself may block and be cancelled; its operation_cancelled
///    propagates like any exception, leaving the flag unset.
///  - Once the flag is set, call_once is one acquire load.
///  - A callable that calls call_once on its own flag (std: deadlock) throws
///    std::system_error(resource_deadlock_would_occur) from the inner call.
/// Thread-safe.
///
/// Implementation notes (invariants and memory orders)
/// ---------------------------------------------------
/// `state_` is unset (0), running (1), running with waiters (2) or done (3).
/// Waiters park in the parking lot keyed by &state_ (detail/park.hpp;
/// protocol P1-P4 in src/sync/parking_lot.hpp).
///  O1 Only the caller whose CAS takes unset -> running runs its callable;
///     it leaves running with one exchange: to done on return, to unset on an
///     exception. done is final.
///  O2 A waiter sets running -> running-with-waiters (CAS) and parks only if,
///     under the bucket lock (validate), the state is still 2. The runner's
///     exchange reads the state: if it was 2 it wakes every waiter; by P2
///     each was queued by then or its validate sees the new state. Both are
///     read-modify-writes of one word, so they are totally ordered (no
///     seq_cst Dekker pair is needed).
///  O3 The runner's exchange is its last access to the flag: the wake uses
///     unpark_on, which takes the key as a number (P4).
///  O4 `runner_` holds the running caller's detail::self_token() while state
///     is running; only the runner stores its own token, so a caller that
///     reads its own token there is the runner calling in again (recursion).
/// Memory orders. The exchange to done is release and every load that may
/// see done is acquire: the callable's effects happen before any call_once
/// that sees done returns. The CAS unset -> running is acquire, pairing with
/// the release exchange back to unset: a retrying runner sees what the
/// failed one did. Setting 2 publishes nothing; its CAS is acquire only so
/// that a failed CAS which reads done acquires it. runner_ is
/// relaxed: it is compared only with the caller's own token (O4).
/// Tested by test/api/call_once_test.cpp.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <system_error>
#include <type_traits>
#include <utility>

#include <weft/config.hpp>
#include <weft/detail/deadline.hpp>
#include <weft/detail/park.hpp>

namespace weft {

/// std::once_flag for weft::call_once. Not copyable or movable.
class once_flag {
public:
    constexpr once_flag() noexcept = default;
    once_flag(const once_flag&) = delete;
    once_flag& operator=(const once_flag&) = delete;

private:
    template <class Callable, class... Args>
    friend void call_once(once_flag& flag, Callable&& f, Args&&... args);

    static constexpr std::uint32_t unset = 0;
    static constexpr std::uint32_t running = 1;
    static constexpr std::uint32_t running_waited = 2;
    static constexpr std::uint32_t done = 3;

    bool is_done() const noexcept {
        return state_.load(std::memory_order_acquire) == done;  // acquire: pairs with finish(done)'s release
    }

    /// Leaves `running` for `to` (O1) and wakes the waiters (O2, O3).
    void finish(std::uint32_t to) noexcept {
        runner_.store(0, std::memory_order_relaxed);  // relaxed: O4
        const void* key = &state_;                    // O3: only the address after the exchange
        // release: publishes the callable's effects (done) or the failed attempt's (unset).
        if (state_.exchange(to, std::memory_order_release) == running_waited)
            (void)detail::unpark_on(key, std::numeric_limits<std::size_t>::max());
    }

    struct finish_on_unwind {
        once_flag* flag;
        ~finish_on_unwind() {
            if (flag) flag->finish(unset);  // the callable threw: the flag stays unset (O1)
        }
    };

    /// Runs call(ctx) if this caller wins the flag, otherwise waits for the
    /// running caller and tries again if it failed.
    void run_once(void (*call)(void*), void* ctx) {
        const std::uint64_t me = detail::self_token();
        std::uint32_t s = state_.load(std::memory_order_acquire);  // acquire: as in is_done()
        for (;;) {
            if (s == done) return;
            if (s == unset) {
                // acquire: pairs with finish(unset) of a failed runner (file comment).
                if (!state_.compare_exchange_weak(s, running, std::memory_order_acquire, std::memory_order_acquire))
                    continue;
                runner_.store(me, std::memory_order_relaxed);  // relaxed: O4
                finish_on_unwind guard{this};
                call(ctx);
                guard.flag = nullptr;
                finish(done);
                return;
            }
            if (runner_.load(std::memory_order_relaxed) == me)  // relaxed: only our own store can equal `me` (O4)
                throw std::system_error(std::make_error_code(std::errc::resource_deadlock_would_occur),
                                        "weft::call_once: recursive call on the same once_flag");
            // acquire: setting 2 publishes nothing (the bucket lock orders O2), but on failure s may be
            // done, which is returned on; success takes the same order (GCC rejects a weaker one).
            if (s == running &&
                !state_.compare_exchange_weak(s, running_waited, std::memory_order_acquire, std::memory_order_acquire))
                continue;
            (void)detail::park_if(
                &state_,
                [this] {
                    return state_.load(std::memory_order_relaxed) == running_waited;  // relaxed: under the bucket lock
                },
                detail::no_deadline, "call_once", /*cancellable=*/false);
            s = state_.load(std::memory_order_acquire);  // acquire: as in is_done()
        }
    }

    std::atomic<std::uint32_t> state_{unset};
    std::atomic<std::uint64_t> runner_{0};  // O4
};

/// Runs std::invoke(f, args...) unless a call on `flag` already returned
/// normally; see the file comment for waiting, exceptions and cancellation.
/// May suspend (not a cancellation point). Throws what f throws, and
/// std::system_error(resource_deadlock_would_occur) when f calls call_once on
/// `flag` again. Thread-safe.
template <class Callable, class... Args>
void call_once(once_flag& flag, Callable&& f, Args&&... args) {
    if (flag.is_done()) return;
    auto call = [&] { std::invoke(std::forward<Callable>(f), std::forward<Args>(args)...); };
    flag.run_once([](void* p) { (*static_cast<decltype(call)*>(p))(); }, &call);
}

}  // namespace weft
