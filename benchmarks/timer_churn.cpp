// timer_churn: from one fiber, create a weft::timer 1 s ahead and cancel it, n
// times; one op = create + cancel of one timer (deadlines that are almost never
// reached: timeouts around an operation that succeeds). Fails if a cancel()
// finds its timer already expired.
// Peer: Go (time.AfterFunc(time.Second, f) + Stop()).
// Usage: timer_churn <n=1000000> <workers=1>   (workers 0 = the runtime's default)
#include <chrono>
#include <string>

#include <weft/weft.hpp>

#include "bench.hpp"

int main(int argc, char** argv) {
    long n = weft_bench::arg(argc, argv, 1, 1000000);
    long w = weft_bench::arg(argc, argv, 2, 1);
    weft::runtime rt(weft::runtime_options{.workers = std::size_t(w)});
    long not_pending = 0;
    double ms = rt.block_on([&] {
        auto t0 = weft_bench::clk::now();
        for (long i = 0; i < n; ++i) {
            weft::timer t(std::chrono::seconds(1));
            if (!t.cancel()) ++not_pending;
        }
        return weft_bench::ms_since(t0);
    });
    if (not_pending != 0)
        return weft_bench::fail("timer_churn", std::to_string(not_pending) + " timers were not pending at cancel()");
    weft_bench::result("timer_churn", int(rt.options().workers), n, weft_bench::ns_per_op(ms, n), ms,
                       weft_bench::peak_rss_kb());
}
