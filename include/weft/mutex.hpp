/// @file
/// `weft::mutex`, `timed_mutex`, `recursive_mutex`, `recursive_timed_mutex`:
/// std's mutexes, for fibers and plain OS threads alike.
///
/// Same interface and rules as the std:: types (they work with
/// std::lock_guard, std::unique_lock, std::scoped_lock, std::lock), and:
///  - lock() on a fiber parks the fiber, not its worker; on a plain thread it
///    sleeps the thread on a futex. Both may hold and wait for one mutex.
///  - The uncontended lock()+unlock() is two atomic instructions and no
///    syscall or allocation. Contended, a caller spins briefly (only where the
///    holder can run meanwhile), then parks. A waiter that has waited over
///    1 ms gets the lock handed to it directly at the next unlock (a
///    starvation guard, as Go's sync.Mutex has).
///  - unlock() by a fiber or thread that does not own the mutex aborts with a
///    message naming the mutex, the caller and the owner (std: undefined).
///  - lock() of a mutex the caller already owns throws
///    std::system_error(resource_deadlock_would_occur) (std: undefined).
///  - Locking is not a cancellation point: a fiber cancelled by
///    runtime::shutdown() still waits for the mutex (so destructors that lock
///    run normally while a cancelled stack unwinds); the holder releases it
///    when its own cancellable wait throws operation_cancelled.
/// All members are thread-safe. The object must not be destroyed while held
/// or waited for (as with std::mutex); as POSIX requires of its mutexes, the
/// last user may destroy it as soon as it has unlocked it, even while an
/// earlier unlock() that freed it for that user is still returning.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include <weft/config.hpp>
#include <weft/detail/deadline.hpp>

namespace weft {

class condition_variable;

namespace detail {

/// The state shared by the mutexes: one word and the owner's token.
/// state_: bit 0 locked, bit 1 "waiters may be parked on &state_", bit 2 "a
/// contender is awake", bit 3 "handed over, new owner not yet running"; see src/sync/mutex.cpp for the protocol and its
/// memory orders.
class mutex_base {
public:
    mutex_base(const mutex_base&) = delete;
    mutex_base& operator=(const mutex_base&) = delete;

protected:
    static constexpr std::uint32_t locked_bit = 1;
    static constexpr std::uint32_t parked_bit = 2;
    static constexpr std::uint32_t woken_bit = 4;
    static constexpr std::uint32_t handoff_bit = 8;

    constexpr mutex_base() noexcept = default;
    ~mutex_base() = default;

    bool try_acquire() noexcept {
        // acquire: pairs with the release in release_state(). Setting L when it is
        // already set changes nothing, so this works whatever the other bits are.
        return !(state_.fetch_or(locked_bit, std::memory_order_acquire) & locked_bit);
    }
    /// Takes the lock before `deadline_ns` (false: timed out). Never cancellable.
    bool acquire(std::uint64_t me, std::int64_t deadline_ns) {
        if (!try_acquire() && !acquire_slow(me, deadline_ns)) return false;
        owner_.store(me, std::memory_order_relaxed);  // relaxed: read by the owner itself, or in a misuse report
        return true;
    }
    void check_owner(std::uint64_t me) const noexcept {
        const std::uint64_t owner = owner_.load(std::memory_order_relaxed);  // relaxed: see acquire()
        if (owner != me) not_owner(owner);
    }
    /// Releases the lock (the caller has checked owner_).
    void release() noexcept {
        owner_.store(0, std::memory_order_relaxed);  // relaxed: see acquire()
        release_state();
    }
    void release_state() noexcept {
        std::uint32_t s = state_.load(std::memory_order_relaxed);  // relaxed: the CAS re-checks
        for (;;) {
            // Someone parked, nobody awake: the visit clears L itself, as its last write (M8).
            if ((s & (parked_bit | woken_bit)) == parked_bit) return wake_one();
            // release: publishes the critical section to the next owner.
            if (state_.compare_exchange_weak(s, s & ~locked_bit, std::memory_order_release, std::memory_order_relaxed))
                return;
        }
    }

    WEFT_API bool acquire_slow(std::uint64_t me, std::int64_t deadline_ns);
    WEFT_API void wake_one() noexcept;
    [[noreturn]] WEFT_API void not_owner(std::uint64_t owner) const noexcept;

    std::atomic<std::uint32_t> state_{0};
    std::atomic<std::uint64_t> owner_{0};  // detail::self_token() of the holder, 0 when free

    friend class weft::condition_variable;
};

WEFT_API std::uint64_t self_token() noexcept;

}  // namespace detail

/// std::mutex for fibers and threads (see the file comment). lock() may
/// suspend; try_lock() and unlock() never do.
class mutex : private detail::mutex_base {
public:
    constexpr mutex() noexcept = default;

    void lock() { (void)acquire(detail::self_token(), detail::no_deadline); }
    bool try_lock() noexcept {
        if (!try_acquire()) return false;
        owner_.store(detail::self_token(), std::memory_order_relaxed);  // relaxed: see acquire()
        return true;
    }
    void unlock() noexcept {
        check_owner(detail::self_token());
        release();
    }

private:
    friend class condition_variable;
};

/// std::timed_mutex: a mutex with try_lock_for / try_lock_until (may suspend
/// until the deadline; a deadline in the past still tries once).
class timed_mutex : private detail::mutex_base {
public:
    constexpr timed_mutex() noexcept = default;

    void lock() { (void)acquire(detail::self_token(), detail::no_deadline); }
    bool try_lock() noexcept {
        if (!try_acquire()) return false;
        owner_.store(detail::self_token(), std::memory_order_relaxed);  // relaxed: see acquire()
        return true;
    }
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& d) {
        return acquire(detail::self_token(), detail::deadline_after_ns(detail::saturating_ns(d)));
    }
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& t) {
        const std::uint64_t self = detail::self_token();
        return detail::wait_until_own_clock(t, [this, self](std::int64_t ns) { return acquire(self, ns); });
    }
    void unlock() noexcept {
        check_owner(detail::self_token());
        release();
    }
};

/// std::recursive_mutex: the owner may lock again; it is released after as
/// many unlock() calls as lock() calls. Same rules otherwise.
class recursive_mutex : private detail::mutex_base {
public:
    constexpr recursive_mutex() noexcept = default;

    void lock() {
        const std::uint64_t me = detail::self_token();
        if (owner_.load(std::memory_order_relaxed) == me) {  // relaxed: only our own store can equal `me`
            ++depth_;
            return;
        }
        (void)acquire(me, detail::no_deadline);
        depth_ = 1;
    }
    bool try_lock() noexcept {
        const std::uint64_t me = detail::self_token();
        if (owner_.load(std::memory_order_relaxed) == me) {  // relaxed: as in lock()
            ++depth_;
            return true;
        }
        if (!try_acquire()) return false;
        owner_.store(me, std::memory_order_relaxed);  // relaxed: see acquire()
        depth_ = 1;
        return true;
    }
    void unlock() noexcept {
        check_owner(detail::self_token());
        if (--depth_ == 0) release();
    }

protected:
    bool lock_until_ns(std::int64_t deadline_ns) {
        const std::uint64_t me = detail::self_token();
        if (owner_.load(std::memory_order_relaxed) == me) {  // relaxed: as in lock()
            ++depth_;
            return true;
        }
        if (!acquire(me, deadline_ns)) return false;
        depth_ = 1;
        return true;
    }

private:
    std::uint64_t depth_ = 0;  // touched by the owner only
};

/// std::recursive_timed_mutex.
class recursive_timed_mutex : public recursive_mutex {
public:
    constexpr recursive_timed_mutex() noexcept = default;

    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& d) {
        return lock_until_ns(detail::deadline_after_ns(detail::saturating_ns(d)));
    }
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& t) {
        return detail::wait_until_own_clock(t, [this](std::int64_t ns) { return lock_until_ns(ns); });
    }
};

}  // namespace weft
