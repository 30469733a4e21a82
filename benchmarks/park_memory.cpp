// park_memory: n fibers parked at once; reports the RSS growth per parked fiber
// (kib_per_task) and the creation time per fiber (ns_per_op); rss_kb is VmRSS
// while all are parked. Then all are released and joined.
//
// The only blocking call weft has so far is join, so the fibers park in a
// chain: fiber k spawns fiber k+1 and joins it; the last one polls a release
// flag with yield(). (Peers park n fibers on one channel receive instead; the
// memory per parked fiber is comparable, the creation path is sequential here.)
// The main thread is a plain thread outside the runtime: it polls `started`
// with sleeps, measures, then releases.
// Usage: park_memory <n=100000> <workers=1>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <weft/weft.hpp>

#include "bench.hpp"

namespace {

long n_total = 0;
std::atomic<long> started{0};
std::atomic<bool> released{false};

void chain_link(long k) {
    started.fetch_add(1, std::memory_order_relaxed);  // relaxed: only counted; the 10 ms settle covers the rest
    if (k + 1 < n_total) {
        weft::spawn(chain_link, k + 1).join();
        return;
    }
    while (!released.load(std::memory_order_acquire))  // acquire: pairs with the release store in main()
        weft::this_fiber::yield();
}

}  // namespace

int main(int argc, char** argv) {
    long n = weft_bench::arg(argc, argv, 1, 100000);
    long w = weft_bench::arg(argc, argv, 2, 1);
    if (n < 1) return weft_bench::fail("park_memory", "n must be >= 1");
    n_total = n;
    weft::runtime rt(weft::runtime_options{.workers = std::size_t(w)});
    long rss0 = weft_bench::cur_rss_kb();
    auto t0 = weft_bench::clk::now();
    auto head = rt.spawn(chain_link, 0L);
    while (started.load(std::memory_order_relaxed) < n) {
        if (weft_bench::ms_since(t0) > 60000) {
            std::fprintf(stderr, "park_memory: only %ld of %ld fibers started after 60 s; stats: alive=%lu parked=%lu\n",
                         started.load(), n, (unsigned long)rt.stats().fibers_alive,
                         (unsigned long)rt.stats().fibers_parked);
            std::_Exit(1);  // the runtime's shutdown would wait for the stuck chain
        }
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    double ms = weft_bench::ms_since(t0);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // let the last ones reach join()
    long rss1 = weft_bench::cur_rss_kb();
    auto st = rt.stats();
    released.store(true, std::memory_order_release);  // release: pairs with the acquire in chain_link()
    head.join();
    char extra[256];
    std::snprintf(extra, sizeof extra, "kib_per_task=%.2f rss_delta_kb=%ld stack_kb=%zu guard=%s parked=%lu",
                  double(rss1 - rss0) / double(n), rss1 - rss0, rt.options().stack_size / 1024,
                  st.guard_mode.c_str(), (unsigned long)st.fibers_parked);
    weft_bench::result("park_memory", int(rt.options().workers), n, weft_bench::ns_per_op(ms, n), ms, rss1, extra);
}
