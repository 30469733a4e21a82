// select: Go's selectgo; protocol and invariants in chan/chan.hpp (C4-C6).
//
// Steps: (1) a random poll order of the cases, and the distinct channels in
// address order (C6); (2) in poll order, try each case under its own lock
// and run the first that can complete; (3) if none could: return the
// default if that was the only case, else lock every channel and look again
// in poll order, and return the default if there is one; (4) still none:
// queue one chan waiter per case (in poll order, so
// no channel is favoured by registration order either), all on one waiter
// record, and park with park_waiter: the first lock is released by the
// post-switch hook, the others by its after-unlock step (C5); (5) on waking,
// re-take each lock in turn and unlink what is still queued (C4); the
// claimer's token names the case that completed.
#include <weft/detail/park.hpp>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <new>
#include <type_traits>

#include "chan/chan.hpp"
#include "sync/wait_queue.hpp"

namespace weft::detail {

namespace {

/// A per-thread xorshift generator: select's random choice needs speed, not
/// quality (Go uses a per-M fastrand for the same purpose).
std::uint32_t fast_rand() noexcept {
    thread_local std::uint64_t s = 0;
    if (s == 0) {
        // Seeded from a process-wide count as well as the variable's address: glibc
        // gives a new thread a dead one's stack and TLS, so the address alone made
        // every short-lived thread repeat the same choices (found by review).
        static std::atomic<std::uint64_t> threads_seeded{0};
        std::uint64_t z = (threads_seeded.fetch_add(1, std::memory_order_relaxed) + 1) *  // relaxed: a count
                              0x9E3779B97F4A7C15ull ^
                          reinterpret_cast<std::uintptr_t>(&s);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;  // a 64-bit mix (splitmix64's finalizer)
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        s = (z ^ (z >> 31)) | 1;
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<std::uint32_t>((s * 0x2545F4914F6CDD1Dull) >> 32);
}

/// Uniform in [0, n) (Lemire's multiply-shift; the bias is < n / 2^32).
inline std::size_t below(std::size_t n) noexcept {
    return static_cast<std::size_t>((static_cast<std::uint64_t>(fast_rand()) * n) >> 32);
}

/// Small uninitialized arrays of trivial types on the stack, on the heap
/// beyond `Inline` elements (every element is written before it is read).
template <class T, std::size_t Inline>
class scratch {
    static_assert(std::is_trivially_destructible_v<T>);

public:
    explicit scratch(std::size_t n)
        : p_(n <= Inline ? reinterpret_cast<T*>(local_)
                         : reinterpret_cast<T*>((heap_ = std::make_unique<std::byte[]>(n * sizeof(T))).get())) {}
    T& operator[](std::size_t i) noexcept { return p_[i]; }
    T* data() noexcept { return p_; }

private:
    alignas(T) std::byte local_[Inline * sizeof(T)];
    std::unique_ptr<std::byte[]> heap_;
    T* p_;
};

struct lock_set {
    chan** chans;
    std::size_t n;
};

void unlock_all(lock_set& ls) noexcept {
    for (std::size_t i = 0; i < ls.n; ++i) ls.chans[i]->lock.unlock();
}

/// The post-switch step: releases locks 1..n-1 (lock 0 went first). Reads the
/// list from the parked caller's frame, which outlives the last read (C5).
void unlock_rest(void* p) noexcept {
    const lock_set* ls = static_cast<const lock_set*>(p);
    const std::size_t n = ls->n;
    chan** chans = ls->chans;
    for (std::size_t i = 1; i < n; ++i) chans[i]->lock.unlock();
}

/// A select whose every case is on a moved-from handle: only its deadline
/// (or cancellation) ends it, as Go's select on nil channels.
select_outcome wait_forever(std::size_t n, std::int64_t deadline_ns) {
    spinlock lk;  // nobody else takes it
    waiter me = make_waiter();
    waiter_list list;
    lk.lock();
    list.push_back(me);
    const wake_reason r = park_waiter(me, lk, "select", deadline_ns);
    lk.lock();
    if (me.linked) list.remove(me);
    lk.unlock();
    if (r == wake_reason::cancelled) throw_cancelled();
    return {n, false};
}

}  // namespace

select_outcome select_run(select_case* cases, std::size_t n, std::int64_t deadline_ns, bool has_default) {
    // (1) poll order: a uniform random permutation (Fisher-Yates).
    scratch<std::uint32_t, 16> order(n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t j = below(i + 1);
        if (j != i) order[i] = order[j];
        order[j] = static_cast<std::uint32_t>(i);
    }
    // Lock order: the distinct channels by address (C6).
    scratch<chan*, 16> chans(n);
    std::size_t nchans = 0;
    for (std::size_t i = 0; i < n; ++i)
        if (cases[i].ch) chans[nchans++] = cases[i].ch;
    const std::size_t ncases = nchans;  // the cases on a channel (not moved-from handles)
    std::sort(chans.data(), chans.data() + nchans, std::less<>());  // a total order on pointers
    nchans = static_cast<std::size_t>(std::unique(chans.data(), chans.data() + nchans) - chans.data());
    if (nchans == 0) {
        if (has_default) return {n, false};
        return wait_forever(n, deadline_ns);
    }
    lock_set ls{chans.data(), nchans};
    scratch<chan_waiter, 16> cws(n);  // allocated (beyond 16 cases) before any lock is held

    // (2) A first pass one lock at a time: when some case is ready (the
    // common case under load, and every select with a default that finds
    // one), this costs one lock instead of all of them. Nothing is queued
    // yet, so a case that completes here is as good as one found under all
    // the locks: it completes under its channel's lock or not at all. The
    // order is the same random order, so the choice stays uniform. But "none
    // was ready" is not seen at one instant: a close() can make one case
    // ready and, claiming a select parked on another channel, withdraw the
    // peer of another case, in one step. So the default is taken only after
    // the look under all the locks (3), unless there is a single case (found
    // by review: a default taken while a case was ready all along).
    for (std::size_t k = 0; k < n; ++k) {
        const std::size_t i = order[k];
        select_case& sc = cases[i];
        if (!sc.ch) continue;
        waiter* wake = nullptr;
        sc.ch->lock.lock();
        const attempt a = sc.is_send ? send_locked(sc.ch, sc.elem, &wake) : recv_locked(sc.ch, sc.elem, &wake);
        sc.ch->lock.unlock();
        if (a == attempt::would_block) continue;
        if (a == attempt::no_memory) throw std::bad_alloc();
        if (wake) complete_unpark(*wake);
        return {i, a == attempt::done};
    }
    if (has_default && ncases == 1) return {n, false};

    // (3) Nothing was ready: look again under all the locks, then park (or
    // take the default).
    for (std::size_t i = 0; i < nchans; ++i) chans[i]->lock.lock();
    for (std::size_t k = 0; k < n; ++k) {
        const std::size_t i = order[k];
        select_case& sc = cases[i];
        if (!sc.ch) continue;
        waiter* wake = nullptr;
        const attempt a = sc.is_send ? send_locked(sc.ch, sc.elem, &wake) : recv_locked(sc.ch, sc.elem, &wake);
        if (a == attempt::would_block) continue;
        unlock_all(ls);
        if (a == attempt::no_memory) throw std::bad_alloc();
        if (wake) complete_unpark(*wake);
        return {i, a == attempt::done};
    }
    if (has_default) {
        unlock_all(ls);
        return {n, false};
    }
    // (4)
    waiter me = make_waiter();
    for (std::size_t k = 0; k < n; ++k) {
        const std::size_t i = order[k];
        select_case& sc = cases[i];
        if (!sc.ch) continue;
        chan_waiter& cw = *::new (&cws[i]) chan_waiter;
        cw.w = &me;
        cw.elem = sc.elem;
        cw.index = static_cast<std::uint32_t>(i);
        (sc.is_send ? sc.ch->sendq : sc.ch->recvq).push_back(cw);
    }
    const wake_reason r = park_waiter(me, chans[0]->lock, "select", deadline_ns, /*cancellable=*/true,
                                      nchans > 1 ? &unlock_rest : nullptr, &ls);
    // (5) C4: every lock is re-taken before this frame may go.
    for (std::size_t j = 0; j < nchans; ++j) {
        chan* c = chans[j];
        c->lock.lock();
        for (std::size_t i = 0; i < n; ++i) {
            chan_waiter& cw = cws[i];
            if (cases[i].ch == c && cw.linked) (cases[i].is_send ? c->sendq : c->recvq).remove(cw);
        }
        c->lock.unlock();
    }
    if (r == wake_reason::cancelled) throw_cancelled();
    if (r == wake_reason::timeout) return {n, false};
    return {static_cast<std::size_t>(me.token >> 1), (me.token & 1) == 0};
}

}  // namespace weft::detail
