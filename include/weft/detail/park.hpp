/// @file
/// Internal: the parking lot every synchronization primitive is built on.
/// Not a public API (its shape may change); see src/sync/parking_lot.hpp for
/// the protocol and its invariants.
///
/// A caller parks *on an address* (a key) if a condition still holds, checked
/// under the lock of the key's bucket; a waker unparks one or more callers
/// parked on that key. A primitive then needs only an atomic word: the
/// waiter lists, the fiber/thread difference, deadlines and cancellation all
/// live here, behind the one timed-wait path (sync/wait_queue.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <weft/config.hpp>
#include <weft/detail/deadline.hpp>

namespace weft::detail {

enum class park_result : unsigned char {
    unparked,   ///< woken by unpark_one_on / unpark_on; `token` is the waker's
    invalid,    ///< validate() returned false: the caller did not park
    timeout,    ///< the deadline passed first
    cancelled,  ///< the fiber was cancelled first (never for an uncancellable park)
};

struct park_outcome {
    park_result result;
    std::uintptr_t token;  ///< from unpark_one_on's callback; 0 otherwise
};

/// Parks the caller on `key` until unparked, `deadline_ns` (steady ns) or
/// cancellation, if `validate(ctx)` (run under the bucket lock) returns true.
/// `after_unlock(after_arg)`, if given, runs once the caller is queued and
/// the bucket lock released, before it sleeps; it must not block (a
/// condition variable releases its mutex there). `since_ns`: `untimed`
/// (the default) skips the clock and unpark_info::waited_ns is 0; 0 records
/// the time of parking; a positive value marks a caller parking again after
/// losing a race: it keeps that original start time and goes to the front
/// of the queue (mutex.cpp M4). Works from fibers and plain threads. May
/// suspend.
WEFT_API park_outcome park_on(const void* key, bool (*validate)(void*), void* ctx, std::int64_t deadline_ns,
                              const char* why, bool cancellable = true, void (*after_unlock)(void*) = nullptr,
                              void* after_arg = nullptr, std::int64_t since_ns = -1) noexcept;

/// park_on's `since_ns` when the waiter's age does not matter.
inline constexpr std::int64_t untimed = -1;

struct unpark_info {
    bool did_unpark;      ///< a waiter was woken
    bool may_have_more;   ///< other waiters on the key may remain
    std::int64_t waited_ns;  ///< how long the woken waiter had waited (0 if it parked `untimed`)
};

/// Wakes the longest-waiting caller parked on `key`, if any. `callback(ctx,
/// info)` runs under the bucket lock in every case (so no caller can park or
/// leave meanwhile) and returns the token the woken caller receives.
/// `run_here`: a woken fiber runs next on the waker's worker (the default,
/// for a waker about to block); otherwise it is queued where an idle worker
/// can take it at once (a mutex: the waker runs on). Never suspends.
WEFT_API void unpark_one_on(const void* key, std::uintptr_t (*callback)(void*, unpark_info), void* ctx,
                            bool run_here = true) noexcept;

/// Wakes up to `n` callers parked on `key` (oldest first); returns how many.
/// Uses the key only as a number: the object may already be gone. Never suspends.
WEFT_API std::size_t unpark_on(const void* key, std::size_t n) noexcept;

/// park_on with a callable condition.
template <class Validate>
park_outcome park_if(const void* key, Validate&& validate, std::int64_t deadline_ns, const char* why,
                     bool cancellable = true, std::int64_t since_ns = untimed) noexcept {
    using V = std::remove_reference_t<Validate>;
    return park_on(
        key, [](void* p) { return (*static_cast<V*>(p))(); }, const_cast<void*>(static_cast<const void*>(&validate)),
        deadline_ns, why, cancellable, nullptr, nullptr, since_ns);
}

/// Identity of the calling fiber or plain thread, unique for the process
/// lifetime (never 0): the owner recorded by mutexes.
WEFT_API std::uint64_t self_token() noexcept;

/// True when spinning on a lock can pay off: the caller is a plain thread, or
/// a fiber whose runtime has more than one worker and whose worker has no
/// other fiber ready (else parking runs that fiber instead: Go's rule).
WEFT_API bool spin_may_help() noexcept;

/// Throws operation_cancelled (out of line, to keep it off inline paths).
[[noreturn]] WEFT_API void throw_cancelled();

}  // namespace weft::detail
