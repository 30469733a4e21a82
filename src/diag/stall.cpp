#include "diag/stall.hpp"

#include <pthread.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"
#include "util/log.hpp"

namespace weft::detail {

stall_monitor::stall_monitor(runtime_impl& rt, std::chrono::milliseconds threshold)
    : rt_(rt), threshold_(threshold), thread_([this] { run(); }) {}

stall_monitor::~stall_monitor() {
    {
        std::lock_guard<std::mutex> g(mu_);
        stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
}

void stall_monitor::run() {
    ::pthread_setname_np(::pthread_self(), "weft-monitor");
    using clock = std::chrono::steady_clock;
    struct look {
        std::uint64_t id = 0, switches = 0;
        clock::time_point since{};
        bool reported = false;
    };
    std::vector<look> looks(rt_.workers.size());
    const auto period = std::max(threshold_ / 2, std::chrono::milliseconds(1));
    std::unique_lock<std::mutex> lk(mu_);
    while (!cv_.wait_for(lk, period, [this] { return stop_; })) {
        const auto now = clock::now();
        for (std::size_t i = 0; i < looks.size(); ++i) {
            const worker& w = *rt_.workers[i];
            const std::uint64_t id = w.running_id.load(std::memory_order_relaxed);  // relaxed: S1 (header)
            const std::uint64_t sw = w.n_switches.load(std::memory_order_relaxed);  // relaxed: S1
            look& l = looks[i];
            if (id == 0 || id != l.id || sw != l.switches) {  // idle, or progress since the last look
                l = look{id, sw, now, false};
                continue;
            }
            const auto ran = std::chrono::duration_cast<std::chrono::milliseconds>(now - l.since);
            if (l.reported || ran < threshold_) continue;
            l.reported = true;  // S2
            log().warn(
                "worker {} of runtime '{}' has run {} for {} ms without switching (blocked in a system call or a "
                "std:: lock?)",
                i, rt_.opts.name, rt_.describe_fiber(id), ran.count());
        }
    }
}

}  // namespace weft::detail
