// mutex_contention: 100 fibers share one weft::mutex and increment one counter,
// n increments in all (one op = one locked increment), as the Go and Boost.Fiber
// peers do. Fails if an increment is lost.
// Usage: mutex_contention <n=10000000> <workers=2>
#include <mutex>
#include <vector>

#include <weft/weft.hpp>

#include "bench.hpp"

int main(int argc, char** argv) {
    long n = weft_bench::arg(argc, argv, 1, 10000000);
    long w = weft_bench::arg(argc, argv, 2, 2);
    constexpr long tasks = 100;
    weft::runtime rt(weft::runtime_options{.workers = std::size_t(w)});
    weft::mutex m;
    long counter = 0;
    const double ms = rt.block_on([&] {
        auto t0 = weft_bench::clk::now();
        std::vector<weft::join_handle<void>> hs;
        hs.reserve(tasks);
        for (long t = 0; t < tasks; ++t)
            hs.push_back(rt.spawn([&] {
                for (long i = 0; i < n / tasks; ++i) {
                    std::lock_guard<weft::mutex> g(m);
                    ++counter;
                }
            }));
        for (auto& h : hs) h.join();
        return weft_bench::ms_since(t0);
    });
    if (counter != n / tasks * tasks) return weft_bench::fail("mutex_contention", "lost increments");
    weft_bench::result("mutex_contention", int(rt.options().workers), n, weft_bench::ns_per_op(ms, n), ms,
                       weft_bench::peak_rss_kb());
}
