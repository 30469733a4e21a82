/// @file
/// Helpers shared by weft's benchmark programs: argument parsing, timing, RSS
/// and the RESULT line.
///
/// The programs follow the peer-benchmark convention (Go, Boost.Fiber and
/// std::thread run the same workloads elsewhere) so that their lines can be
/// compared one to one:
///
///   <bench> <n> <workers> [extra...]
///   RESULT name=<bench> impl=weft workers=<w> n=<n> ns_per_op=<x> total_ms=<y> rss_kb=<z> [key=value ...]
///
/// Exactly one RESULT line goes to stdout; diagnostics go to stderr; a wrong
/// result exits non-zero. `rss_kb` is peak RSS (getrusage) unless the program
/// says otherwise.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <sys/resource.h>

namespace weft_bench {

using clk = std::chrono::steady_clock;

/// argv[i] as a number, or `def` when absent. Exits with a message on garbage.
inline long arg(int argc, char** argv, int i, long def) {
    if (argc <= i) return def;
    char* end = nullptr;
    long v = std::strtol(argv[i], &end, 10);
    if (end == argv[i] || *end != '\0' || v < 0) {
        std::fprintf(stderr, "%s: bad argument %d: '%s' (usage: %s <n> <workers> [extra])\n", argv[0], i, argv[i],
                     argv[0]);
        std::exit(2);
    }
    return v;
}

inline double ms_since(clk::time_point t0) { return std::chrono::duration<double, std::milli>(clk::now() - t0).count(); }

/// Peak resident set size of this process (KiB).
inline long peak_rss_kb() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/// A "VmXXX:" field of /proc/self/status in KiB, -1 if unavailable.
inline long proc_status_kb(const char* field) {
    char line[256];
    FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) return -1;
    long kb = -1;
    std::size_t len = std::strlen(field);
    while (std::fgets(line, sizeof line, f))
        if (!std::strncmp(line, field, len) && line[len] == ':') {
            kb = std::atol(line + len + 1);
            break;
        }
    std::fclose(f);
    return kb;
}

/// Nanoseconds per op for `ms` milliseconds over n ops (0 when n is 0).
inline double ns_per_op(double ms, long n) { return n > 0 ? ms * 1e6 / double(n) : 0.0; }

/// Current resident set size (VmRSS, KiB).
inline long cur_rss_kb() { return proc_status_kb("VmRSS"); }

/// Prints the RESULT line (impl=weft) and flushes stdout.
inline void result(const char* name, int workers, long n, double ns_op, double total_ms, long rss_kb,
                   const std::string& extra = "") {
    std::printf("RESULT name=%s impl=weft workers=%d n=%ld ns_per_op=%.1f total_ms=%.1f rss_kb=%ld%s%s\n", name,
                workers, n, ns_op, total_ms, rss_kb, extra.empty() ? "" : " ", extra.c_str());
    std::fflush(stdout);
}

/// Reports a wrong result on stderr and returns the exit status for main().
inline int fail(const char* name, const std::string& why) {
    std::fprintf(stderr, "%s: WRONG RESULT: %s\n", name, why.c_str());
    return 1;
}

}  // namespace weft_bench
