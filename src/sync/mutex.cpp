// The mutexes' slow paths (include/weft/mutex.hpp has the fast paths).
//
// State word (mutex_base::state_): bit 0 L = locked, bit 1 P = waiters may be
// parked on &state_ (sync/parking_lot.hpp). The algorithm is WebKit's
// WTF::Lock, "barging" with eventual fairness:
//  M1 Anyone may take the lock whenever L is clear (CAS adding L), whether or
//     not others are parked: a running caller beats a parked one, which keeps
//     the lock hot in one cache and avoids a wake-up per hand-over.
//  M2 A caller parks only after setting P, and only if the word is still
//     exactly L|P under the bucket lock (park_on's validate): so the holder's
//     unlock, which sees P and clears it under the same bucket lock
//     (unpark_one_on's callback), cannot miss it (P2 of the parking lot).
//  M3 unlock with P set wakes one waiter and, in the same critical section,
//     leaves P set iff more may be parked. A waiter that times out leaves P
//     set behind it; the next unlock's callback clears it (one extra bucket
//     visit, never a lost wake-up).
//  M4 Starvation guard: if the woken waiter has waited over 1 ms (measured
//     from its first park, kept across re-parks), unlock hands the lock over:
//     L stays set and the waiter resumes owning it (token `handoff`), so no
//     barger can take it first. A re-parking waiter goes to the front of the
//     queue, so the oldest waiter is the one woken (Go does the same).
//  M5 Spinning: at most `spin_limit` rounds of exponential pause, and only if
//     no one is parked yet and the holder can run meanwhile (spin_may_help():
//     a plain thread, or a fiber with other workers). A single-worker fiber
//     never spins: the holder is parked or queued behind it.
//
// Memory orders. Acquiring CASes are acquire and releasing stores/CASes are
// release, pairing so that each owner sees its predecessor's critical section.
// Setting P is relaxed: it publishes nothing; M2 is guarded by the bucket
// lock. On hand-over (M4) the new owner synchronizes with the old through the
// wake itself (Q4 of wait_queue.hpp: claim, write, complete).
//
// Tested by test/api/mutex_test.cpp, test/stress/sync_stress_test.cpp.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <system_error>

#include <weft/detail/park.hpp>
#include <weft/mutex.hpp>
#include <weft/this_fiber.hpp>

#include "util/private.hpp"

namespace weft::detail {

namespace {
constexpr std::uintptr_t handoff = 1;
constexpr std::int64_t fair_after_ns = 1'000'000;  // M4
constexpr int spin_limit = 10;                     // M5: 1+2+...+512 pauses, ~10 us at most

struct lock_wait {
    std::atomic<std::uint32_t>* state;
    std::uint32_t expect;
};
}  // namespace

bool mutex_base::acquire_slow(std::uint64_t me, std::int64_t deadline_ns) {
    if (owner_.load(std::memory_order_relaxed) == me)  // relaxed: only our own store can equal `me`
        throw std::system_error(std::make_error_code(std::errc::resource_deadlock_would_occur),
                                "weft::mutex: lock() by its owner");
    const bool spin = spin_may_help();
    int spins = 0;
    std::int64_t since = 0;  // first park (M4)
    for (;;) {
        std::uint32_t s = state_.load(std::memory_order_relaxed);  // relaxed: the CAS below re-checks
        if (!(s & locked_bit)) {
            // acquire: pairs with release()/release_slow() of the previous owner (M1).
            if (state_.compare_exchange_weak(s, s | locked_bit, std::memory_order_acquire, std::memory_order_relaxed))
                return true;
            continue;
        }
        if (spin && !(s & parked_bit) && spins < spin_limit) {  // M5
            for (int i = 0; i < (1 << spins); ++i) __builtin_ia32_pause();
            ++spins;
            continue;
        }
        // relaxed: P publishes nothing; the bucket lock orders M2.
        if (!(s & parked_bit) &&
            !state_.compare_exchange_weak(s, s | parked_bit, std::memory_order_relaxed, std::memory_order_relaxed))
            continue;
        const std::int64_t again = since;  // 0 on the first park (M4)
        if (since == 0) since = steady_now_ns();
        lock_wait lw{&state_, locked_bit | parked_bit};
        const park_outcome out = park_on(
            &state_,
            [](void* p) {
                auto* w = static_cast<lock_wait*>(p);
                return w->state->load(std::memory_order_relaxed) == w->expect;  // relaxed: under the bucket lock (M2)
            },
            &lw, deadline_ns, "mutex", /*cancellable=*/false, nullptr, nullptr, again);
        if (out.result == park_result::unparked && out.token == handoff) return true;  // M4: ours already
        if (out.result == park_result::timeout) {
            // One last try, as std::timed_mutex::try_lock_until does at the deadline.
            std::uint32_t e = state_.load(std::memory_order_relaxed);  // relaxed: the CAS re-checks
            return !(e & locked_bit) && state_.compare_exchange_strong(e, e | locked_bit, std::memory_order_acquire,
                                                                       std::memory_order_relaxed);
        }
        spins = 0;
    }
}

void mutex_base::release_slow() noexcept {
    for (;;) {
        std::uint32_t s = state_.load(std::memory_order_relaxed);  // relaxed: the CAS re-checks
        if (s == locked_bit) {  // P was cleared meanwhile (M3)
            if (state_.compare_exchange_weak(s, 0, std::memory_order_release, std::memory_order_relaxed)) return;
            continue;
        }
        unpark_one_on(
            &state_,
            [](void* p, unpark_info info) -> std::uintptr_t {
                auto& st = *static_cast<std::atomic<std::uint32_t>*>(p);
                if (info.did_unpark && info.waited_ns > fair_after_ns) {  // M4: hand over, L stays set
                    st.store(info.may_have_more ? locked_bit | parked_bit : locked_bit, std::memory_order_relaxed);
                    return handoff;  // the wake publishes the critical section (Q4)
                }
                // release: publishes the critical section to the next owner (M3).
                st.store(info.may_have_more ? parked_bit : 0, std::memory_order_release);
                return 0;
            },
            &state_);
        return;
    }
}

void mutex_base::not_owner(std::uint64_t owner) const noexcept {
    const std::string name = this_fiber::get_name();
    const std::string who = owner ? "fiber/thread " + std::to_string(owner) : "nobody (it is not locked)";
    std::fprintf(stderr,
                 "weft: unlock of weft mutex %p by %s %llu '%s', which does not own it (owner: %s)\n",
                 static_cast<const void*>(this), this_fiber::in_fiber() ? "fiber" : "thread",
                 static_cast<unsigned long long>(self_token()), name.c_str(), who.c_str());
    std::fflush(stderr);
    std::abort();
}

}  // namespace weft::detail
