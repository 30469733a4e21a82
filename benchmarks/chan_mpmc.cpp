// chan_mpmc: 4 producer and 4 consumer fibers share one buffered channel
// (capacity 1024); n ints in total, checked by their sum, as the Go and
// Boost.Fiber peers do. Usage: chan_mpmc <n=10000000> <workers=2>
#include <string>
#include <vector>

#include <weft/weft.hpp>

#include "bench.hpp"

int main(int argc, char** argv) {
    constexpr long P = 4, C = 4, Cap = 1024;
    long n = weft_bench::arg(argc, argv, 1, 10000000) / (P * C) * (P * C);
    long w = weft_bench::arg(argc, argv, 2, 2);
    weft::runtime rt(weft::runtime_options{.workers = std::size_t(w)});
    weft::channel<long> ch(Cap);
    std::vector<long> sums(C);
    const double ms = rt.block_on([&] {
        auto t0 = weft_bench::clk::now();
        std::vector<weft::join_handle<void>> hs;
        for (long p = 0; p < P; ++p)
            hs.push_back(rt.spawn([&, p] {
                for (long i = p * (n / P); i < (p + 1) * (n / P); ++i) ch.send(i);
            }));
        for (long c = 0; c < C; ++c)
            hs.push_back(rt.spawn([&, c] {
                long s = 0;
                for (long i = 0; i < n / C; ++i) s += *ch.recv();
                sums[c] = s;
            }));
        for (auto& h : hs) h.join();
        return weft_bench::ms_since(t0);
    });
    long total = 0;
    for (long s : sums) total += s;
    if (total != n * (n - 1) / 2) return weft_bench::fail("chan_mpmc", "wrong sum");
    weft_bench::result("chan_mpmc", int(rt.options().workers), n, weft_bench::ns_per_op(ms, n), ms,
                       weft_bench::peak_rss_kb(),
                       "producers=" + std::to_string(P) + " consumers=" + std::to_string(C) + " cap=" + std::to_string(Cap));
}
