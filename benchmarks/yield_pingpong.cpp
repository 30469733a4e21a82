// yield_pingpong: two fibers run the same loop of n/2 this_fiber::yield() calls,
// as the Go and Boost.Fiber peers do (no atomics in the loop); one op = one yield.
// `switches` is the runtime's count of context switches during the run: with one
// worker it must be about n (checked: the program fails otherwise); with more
// workers the two fibers may sit on different workers, and a yield with nothing
// else runnable there returns at once.
// Peers: Go (Gosched), Boost.Fiber (this_fiber::yield), thread (sched_yield).
// Usage: yield_pingpong <n=10000000> <workers=1>
#include <cstdint>
#include <cstdio>

#include <weft/weft.hpp>

#include "bench.hpp"

int main(int argc, char** argv) {
    long n = weft_bench::arg(argc, argv, 1, 10000000);
    long w = weft_bench::arg(argc, argv, 2, 1);
    weft::runtime rt(weft::runtime_options{.workers = std::size_t(w)});
    auto body = [n] {
        for (long i = 0; i < n / 2; ++i) weft::this_fiber::yield();
    };
    auto before = rt.stats();
    double ms = rt.block_on([&] {
        auto t0 = weft_bench::clk::now();
        auto a = rt.spawn(body);
        auto b = rt.spawn(body);
        a.join();
        b.join();
        return weft_bench::ms_since(t0);
    });
    auto after = rt.stats();
    const auto switches = after.switches - before.switches;
    if (w == 1 && switches < std::uint64_t(n)) {
        std::fprintf(stderr, "yield_pingpong: only %llu switches for %ld yields on one worker\n",
                     static_cast<unsigned long long>(switches), n);
        return 1;
    }
    weft_bench::result("yield_pingpong", int(rt.options().workers), n, weft_bench::ns_per_op(ms, n), ms,
                       weft_bench::peak_rss_kb(),
                       "switches=" + std::to_string(switches));
}
