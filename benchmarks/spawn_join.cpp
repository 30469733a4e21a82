// spawn_join: from one fiber, spawn n fibers that each bump a counter, keeping
// the join handles, then join them all; one op = spawn + run + join of one fiber.
// Peers: Go (go + WaitGroup), Boost.Fiber (fiber + join()).
// Usage: spawn_join <n=1000000> <workers=1>   (workers 0 = the runtime's default)
#include <atomic>
#include <vector>

#include <weft/weft.hpp>

#include "bench.hpp"

int main(int argc, char** argv) {
    long n = weft_bench::arg(argc, argv, 1, 1000000);
    long w = weft_bench::arg(argc, argv, 2, 1);
    weft::runtime rt(weft::runtime_options{.workers = std::size_t(w)});
    std::atomic<long> ran{0};
    double ms = rt.block_on([&] {
        std::vector<weft::join_handle<void>> hs;
        hs.reserve(n);
        auto t0 = weft_bench::clk::now();
        for (long i = 0; i < n; ++i)
            // relaxed: only the total is read, after every join (which orders it).
            hs.push_back(rt.spawn([&ran] { ran.fetch_add(1, std::memory_order_relaxed); }));
        for (auto& h : hs) h.join();
        return weft_bench::ms_since(t0);
    });
    long got = ran.load(std::memory_order_relaxed);
    if (got != n) return weft_bench::fail("spawn_join", "ran " + std::to_string(got) + " fibers, want " + std::to_string(n));
    weft_bench::result("spawn_join", int(rt.options().workers), n, weft_bench::ns_per_op(ms, n), ms, weft_bench::peak_rss_kb(),
                       "spawned=" + std::to_string(rt.stats().spawned));
}
