// yield_pingpong: two fibers each call this_fiber::yield() n/2 times; one op = one
// yield. `switches` counts the yields after which the other fiber had run in
// between (with one worker that should be ~n; with more workers the two fibers
// may sit on different workers and a yield with nothing else runnable returns at once).
// Peers: Go (Gosched), Boost.Fiber (this_fiber::yield), thread (sched_yield).
// Usage: yield_pingpong <n=10000000> <workers=1>
#include <atomic>

#include <weft/weft.hpp>

#include "bench.hpp"

int main(int argc, char** argv) {
    long n = weft_bench::arg(argc, argv, 1, 10000000);
    long w = weft_bench::arg(argc, argv, 2, 1);
    weft::runtime rt(weft::runtime_options{.workers = std::size_t(w)});
    // relaxed: a statistic; exchange is atomic, which is all the count needs.
    std::atomic<int> last{-1};
    std::atomic<long> switches{0};
    auto body = [&](int me) {
        for (long i = 0; i < n / 2; ++i) {
            weft::this_fiber::yield();
            if (last.exchange(me, std::memory_order_relaxed) != me) switches.fetch_add(1, std::memory_order_relaxed);
        }
    };
    auto before = rt.stats();
    double ms = rt.block_on([&] {
        auto t0 = weft_bench::clk::now();
        auto a = rt.spawn(body, 0);
        auto b = rt.spawn(body, 1);
        a.join();
        b.join();
        return weft_bench::ms_since(t0);
    });
    auto after = rt.stats();
    weft_bench::result("yield_pingpong", int(rt.options().workers), n, weft_bench::ns_per_op(ms, n), ms,
                       weft_bench::peak_rss_kb(),
                       "switches=" + std::to_string(switches.load(std::memory_order_relaxed)) +
                           " rt_switches=" + std::to_string(after.switches - before.switches));
}
