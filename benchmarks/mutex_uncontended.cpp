// mutex_uncontended: one fiber locks and unlocks a weft::mutex n times (one op =
// lock + unlock + an increment), the floor of every mutex-protected section.
// `thread_ns` is the same loop on the plain main thread, `std_ns` the same loop
// with std::mutex on that thread, measured in this process for a same-run ratio.
// Peer: thread (std::mutex); Go and Boost.Fiber have no row for it.
// Usage: mutex_uncontended <n=100000000> <workers=1>
#include <mutex>
#include <string>

#include <weft/weft.hpp>

#include "bench.hpp"

namespace {
template <class M>
double run(M& m, long n, long& counter) {
    auto t0 = weft_bench::clk::now();
    for (long i = 0; i < n; ++i) {
        m.lock();
        ++counter;
        m.unlock();
    }
    return weft_bench::ms_since(t0);
}
}  // namespace

int main(int argc, char** argv) {
    long n = weft_bench::arg(argc, argv, 1, 100000000);
    long w = weft_bench::arg(argc, argv, 2, 1);
    // The measuring fiber never switches: by design here, so no stall warning.
    weft::runtime rt(weft::runtime_options{.workers = std::size_t(w), .stall_warning = std::chrono::milliseconds(-1)});
    weft::mutex m;
    long counter = 0;
    const double ms = rt.block_on([&] { return run(m, n, counter); });
    const double thread_ms = run(m, n, counter);
    std::mutex sm;
    const double std_ms = run(sm, n, counter);
    if (counter != 3 * n) return weft_bench::fail("mutex_uncontended", "lost increments");
    weft_bench::result("mutex_uncontended", int(rt.options().workers), n, weft_bench::ns_per_op(ms, n), ms,
                       weft_bench::peak_rss_kb(),
                       "thread_ns=" + std::to_string(weft_bench::ns_per_op(thread_ms, n)) +
                           " std_ns=" + std::to_string(weft_bench::ns_per_op(std_ms, n)));
}
