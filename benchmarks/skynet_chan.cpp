// skynet, channel form: the workload of the Go and Boost.Fiber peers
// (github.com/atemerev/skynet). A 10-ary tree with n leaves: each inner node
// makes one rendezvous channel, spawns its 10 children as detached fibers,
// receives their 10 sums from that channel and sends its own sum on its
// parent's; a leaf sends its number. 1,111,111 fibers for n = 1M; total_ms is
// the headline. Prints name=skynet form=chan, next to the peers' skynet rows
// (skynet.cpp is the join form: same tree, no channels).
// Usage: skynet_chan <n=1000000> <workers=1>
//
// A child gets a reference to its parent's channel handle, not a copy (as the
// Boost.Fiber peer does; Go passes the channel pointer): the parent's frame
// outlives every send to it, since it returns only after receiving all 10
// values, and a send that completed does not touch the channel again
// (src/chan/chan.hpp, C4). A copy would add two atomic reference-count
// updates on one shared word per child.
#include <cstdint>
#include <functional>
#include <string>

#include <weft/weft.hpp>

#include "bench.hpp"

namespace {

using chan = weft::channel<std::uint64_t>;

void skynet(const chan& out, std::uint64_t num, std::uint64_t size) {
    if (size <= 1) {
        out.send(num);
        return;
    }
    chan rc;  // rendezvous, as Go's make(chan int)
    for (std::uint64_t i = 0; i < 10; ++i)
        weft::spawn(skynet, std::cref(rc), num + i * (size / 10), size / 10).detach();
    std::uint64_t sum = 0;
    for (int i = 0; i < 10; ++i) sum += *rc.recv();
    out.send(sum);
}

}  // namespace

int main(int argc, char** argv) {
    long n = weft_bench::arg(argc, argv, 1, 1000000);
    long w = weft_bench::arg(argc, argv, 2, 1);
    weft::runtime rt(weft::runtime_options{.workers = std::size_t(w)});
    std::uint64_t sum = 0;
    double ms = rt.block_on([&] {
        auto t0 = weft_bench::clk::now();
        chan c;
        weft::spawn(skynet, std::cref(c), std::uint64_t(0), std::uint64_t(n)).detach();
        sum = *c.recv();
        return weft_bench::ms_since(t0);
    });
    std::uint64_t want = std::uint64_t(n) * std::uint64_t(n > 0 ? n - 1 : 0) / 2;
    if (sum != want)
        return weft_bench::fail("skynet", "sum " + std::to_string(sum) + ", want " + std::to_string(want));
    auto st = rt.stats();
    weft_bench::result("skynet", int(rt.options().workers), n, weft_bench::ns_per_op(ms, n), ms, weft_bench::peak_rss_kb(),
                       "sum=" + std::to_string(sum) + " form=chan spawned=" + std::to_string(st.spawned) +
                           " steals=" + std::to_string(st.steals));
}
