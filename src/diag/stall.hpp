// The stall monitor: warns when a worker runs one fiber for too long.
//
// A fiber that blocks its OS thread (a std::mutex held elsewhere, a blocking
// read(2), a long computation) stalls every fiber queued on its worker. weft
// cannot preempt it, but it can say so: one monitor thread per runtime looks
// at each worker every half `stall_warning` (looks at most 50 ms apart) and logs,
// once per episode, what the worker's thread was doing (S4):
//   weft: worker 1 of runtime 'weft' has run fiber 42 'conn-7' for 103 ms
//   without switching, 2 ms of it on a CPU: its thread is asleep in the
//   kernel (a blocking system call or a std:: lock?)
//   ... for 103 ms without switching, 101 ms of it on a CPU (a long
//   computation with no yield point?)
//
// Invariants.
//  S1 A worker is stalled when it has been running a fiber (running_id != 0)
//     and neither running_id nor n_switches + n_lone_yields (yields that found
//     nothing else to run) changed between two looks at least `stall_warning`
//     apart. Idle workers have running_id == 0.
//  S2 One warning per episode: a worker is reported again only after it has
//     made progress (S1: switched, or yielded with nobody to yield to).
//  S3 The monitor never touches a fiber object it does not know alive: the
//     name comes from the registry under its shard lock (R5); a fiber that
//     never parked is named by id only.
//  S4 The verdict comes from the worker's thread (classify_stall): its CPU
//     time over the episode (its thread CPU clock) and its state at the look
//     (/proc/self/task/<tid>/stat). On a CPU for `stall_warning`: computing.
//     Otherwise asleep in the kernel (S, D): blocked. Otherwise runnable but
//     not running: the machine or its host is overloaded (other threads, a
//     hypervisor's steal), which is no fault of the fiber; that is reported
//     only after 10 x `stall_warning`, as such, and (S2) not again as
//     computing in that episode (its message gives the CPU time). Without a
//     state or a CPU time, or for a stopped thread (T, t: SIGSTOP, a
//     debugger), the generic "(blocked in a system call or a std:: lock?)".
//     Stolen time is left out of a thread's CPU clock only on a guest that
//     accounts steal (CONFIG_PARAVIRT_TIME_ACCOUNTING, as this project's
//     machines): elsewhere a descheduled vCPU reads as computing.
//  S5 Lifecycle: the monitor starts after the worker threads and is stopped
//     (runtime_impl::shutdown) once no fiber is alive, before the workers are
//     told to exit: every tid and CPU clock it reads belongs to a live thread.
//     A threshold above `max_threshold` (one day) is clamped to it, so its
//     nanoseconds and 10 x never overflow.
//  S6 The I/O backstop (io/reactor.hpp E9): after a look that found some
//     worker still in the fiber it ran at the previous look, if the reactor
//     is active, no worker is the blocking poller and some worker sleeps,
//     the monitor calls idle_set::notify_one; the woken worker goes back to
//     sleep as the poller. Every input is a hint: a stale one costs a
//     needless wake-up or one more look, and notify_one is safe from any
//     thread. The backstop does not depend on the warnings: with
//     stall_warning < 0 and two or more workers the monitor still runs,
//     looking every 50 ms, for S6 alone (no CPU clock, no /proc, no log);
//     with one worker there is nobody to wake and no monitor.
//  S7 Each look ends with the deadlock watch's look (diag/deadlock.hpp): the
//     monitors are the only threads that can see that nothing else runs.
//
// Memory orders. running_id, n_switches and n_lone_yields are relaxed: they are samples for
// a diagnostic; a stale value delays or skips one warning, nothing else.
// os_tid is stored with release after cpu_clock (relaxed) and loaded with
// acquire, so a monitor that sees the tid sees the clock. The monitor's own
// stop flag is guarded by its std::mutex.
//
// Cost: a thread that wakes every stall_warning / 2, and at least every
// 50 ms (the default), while the runtime lives, and reads each busy worker's CPU
// clock (one system call); with stall_warning < 0 only the wake-ups remain
// (S6). /proc is read only once a stall is suspected.
//
// Tested by test/api/stall_test.cpp and test/unit/stall_test.cpp.
#pragma once
#include "util/private.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace weft::detail {

class runtime_impl;

/// S4's verdict on a stalled worker's thread.
enum class stall_kind {
    none,       // not (yet) worth a warning
    computing,  // on a CPU for at least the threshold
    blocked,    // asleep in the kernel (state S, D, ...)
    starved,    // runnable but given little CPU, for 10 x the threshold
    unknown,    // no state or CPU time to judge by, or a stopped thread
};

/// S4. `state`: the thread's state letter from /proc (0: unknown); `cpu_ns`
/// < 0: unknown. `wall_ns`: how long the episode has lasted.
constexpr stall_kind classify_stall(char state, std::int64_t wall_ns, std::int64_t cpu_ns,
                                    std::int64_t threshold_ns) noexcept {
    if (wall_ns < threshold_ns) return stall_kind::none;
    if (cpu_ns >= threshold_ns) return stall_kind::computing;
    if (state == 0 || state == 'T' || state == 't' || cpu_ns < 0) return stall_kind::unknown;
    if (state != 'R') return stall_kind::blocked;
    return wall_ns >= 10 * threshold_ns ? stall_kind::starved : stall_kind::none;
}

class stall_monitor {
public:
    /// threshold < 0: no warnings, the backstop only (S6).
    stall_monitor(runtime_impl& rt, std::chrono::milliseconds threshold);
    ~stall_monitor();  // stops and joins the thread
    stall_monitor(const stall_monitor&) = delete;
    stall_monitor& operator=(const stall_monitor&) = delete;

private:
    static constexpr std::chrono::hours max_threshold{24};  // S5
    static constexpr std::chrono::milliseconds max_period{50};  // S6: the backstop's latency

    void run();
    void report(std::size_t worker_index, stall_kind kind, const std::string& who, long long wall_ms,
                long long cpu_ms);

    runtime_impl& rt_;
    const bool warn_;  // false: S6 only
    const std::chrono::milliseconds threshold_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;  // guarded by mu_
    std::thread thread_;
};

}  // namespace weft::detail
