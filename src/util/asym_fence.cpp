// See util/asym_fence.hpp.
#include "util/asym_fence.hpp"

#include "util/check.hpp"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

namespace weft::detail::asym_fence {

bool usable = false;

void init() noexcept {
    static std::once_flag once;
    std::call_once(once, [] {
        const long cmds = ::syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
        if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return;
        usable = ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    });
}

void heavy() noexcept {
    // After init() said usable, the command cannot fail (the process is
    // registered); should it anyway, a fence on this side alone is not enough,
    // so the failure is fatal rather than a silent lost wake-up.
    if (!usable) {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        return;
    }
    if (::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) fatal("asym_fence::heavy", "membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) failed after registration");
}

}  // namespace weft::detail::asym_fence
