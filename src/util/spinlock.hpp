// A test-and-test-and-set spinlock for short critical sections (waiter lists,
// registry shards). Never held across a blocking call; a fiber that parks
// releases it only after its context is saved (see "unlock after switch" in
// sched/worker.hpp).
#pragma once
#include "util/private.hpp"

#include <atomic>

namespace weft::detail {

class spinlock {
public:
    void lock() noexcept {
        for (;;) {
            if (!locked_.exchange(true, std::memory_order_acquire))  // acquire: pairs with release in unlock()
                return;
            while (locked_.load(std::memory_order_relaxed))  // relaxed: only a hint; the exchange re-checks
                __builtin_ia32_pause();
        }
    }
    bool try_lock() noexcept {
        return !locked_.load(std::memory_order_relaxed) &&  // relaxed: hint only
               !locked_.exchange(true, std::memory_order_acquire);  // acquire: pairs with release in unlock()
    }
    void unlock() noexcept {
        locked_.store(false, std::memory_order_release);  // release: publishes the critical section to the next lock()
    }

private:
    std::atomic<bool> locked_{false};
};

}  // namespace weft::detail
