// Thin futex(2) wrappers (private futexes). Callers always re-check their
// condition in a loop: spurious and stale wake-ups are harmless by design.
#pragma once
#include "util/private.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <ctime>

namespace weft::detail {

inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                       const timespec* rel_timeout = nullptr) noexcept {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, rel_timeout, nullptr,
              0);
}

inline void futex_wake(std::atomic<std::uint32_t>& word, int n = 1) noexcept {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, n, nullptr, nullptr, 0);
}

}  // namespace weft::detail
