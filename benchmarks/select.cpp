// select: one consumer fiber takes n ints from 4 buffered channels (capacity
// 1024 each) with select(on_recv(c0), ..., on_recv(c3)); each channel is fed
// by its own producer fiber, n/4 ints each. One op = one select that
// received a value; the sum is checked.
// The Go version is benchmarks/peers/go/select (it lives in this repository:
// the shared peers kit, ../shared/peers, has no select workload); scripts/
// bench.sh runs both side by side.
// Usage: select <n=10000000> <workers=2>
#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <weft/weft.hpp>

#include "bench.hpp"

int main(int argc, char** argv) {
    constexpr long P = 4, Cap = 1024;
    long n = weft_bench::arg(argc, argv, 1, 10000000) / P * P;
    long w = weft_bench::arg(argc, argv, 2, 2);
    // With 2+ workers the consumer may find a value ready on every select and so
    // never switch for long stretches: by design here, so no stall warning.
    weft::runtime rt(weft::runtime_options{.workers = std::size_t(w), .stall_warning = std::chrono::milliseconds(-1)});
    std::array<weft::channel<long>, P> cs{weft::channel<long>(Cap), weft::channel<long>(Cap),
                                          weft::channel<long>(Cap), weft::channel<long>(Cap)};
    long sum = 0, got = 0;
    const double ms = rt.block_on([&] {
        auto t0 = weft_bench::clk::now();
        std::vector<weft::join_handle<void>> hs;
        for (long p = 0; p < P; ++p)
            hs.push_back(rt.spawn([&, p] {
                for (long i = p * (n / P); i < (p + 1) * (n / P); ++i) cs[p].send(i);
            }));
        auto take = [&](std::optional<long> v) {
            sum += *v;  // never closed
            ++got;
        };
        for (long k = 0; k < n; ++k)
            weft::select(weft::on_recv(cs[0], take), weft::on_recv(cs[1], take), weft::on_recv(cs[2], take),
                         weft::on_recv(cs[3], take));
        const double el = weft_bench::ms_since(t0);
        for (auto& h : hs) h.join();
        return el;
    });
    if (got != n || sum != n * (n - 1) / 2)
        return weft_bench::fail("select", "sum " + std::to_string(sum) + " of " + std::to_string(got) + " values, want " +
                                              std::to_string(n * (n - 1) / 2) + " of " + std::to_string(n));
    weft_bench::result("select", int(rt.options().workers), n, weft_bench::ns_per_op(ms, n), ms,
                       weft_bench::peak_rss_kb(), "producers=" + std::to_string(P) + " cap=" + std::to_string(Cap));
}
