// A lock for short critical sections (waiter lists, parking-lot buckets,
// registry shards). Never held across a blocking call; a fiber that parks
// releases it only after its context is saved (see "unlock after switch" in
// sched/worker.hpp).
//
// It spins briefly, then sleeps on a futex: the holder may be an OS thread
// the kernel (or the hypervisor) preempted inside the section, and pure
// spinning then burns whole time slices (measured: a contended weft::mutex
// spent 96% of its time spinning on a parking-lot bucket under CPU
// overcommit). Drepper's three-state futex mutex ("Futexes are tricky",
// mutex3): 0 free, 1 locked, 2 locked and someone may sleep.
//
// Between probes a waiter backs off exponentially (1, 2, 4 ... 1024 pauses,
// 16 probes, about 7,000 pauses in all, then the futex). Probing at once
// made two workers hammering one channel take turns on every acquisition,
// each a cache-line transfer (chan_mpmc, 2 workers: 400 ns per item); with
// the back-off the holder's core usually re-takes the lock while the line is
// still local. The longer the back-off, the longer those runs (chan_mpmc, 2
// workers, same hour: cap 128: 68-78 ns per item, 256: 70-75, 512: 59-65,
// 1024: 54-57, 2048: 52-54); 1024 keeps the spin before the futex short of
// the scheduler's time slice. A lost probe costs the waiter latency, not
// the holder: the lock is unfair by design, as Go's runtime lock is.
//
// Rejected: a lock-free (Vyukov) ring for buffered channels, tried with the
// old back-off: 66-150 ns per item in chan_mpmc, with both workers' fibers
// sending and receiving every slot's line moves anyway (chan/chan.hpp).
//
// Memory orders: acquire on every transition to locked, release on unlock,
// so each holder sees the previous holder's section.
#pragma once
#include "util/private.hpp"

#include <atomic>
#include <cstdint>

#include "util/futex.hpp"

namespace weft::detail {

class spinlock {
public:
    void lock() noexcept {
        std::uint32_t expected = 0;
        // acquire: pairs with the release in unlock().
        if (word_.compare_exchange_strong(expected, 1, std::memory_order_acquire, std::memory_order_relaxed)) return;
        lock_slow();
    }
    bool try_lock() noexcept {
        std::uint32_t expected = 0;
        return word_.load(std::memory_order_relaxed) == 0 &&  // relaxed: hint only
               word_.compare_exchange_strong(expected, 1, std::memory_order_acquire,  // acquire: as in lock()
                                             std::memory_order_relaxed);
    }
    void unlock() noexcept {
        // release: publishes the critical section to the next lock().
        if (word_.exchange(0, std::memory_order_release) == 2) futex_wake(word_, 1);
    }

private:
    __attribute__((noinline)) void lock_slow() noexcept {
        for (int i = 0, pause = 1; i < 16; ++i, pause = pause < 1024 ? pause * 2 : 1024) {
            for (int k = 0; k < pause; ++k) __builtin_ia32_pause();
            std::uint32_t expected = 0;
            if (word_.load(std::memory_order_relaxed) == 0 &&  // relaxed: hint only
                word_.compare_exchange_weak(expected, 1, std::memory_order_acquire,  // acquire: as in lock()
                                            std::memory_order_relaxed))
                return;
        }
        // acquire: as in lock(). Taking it as 2 is conservative: someone may sleep.
        while (word_.exchange(2, std::memory_order_acquire) != 0) futex_wait(word_, 2);
    }

    std::atomic<std::uint32_t> word_{0};
};

}  // namespace weft::detail
