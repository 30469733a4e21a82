/// @file
/// `weft::condition_variable` (with std::unique_lock<weft::mutex>) and
/// `weft::condition_variable_any` (with any lockable), for fibers and plain
/// OS threads alike.
///
/// Same interface and rules as the std:: types, and:
///  - wait*() may suspend: a fiber parks, a plain thread sleeps on a futex.
///    Releasing the mutex and starting to wait are one atomic step with
///    respect to notify_one()/notify_all(), from any fiber or thread, whether
///    or not the notifier holds the mutex.
///  - wait*() is a cancellation point: on a fiber cancelled by
///    runtime::shutdown() it throws operation_cancelled, with the lock held
///    again (std requires the lock on every exit).
///  - Waiting with a unique_lock that does not own a mutex the caller holds
///    throws std::system_error(operation_not_permitted) (std: undefined).
///  - condition_variable's notify_*() never suspend; with nobody waiting they
///    are one atomic load. condition_variable_any's take its internal
///    weft::mutex briefly, so they may suspend while another notifier or
///    waiter holds it.
///  - Spurious wake-ups are rare but allowed, as in std: use the predicate forms.
/// All members are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>  // std::cv_status
#include <cstdint>
#include <memory>
#include <mutex>
#include <stop_token>
#include <utility>

#include <weft/config.hpp>
#include <weft/detail/deadline.hpp>
#include <weft/mutex.hpp>

namespace weft {

class condition_variable {
public:
    condition_variable() noexcept = default;
    condition_variable(const condition_variable&) = delete;
    condition_variable& operator=(const condition_variable&) = delete;

    void notify_one() noexcept {
        // seq_cst: pairs with the waiter's store in wait_until_ns (see src/sync/condition_variable.cpp).
        if (has_waiters_.load(std::memory_order_seq_cst)) notify_slow(false);
    }
    void notify_all() noexcept {
        if (has_waiters_.load(std::memory_order_seq_cst)) notify_slow(true);  // seq_cst: as in notify_one
    }

    void wait(std::unique_lock<mutex>& lock) { (void)wait_until_ns(lock, detail::no_deadline); }
    template <class Predicate>
    void wait(std::unique_lock<mutex>& lock, Predicate pred) {
        while (!pred()) wait(lock);
    }

    template <class Clock, class Duration>
    std::cv_status wait_until(std::unique_lock<mutex>& lock, const std::chrono::time_point<Clock, Duration>& t) {
        if (wait_until_ns(lock, detail::to_steady_ns(t))) return std::cv_status::no_timeout;
        // std: not a timeout while t's own clock has not reached t (a spurious wake-up)
        return detail::before_on_own_clock(t) ? std::cv_status::no_timeout : std::cv_status::timeout;
    }
    template <class Clock, class Duration, class Predicate>
    bool wait_until(std::unique_lock<mutex>& lock, const std::chrono::time_point<Clock, Duration>& t,
                    Predicate pred) {
        while (!pred())
            if (!wait_until_ns(lock, detail::to_steady_ns(t)) && !detail::before_on_own_clock(t)) return pred();
        return true;
    }
    template <class Rep, class Period>
    std::cv_status wait_for(std::unique_lock<mutex>& lock, const std::chrono::duration<Rep, Period>& d) {
        return wait_until_ns(lock, detail::deadline_after_ns(detail::saturating_ns(d))) ? std::cv_status::no_timeout
                                                                                         : std::cv_status::timeout;
    }
    template <class Rep, class Period, class Predicate>
    bool wait_for(std::unique_lock<mutex>& lock, const std::chrono::duration<Rep, Period>& d, Predicate pred) {
        const std::int64_t deadline = detail::deadline_after_ns(detail::saturating_ns(d));
        while (!pred())
            if (!wait_until_ns(lock, deadline)) return pred();
        return true;
    }

    /// Waits until notified (true) or `deadline_ns` (steady-clock ns) passes
    /// (false). Used by the templates above; `cancellable = false` is for
    /// weft's own lock-like waits (shared_mutex), which are not cancellation
    /// points.
    WEFT_API bool wait_until_ns(std::unique_lock<mutex>& lock, std::int64_t deadline_ns, bool cancellable = true);

private:
    WEFT_API void notify_slow(bool all) noexcept;

    std::atomic<bool> has_waiters_{false};  // may be true with nobody waiting; never false with someone linked
};

/// std::condition_variable_any: works with any BasicLockable (weft::mutex,
/// std::unique_lock<weft::shared_mutex>, std::shared_lock, a user lock...).
/// The std::stop_token overloads wake up when stop is requested, as in std.
/// The user's lock is re-acquired with its own lock(): if that throws, the
/// exception propagates from the wait.
class condition_variable_any {
public:
    condition_variable_any() : m_(std::make_shared<mutex>()) {}
    condition_variable_any(const condition_variable_any&) = delete;
    condition_variable_any& operator=(const condition_variable_any&) = delete;

    void notify_one() noexcept {
        std::lock_guard<mutex> g(*m_);
        cv_.notify_one();
    }
    void notify_all() noexcept {
        std::lock_guard<mutex> g(*m_);
        cv_.notify_all();
    }

    template <class Lock>
    void wait(Lock& lock) {
        (void)wait_until_ns(lock, detail::no_deadline);
    }
    template <class Lock, class Predicate>
    void wait(Lock& lock, Predicate pred) {
        while (!pred()) wait(lock);
    }
    template <class Lock, class Clock, class Duration>
    std::cv_status wait_until(Lock& lock, const std::chrono::time_point<Clock, Duration>& t) {
        if (wait_until_ns(lock, detail::to_steady_ns(t))) return std::cv_status::no_timeout;
        // std: not a timeout while t's own clock has not reached t (a spurious wake-up)
        return detail::before_on_own_clock(t) ? std::cv_status::no_timeout : std::cv_status::timeout;
    }
    template <class Lock, class Clock, class Duration, class Predicate>
    bool wait_until(Lock& lock, const std::chrono::time_point<Clock, Duration>& t, Predicate pred) {
        while (!pred())
            if (!wait_until_ns(lock, detail::to_steady_ns(t)) && !detail::before_on_own_clock(t)) return pred();
        return true;
    }
    template <class Lock, class Rep, class Period>
    std::cv_status wait_for(Lock& lock, const std::chrono::duration<Rep, Period>& d) {
        return wait_until_ns(lock, detail::deadline_after_ns(detail::saturating_ns(d))) ? std::cv_status::no_timeout
                                                                                         : std::cv_status::timeout;
    }
    template <class Lock, class Rep, class Period, class Predicate>
    bool wait_for(Lock& lock, const std::chrono::duration<Rep, Period>& d, Predicate pred) {
        const std::int64_t deadline = detail::deadline_after_ns(detail::saturating_ns(d));
        while (!pred())
            if (!wait_until_ns(lock, deadline)) return pred();
        return true;
    }

    // C++20 interruptible waits: return pred() once stop is requested.
    template <class Lock, class Predicate>
    bool wait(Lock& lock, std::stop_token st, Predicate pred) {
        return wait_stop(lock, st, detail::no_deadline, pred);
    }
    template <class Lock, class Clock, class Duration, class Predicate>
    bool wait_until(Lock& lock, std::stop_token st, const std::chrono::time_point<Clock, Duration>& t,
                    Predicate pred) {
        bool r = false;
        (void)detail::wait_until_own_clock(t, [&](std::int64_t ns) {
            return (r = wait_stop(lock, st, ns, pred)) || st.stop_requested();  // done, or stopped: no retry
        });
        return r;
    }
    template <class Lock, class Rep, class Period, class Predicate>
    bool wait_for(Lock& lock, std::stop_token st, const std::chrono::duration<Rep, Period>& d, Predicate pred) {
        return wait_stop(lock, st, detail::deadline_after_ns(detail::saturating_ns(d)), pred);
    }

private:
    template <class Lock>
    struct relock {
        Lock& lock;
        ~relock() noexcept(false) { lock.lock(); }
    };

    template <class Lock>
    bool wait_until_ns(Lock& lock, std::int64_t deadline_ns, const std::stop_token* st = nullptr) {
        std::shared_ptr<mutex> m = m_;  // keeps the internal mutex alive if *this dies during the wait (as libstdc++)
        std::unique_lock<mutex> inner(*m);
        if (st && st->stop_requested()) return true;  // checked under m_: the stop callback notifies under it
        lock.unlock();
        relock<Lock> again{lock};  // after `inner` is released (declared later, destroyed first)
        std::unique_lock<mutex> held(std::move(inner));
        return cv_.wait_until_ns(held, deadline_ns);
    }

    template <class Lock, class Predicate>
    bool wait_stop(Lock& lock, std::stop_token& st, std::int64_t deadline_ns, Predicate& pred) {
        if (st.stop_requested()) return pred();
        std::stop_callback cb(st, [this] { notify_all(); });
        while (!pred()) {
            if (st.stop_requested()) return pred();
            if (!wait_until_ns(lock, deadline_ns, &st)) return pred();
        }
        return true;
    }

    std::shared_ptr<mutex> m_;
    condition_variable cv_;
};

}  // namespace weft
