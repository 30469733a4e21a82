// skynet: 10-ary tree of fibers with n leaves (github.com/atemerev/skynet), join
// form: each inner node spawns its 10 children and sums their join() values; a
// leaf returns its number. 1,111,111 fibers for n = 1M; total_ms is the headline.
// Peers: Go and Boost.Fiber use a channel per node instead of join (form=chan).
// Usage: skynet <n=1000000> <workers=1>
#include <array>
#include <cstdint>

#include <weft/weft.hpp>

#include "bench.hpp"

namespace {

std::uint64_t skynet(std::uint64_t num, std::uint64_t size) {
    if (size <= 1) return num;
    std::array<weft::join_handle<std::uint64_t>, 10> kids;
    for (std::uint64_t i = 0; i < 10; ++i) kids[i] = weft::spawn(skynet, num + i * (size / 10), size / 10);
    std::uint64_t sum = 0;
    for (auto& k : kids) sum += k.join();
    return sum;
}

}  // namespace

int main(int argc, char** argv) {
    long n = weft_bench::arg(argc, argv, 1, 1000000);
    long w = weft_bench::arg(argc, argv, 2, 1);
    weft::runtime rt(weft::runtime_options{.workers = std::size_t(w)});
    std::uint64_t sum = 0;
    double ms = rt.block_on([&] {
        auto t0 = weft_bench::clk::now();
        sum = weft::spawn(skynet, std::uint64_t(0), std::uint64_t(n)).join();
        return weft_bench::ms_since(t0);
    });
    std::uint64_t want = std::uint64_t(n) * std::uint64_t(n > 0 ? n - 1 : 0) / 2;
    if (sum != want)
        return weft_bench::fail("skynet", "sum " + std::to_string(sum) + ", want " + std::to_string(want));
    auto st = rt.stats();
    weft_bench::result("skynet", int(rt.options().workers), n, weft_bench::ns_per_op(ms, n), ms, weft_bench::peak_rss_kb(),
                       "sum=" + std::to_string(sum) + " form=join spawned=" + std::to_string(st.spawned) +
                           " steals=" + std::to_string(st.steals));
}
