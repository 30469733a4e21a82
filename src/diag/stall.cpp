// The stall monitor; invariants S1-S5 in diag/stall.hpp.
#include "diag/stall.hpp"

#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "diag/deadlock.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"
#include "util/log.hpp"

namespace weft::detail {

namespace {

/// S4: the worker thread's CPU time in ns, -1 if unknown (not started yet).
std::int64_t thread_cpu_ns(const worker& w) noexcept {
    if (w.os_tid.load(std::memory_order_acquire) == 0) return -1;  // acquire: pairs with run()'s release, cpu_clock
    const auto clock = static_cast<clockid_t>(w.cpu_clock.load(std::memory_order_relaxed));  // relaxed: as above
    timespec ts{};
    if (::clock_gettime(clock, &ts) != 0) return -1;
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

/// S4: the worker thread's state letter (R, S, D, ...) from /proc, 0 if unknown.
char thread_state(const worker& w) noexcept {
    const int tid = w.os_tid.load(std::memory_order_relaxed);  // relaxed: the tid itself is all we use
    if (tid == 0) return 0;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    std::FILE* f = std::fopen(path, "re");
    if (!f) return 0;
    char line[512];
    char state = 0;
    if (std::fgets(line, sizeof line, f)) {
        const char* close = std::strrchr(line, ')');  // the name may hold spaces and parentheses
        if (close && close[1] == ' ' && close[2] != '\0') state = close[2];
    }
    std::fclose(f);
    return state;
}

constexpr std::int64_t ns_per_ms = 1'000'000;

}  // namespace

stall_monitor::stall_monitor(runtime_impl& rt, std::chrono::milliseconds threshold)
    : rt_(rt),
      warn_(threshold.count() >= 0),
      // Off: unused, and 0 so that no conversion of it can overflow (milliseconds::min() is a fair "off").
      threshold_(warn_ ? std::min(threshold, std::chrono::milliseconds(max_threshold)) : std::chrono::milliseconds(0)),
      thread_([this] { run(); }) {}

stall_monitor::~stall_monitor() {
    {
        std::lock_guard<std::mutex> g(mu_);
        stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
}

void stall_monitor::run() {
    const deadlock::own_thread own;  // diag/deadlock.hpp Z1
    ::pthread_setname_np(::pthread_self(), "weft-monitor");
    deadlock::watch deadlocks;
    using clock = std::chrono::steady_clock;
    struct look {
        std::uint64_t id = 0, switches = 0;
        clock::time_point since{};
        std::int64_t cpu_since = -1;  // the thread's CPU time at `since` (S4), -1: unknown
        bool reported = false;
    };
    std::vector<look> looks(rt_.workers.size());
    const auto period = warn_ ? std::clamp(threshold_ / 2, std::chrono::milliseconds(1), max_period) : max_period;
    const std::int64_t threshold_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(threshold_).count();
    std::unique_lock<std::mutex> lk(mu_);
    while (!cv_.wait_for(lk, period, [this] { return stop_; })) {
        bool stuck = false;  // S6: some worker has not switched since the last look
        for (std::size_t i = 0; i < looks.size(); ++i) {
            const worker& w = *rt_.workers[i];
            const std::uint64_t id = w.running_id.load(std::memory_order_relaxed);  // relaxed: S1 (header)
            // relaxed: S1. A yield that found nobody to switch to is progress too.
            const std::uint64_t sw = w.n_switches.load(std::memory_order_relaxed) +
                                     w.n_lone_yields.load(std::memory_order_relaxed);
            const auto now = clock::now();  // per worker: beside its CPU clock, after earlier workers' reports
            const std::int64_t cpu_now = id == 0 || !warn_ ? -1 : thread_cpu_ns(w);
            look& l = looks[i];
            if (id == 0 || id != l.id || sw != l.switches) {  // idle, or progress since the last look
                l = look{id, sw, now, cpu_now, false};
                continue;
            }
            stuck = true;
            if (l.reported || !warn_) continue;  // S2; S6 only
            const std::int64_t wall = std::chrono::duration_cast<std::chrono::nanoseconds>(now - l.since).count();
            if (wall < threshold_ns) continue;
            const std::int64_t cpu = l.cpu_since < 0 || cpu_now < 0 ? -1 : cpu_now - l.cpu_since;
            // A thread that computed for the threshold is judged without /proc (its state is moot).
            const char state = cpu >= threshold_ns ? 'R' : thread_state(w);
            const stall_kind kind = classify_stall(state, wall, cpu, threshold_ns);
            if (kind == stall_kind::none) continue;
            l.reported = true;
            report(i, kind, rt_.describe_fiber(id), wall / ns_per_ms, cpu / ns_per_ms);
        }
        // S6 / E9: a stuck worker does not poll; make sure a sleeping one does.
        if (stuck && rt_.io.active() && !rt_.io.poller_present() && rt_.idle.someone_sleeps()) rt_.idle.notify_one();
        deadlocks.look(rt_);  // S7
    }
}

void stall_monitor::report(std::size_t worker_index, stall_kind kind, const std::string& who, long long wall_ms,
                           long long cpu_ms) {
    const std::string cpu = std::to_string(cpu_ms);
    std::string why;
    switch (kind) {
    case stall_kind::computing:
        why = ", " + cpu + " ms of it on a CPU (a long computation with no yield point?)";
        break;
    case stall_kind::blocked:
        why = ", " + cpu + " ms of it on a CPU: its thread is asleep in the kernel";
        why += " (a blocking system call or a std:: lock?)";
        break;
    case stall_kind::starved:
        why = ", but its thread got only " + cpu + " ms of CPU: the machine is overloaded";
        why += " (more busy threads than CPUs, or the host took the CPU)";
        break;
    case stall_kind::unknown:
        why = " (blocked in a system call or a std:: lock?)";
        break;
    case stall_kind::none:
        return;
    }
    log().warn("worker {} of runtime '{}' has run {} for {} ms without switching{}", worker_index, rt_.opts.name, who,
               wall_ms, why);
}

}  // namespace weft::detail
