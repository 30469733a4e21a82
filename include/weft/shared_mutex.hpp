/// @file
/// `weft::shared_mutex` (and `shared_timed_mutex`): std's reader-writer
/// mutexes, for fibers and plain OS threads alike.
///
/// Same interface as std::shared_timed_mutex (lock, try_lock, try_lock_for,
/// try_lock_until, unlock, and the _shared forms); works with std::unique_lock
/// and std::shared_lock. `shared_timed_mutex` is the same type.
///  - Writers do not starve: once a writer is waiting, new readers wait behind
///    it; the writer gets the lock when the readers already inside leave.
///  - lock*() may suspend (a fiber parks; a plain thread sleeps on a futex);
///    try_lock() and try_lock_shared() never do (they may fail spuriously
///    while another caller is changing the state, as std allows);
///    try_lock*_for/_until may, until the deadline.
///    Like weft::mutex, locking is not a cancellation point.
///  - unlock() by anyone but the writer that holds it, and unlock_shared()
///    with no reader inside, abort with a message (std: undefined).
/// All members are thread-safe.
///
/// Implementation notes. The algorithm is the two-gate design of Alexander
/// Terekhov and Howard Hinnant (the one behind std::shared_mutex in libc++),
/// on a weft::mutex and two weft::condition_variables: `state_` holds a
/// "writer entered" bit and the reader count, guarded by `mut_`; gate 1 holds
/// back new readers and writers while a writer has entered, gate 2 holds the
/// entered writer until the readers inside have left. Every wait is a
/// condition-variable wait, so fibers and threads mix freely, and there is no
/// atomic of its own to argue: `mut_` orders everything.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

#include <weft/condition_variable.hpp>
#include <weft/config.hpp>
#include <weft/detail/deadline.hpp>
#include <weft/mutex.hpp>

namespace weft {

namespace detail {
[[noreturn]] WEFT_API void shared_mutex_misuse(const void* m, const char* what) noexcept;
}  // namespace detail

class shared_mutex {
public:
    shared_mutex() = default;
    shared_mutex(const shared_mutex&) = delete;
    shared_mutex& operator=(const shared_mutex&) = delete;

    // Exclusive ownership.
    void lock() { (void)lock_until_ns(detail::no_deadline); }
    bool try_lock() {
        // try_to_lock: never suspends (the header); busy state words fail, as std lets
        // try_lock fail spuriously.
        std::unique_lock<mutex> g(mut_, std::try_to_lock);
        if (!g.owns_lock() || state_ != 0) return false;
        state_ = write_entered;
        writer_ = detail::self_token();
        return true;
    }
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& d) {
        return lock_until_ns(detail::deadline_after_ns(detail::saturating_ns(d)));
    }
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& t) {
        return detail::wait_until_own_clock(t, [this](std::int64_t ns) { return lock_until_ns(ns); });
    }
    void unlock() {
        {
            std::lock_guard<mutex> g(mut_);
            if (!(state_ & write_entered) || writer_ != detail::self_token())
                detail::shared_mutex_misuse(this, "unlock() by a caller that does not hold it exclusively");
            state_ = 0;
            writer_ = 0;
            // Under mut_: once it is released another thread may take, release and destroy us
            // (allowed as for a mutex, mutex.cpp M8), so notifying after it would be too late.
            gate1_.notify_all();
        }
    }

    // Shared ownership.
    void lock_shared() { (void)lock_shared_until_ns(detail::no_deadline); }
    bool try_lock_shared() {
        std::unique_lock<mutex> g(mut_, std::try_to_lock);  // as in try_lock()
        if (!g.owns_lock() || (state_ & write_entered) || (state_ & n_readers) == n_readers) return false;
        ++state_;
        return true;
    }
    template <class Rep, class Period>
    bool try_lock_shared_for(const std::chrono::duration<Rep, Period>& d) {
        return lock_shared_until_ns(detail::deadline_after_ns(detail::saturating_ns(d)));
    }
    template <class Clock, class Duration>
    bool try_lock_shared_until(const std::chrono::time_point<Clock, Duration>& t) {
        return detail::wait_until_own_clock(t, [this](std::int64_t ns) { return lock_shared_until_ns(ns); });
    }
    void unlock_shared() {
        std::lock_guard<mutex> g(mut_);
        const std::uint32_t readers = state_ & n_readers;
        if (readers == 0) detail::shared_mutex_misuse(this, "unlock_shared() with no reader inside");
        state_ = (state_ & ~n_readers) | (readers - 1);
        // Notified under mut_, as in unlock().
        if (state_ & write_entered) {
            if (readers == 1) gate2_.notify_one();  // the entered writer may go
        } else if (readers == n_readers) {
            gate1_.notify_one();  // a reader held back by the reader limit may enter
        }
    }

private:
    static constexpr std::uint32_t write_entered = 1u << 31;
    static constexpr std::uint32_t n_readers = ~write_entered;

    bool lock_until_ns(std::int64_t deadline_ns) {
        std::unique_lock<mutex> lk(mut_);
        while (state_ & write_entered)  // gate 1: one writer enters at a time
            if (!gate1_.wait_until_ns(lk, deadline_ns, false) && (state_ & write_entered)) return false;
        state_ |= write_entered;  // from now on new readers wait at gate 1
        while (state_ & n_readers) {  // gate 2: the readers inside leave
            if (!gate2_.wait_until_ns(lk, deadline_ns, false) && (state_ & n_readers)) {
                state_ &= ~write_entered;  // give up: let the held-back readers and writers in
                gate1_.notify_all();       // under mut_, as in unlock()
                return false;
            }
        }
        writer_ = detail::self_token();
        return true;
    }
    bool lock_shared_until_ns(std::int64_t deadline_ns) {
        std::unique_lock<mutex> lk(mut_);
        while ((state_ & write_entered) || (state_ & n_readers) == n_readers)
            if (!gate1_.wait_until_ns(lk, deadline_ns, false) &&
                ((state_ & write_entered) || (state_ & n_readers) == n_readers))
                return false;
        ++state_;
        return true;
    }

    mutex mut_;
    condition_variable gate1_;
    condition_variable gate2_;
    std::uint32_t state_ = 0;    // guarded by mut_
    std::uint64_t writer_ = 0;   // the writer's self_token(); guarded by mut_
};

/// std::shared_timed_mutex: the same type (weft::shared_mutex is timed).
using shared_timed_mutex = shared_mutex;

}  // namespace weft
