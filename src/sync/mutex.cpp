// The mutexes' slow paths (include/weft/mutex.hpp has the fast paths).
//
// State word (mutex_base::state_): bit 0 L = locked, bit 1 P = waiters may be
// parked on &state_ (sync/parking_lot.hpp), bit 2 W = a contender is awake (a
// spinner that claimed W, or a waiter just woken for it), bit 3 H = the lock
// was handed over and its new owner has not run yet. Barging, as Go's
// sync.Mutex and WebKit's WTF::Lock, with Go's "woken" bit:
//  M1 Anyone may take the lock whenever L is clear, whether or not others are
//     parked: a running caller beats a parked one, which keeps the lock hot
//     in one cache and avoids a wake-up per hand-over. The fast paths are one
//     RMW each: lock = fetch_or(L) (a no-op when L is already set, so it works
//     whatever the other bits), unlock = a CAS clearing L (M8).
//  M2 A caller parks only after setting P, and only if L and P are both still
//     set under the bucket lock (park_on's validate). An unlock clears L only
//     by a CAS on a word without P (or with W); a word with P and no W sends
//     it to the bucket instead, still holding L (M8). Since P was set before
//     the waiter's validate saw L, and all are RMWs on one word, any waiter
//     that parked is linked before that visit (parking lot P2); one that
//     validates after it finds L clear and does not park.
//  M3 That visit (wake_one, under the bucket lock) wakes one waiter and, in
//     the same critical section, leaves P set iff more may be parked and sets
//     W. With W set, unlock does not visit: the awake contender will take the
//     lock (and wake the next at its own unlock) or park again (re-setting P
//     while L is held, so the holder's unlock sees it). So at most one waiter
//     is awake at a time: no thundering herd, and no lost wake-up.
//  M4 W has an owner: whoever set it (a spinner: `awake`; a woken waiter: its
//     waker set it for it) clears it when it takes the lock or parks. Two
//     owners may overlap (a spinner and a waker set it at once); the first to
//     clear it clears it for both, which costs at most an extra wake-up later.
//     W is never left set with nobody awake, so M3's "no visit" is safe.
//  M5 Starvation guard: if the woken waiter has waited over 1 ms (measured
//     from its first park, kept across re-parks) and the lock is still free,
//     wake_one hands it over: it sets L and H for the waiter, which resumes
//     owning the lock (token `handoff`), so no barger can take it first; the
//     new owner clears H when it runs, and while H is set contenders park at
//     once instead of spinning. A re-parking waiter goes to the front of the
//     queue, so the oldest waiter is the one woken (Go does the same).
//  M6 Spinning: at most `spin_limit` short rounds, and only where the holder
//     can run meanwhile and nothing else could (spin_may_help(): a plain
//     thread, or a fiber with other workers and no other fiber ready on its
//     own), and not while H is set. A single-worker fiber never spins: the
//     holder is parked or queued behind it.
//  M7 Woken waiters are queued where an idle worker can take them at once
//     (unpark_one_on's run_here = false), not in the waker's LIFO slot: the
//     waker runs on (it usually re-locks in a loop), and a waiter stuck behind
//     it would hold W (or H) for a whole time slice.
//  M8 The releasing call's last write to the mutex is the one that clears L:
//     as POSIX requires (glibc bug 13690), another thread may take the lock
//     the moment it is free, release it, and destroy the mutex while the
//     unlock that freed it is still returning. So unlock clears L with a CAS
//     only when it need not visit; when it must (P and no W), it keeps L and
//     the visit's callback clears it (or hands it over, M5) in the same CAS
//     that updates P and W, under the bucket lock; what the parking lot does
//     after the callback uses &state_ only as a number (P4). Found by review
//     (a reproducer pausing unlock before its visit saw a later write land in
//     the destroyed mutex). A condition variable's wait releases through the
//     same path.
//  A waiter that times out leaves P set behind it; the next visit clears it.
//
// Memory orders. Taking L is acquire and clearing it release, pairing so that
// each owner sees its predecessor's critical section. Setting P or W is
// relaxed: they publish nothing; M2 rests on the single modification order of
// the word and on the bucket lock. On hand-over (M5) wake_one's CAS is
// acq_rel (it takes L after whoever released it last) and the new owner
// synchronizes with it through the wake itself (Q4 of wait_queue.hpp).
//
// Tested by test/api/mutex_test.cpp, test/stress/sync_stress_test.cpp.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <system_error>

#include <weft/detail/park.hpp>
#include <weft/mutex.hpp>
#include <weft/shared_mutex.hpp>
#include <weft/this_fiber.hpp>

#include "util/private.hpp"

namespace weft::detail {

namespace {
constexpr std::uintptr_t handoff = 1;
constexpr std::int64_t fair_after_ns = 1'000'000;  // M4
constexpr int spin_limit = 4;                      // M6: rounds of spin_pauses (Go: 4 x 30)
constexpr int spin_pauses = 30;

}  // namespace

bool mutex_base::acquire_slow(std::uint64_t me, std::int64_t deadline_ns) {
    if (owner_.load(std::memory_order_relaxed) == me)  // relaxed: only our own store can equal `me`
        throw std::system_error(std::make_error_code(std::errc::resource_deadlock_would_occur),
                                "weft::mutex: lock() by its owner");
    int spins = 0;
    bool awake = false;      // we own W (M4)
    std::int64_t since = 0;  // first park (M5)
    for (;;) {
        std::uint32_t s = state_.load(std::memory_order_relaxed);  // relaxed: the CASes below re-check
        if (!(s & locked_bit)) {
            const std::uint32_t n = (s | locked_bit) & (awake ? ~woken_bit : ~0u);
            // acquire: pairs with release_state()/release_slow() of the previous owner (M1).
            if (state_.compare_exchange_weak(s, n, std::memory_order_acquire, std::memory_order_relaxed)) return true;
            continue;
        }
        if (spins < spin_limit && !(s & handoff_bit) && spin_may_help()) {  // M6
            // relaxed: W publishes nothing (M3, M4).
            if (!awake && (s & parked_bit) && !(s & woken_bit) &&
                state_.compare_exchange_weak(s, s | woken_bit, std::memory_order_relaxed, std::memory_order_relaxed))
                awake = true;
            for (int i = 0; i < spin_pauses; ++i) __builtin_ia32_pause();
            ++spins;
            continue;
        }
        const std::uint32_t n = (s | parked_bit) & (awake ? ~woken_bit : ~0u);
        // relaxed: P and W publish nothing; the bucket lock orders M2.
        if (n != s && !state_.compare_exchange_weak(s, n, std::memory_order_relaxed, std::memory_order_relaxed))
            continue;
        awake = false;
        const std::int64_t again = since;  // 0 on the first park: park_on records the time (M5)
        if (since == 0) since = steady_now_ns();
        const park_outcome out = park_if(
            &state_,
            [this] {
                const std::uint32_t v = state_.load(std::memory_order_relaxed);  // relaxed: under the bucket lock (M2)
                return (v & (locked_bit | parked_bit)) == (locked_bit | parked_bit);
            },
            deadline_ns, "mutex", /*cancellable=*/false, again);
        if (out.result == park_result::unparked) {
            if (out.token == handoff) {  // M5: ours already
                state_.fetch_and(~handoff_bit, std::memory_order_relaxed);  // relaxed: H publishes nothing
                return true;
            }
            awake = true;  // the waker set W for us (M3, M4)
        } else if (out.result == park_result::timeout) {
            // One last try, as std::timed_mutex::try_lock_until does at the deadline.
            std::uint32_t e = state_.load(std::memory_order_relaxed);  // relaxed: the CAS re-checks
            return !(e & locked_bit) && state_.compare_exchange_strong(e, e | locked_bit, std::memory_order_acquire,
                                                                       std::memory_order_relaxed);
        }
        spins = 0;
    }
}

void mutex_base::wake_one() noexcept {
    unpark_one_on(
        &state_,
        [](void* p, unpark_info info) -> std::uintptr_t {  // M3, under the bucket lock
            auto& st = *static_cast<std::atomic<std::uint32_t>*>(p);
            std::uint32_t cur = st.load(std::memory_order_relaxed);  // relaxed: the CAS re-checks
            for (;;) {  // L is still ours (M8): this CAS releases it or hands it over
                std::uint32_t n = (info.may_have_more ? cur : cur & ~parked_bit) & ~locked_bit;
                std::uintptr_t token = 0;
                if (info.did_unpark) {
                    if (info.waited_ns > fair_after_ns) {  // M5: the lock goes straight to the waiter
                        n |= locked_bit | handoff_bit;
                        token = handoff;
                    } else {
                        n |= woken_bit;  // M3, M4
                    }
                }
                // release: publishes the critical section to the next owner (M8); acquire: kept from
                // when hand-over took L after its last owner (the owner is now ourselves).
                if (st.compare_exchange_weak(cur, n, std::memory_order_acq_rel, std::memory_order_relaxed))
                    return token;
            }
        },
        &state_, /*run_here=*/false);  // M7
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

namespace weft::detail {

void shared_mutex_misuse(const void* m, const char* what) noexcept {
    const std::string name = this_fiber::get_name();
    std::fprintf(stderr, "weft: shared_mutex %p: %s (caller: %s %llu '%s')\n", m, what,
                 this_fiber::in_fiber() ? "fiber" : "thread", static_cast<unsigned long long>(self_token()),
                 name.c_str());
    std::fflush(stderr);
    std::abort();
}

}  // namespace weft::detail
