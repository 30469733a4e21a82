// The stall monitor: warns when a worker runs one fiber for too long.
//
// A fiber that blocks its OS thread (a std::mutex held elsewhere, a blocking
// read(2), a long computation) stalls every fiber queued on its worker. weft
// cannot preempt it, but it can say so: one monitor thread per runtime looks
// at each worker every half `stall_warning` and logs, once per episode,
//   weft: worker 1 of runtime 'weft' has run fiber 42 'conn-7' for 103 ms
//   without switching (blocked in a system call or a std:: lock?)
//
// Invariants.
//  S1 A worker is stalled when it has been running a fiber (running_id != 0)
//     and neither running_id nor n_switches changed between two looks at
//     least `stall_warning` apart. Idle workers have running_id == 0.
//  S2 One warning per episode: a worker is reported again only after it has
//     switched.
//  S3 The monitor never touches a fiber object it does not know alive: the
//     name comes from the registry under its shard lock (R5); a fiber that
//     never parked is named by id only.
//
// Memory orders. running_id and n_switches are relaxed: they are samples for
// a diagnostic; a stale value delays or skips one warning, nothing else.
// The monitor's own stop flag is guarded by its std::mutex.
//
// Cost: a thread that wakes every stall_warning / 2 (default 50 ms) while the
// runtime lives; off with stall_warning < 0.
//
// Tested by test/api/stall_test.cpp.
#pragma once
#include "util/private.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace weft::detail {

class runtime_impl;

class stall_monitor {
public:
    stall_monitor(runtime_impl& rt, std::chrono::milliseconds threshold);
    ~stall_monitor();  // stops and joins the thread
    stall_monitor(const stall_monitor&) = delete;
    stall_monitor& operator=(const stall_monitor&) = delete;

private:
    void run();

    runtime_impl& rt_;
    const std::chrono::milliseconds threshold_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;  // guarded by mu_
    std::thread thread_;
};

}  // namespace weft::detail
