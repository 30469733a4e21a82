// chan_pingpong: two fibers bounce a counter over two rendezvous channels;
// n round trips (2 sends, 2 receives each), as the Go and Boost.Fiber peers do.
// Usage: chan_pingpong <n=1000000> <workers=1>
#include <weft/weft.hpp>

#include "bench.hpp"

int main(int argc, char** argv) {
    long n = weft_bench::arg(argc, argv, 1, 1000000);
    long w = weft_bench::arg(argc, argv, 2, 1);
    weft::runtime rt(weft::runtime_options{.workers = std::size_t(w)});
    weft::channel<long> ping, pong;  // rendezvous, as Go's make(chan int)
    long v = 0;
    const double ms = rt.block_on([&] {
        auto echo = rt.spawn([&] {
            for (long x : ping) pong.send(x + 1);
        });
        auto t0 = weft_bench::clk::now();
        for (long i = 0; i < n; ++i) {
            ping.send(v);
            v = *pong.recv();
        }
        const double el = weft_bench::ms_since(t0);
        ping.close();
        echo.join();
        return el;
    });
    if (v != n) return weft_bench::fail("chan_pingpong", "lost messages");
    weft_bench::result("chan_pingpong", int(rt.options().workers), n, weft_bench::ns_per_op(ms, n), ms,
                       weft_bench::peak_rss_kb());
}
