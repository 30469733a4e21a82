// sleep_lateness: n sleeper fibers each loop until `secs` have passed, sleeping
// a random 1-50 ms (per-fiber std::mt19937 seeded with its index) and recording
// how late each sleep woke (elapsed - requested, ns), while `workers` CPU-bound
// fibers spin, yielding every ~100 us. ns_per_op = p99 lateness in ns; extra
// keys sleeps, p50_us, p99_us, max_us. Fails if a sleep returned early.
// Peer: Go (time.Sleep in n goroutines, runtime.Gosched spinners); the same
// steps in the same order: spinners first, then sleepers; wait for the
// sleepers, stop and join the spinners; total_ms covers all of it.
// Usage: sleep_lateness <n=10000> <workers=2> <secs=5>   (workers 0 = the runtime's default)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <weft/weft.hpp>

#include "bench.hpp"

int main(int argc, char** argv) {
    using namespace std::chrono;
    long n = weft_bench::arg(argc, argv, 1, 10000);
    long w = weft_bench::arg(argc, argv, 2, 2);
    long secs = weft_bench::arg(argc, argv, 3, 5);
    weft::runtime rt(weft::runtime_options{.workers = std::size_t(w)});
    const long workers = long(rt.options().workers);

    std::vector<std::vector<std::int64_t>> lates(std::size_t(n), std::vector<std::int64_t>{});
    double total_ms = rt.block_on([&] {
        std::atomic<bool> stop{false};
        std::vector<weft::join_handle<void>> burn;
        for (long i = 0; i < workers; ++i)
            burn.push_back(weft::spawn([&stop] {
                long x = 0;
                // relaxed: a flag polled in a loop; join orders everything else.
                while (!stop.load(std::memory_order_relaxed)) {
                    auto t = weft_bench::clk::now();
                    while (weft_bench::clk::now() - t < microseconds(100)) ++x;
                    weft::this_fiber::yield();
                }
                asm volatile("" : : "r"(x));  // keep the work (Go: `_ = x`)
            }));
        auto t0 = weft_bench::clk::now();
        auto deadline = t0 + seconds(secs);
        std::vector<weft::join_handle<void>> sleepers;
        sleepers.reserve(std::size_t(n));
        for (long i = 0; i < n; ++i)
            sleepers.push_back(weft::spawn([&lates, deadline, i] {
                std::mt19937 r(static_cast<std::uint32_t>(i));
                std::uniform_int_distribution<int> ms(1, 50);
                auto& mine = lates[std::size_t(i)];
                while (weft_bench::clk::now() < deadline) {
                    auto d = milliseconds(ms(r));
                    auto s = weft_bench::clk::now();
                    weft::this_fiber::sleep_for(d);
                    mine.push_back(duration_cast<nanoseconds>(weft_bench::clk::now() - s - d).count());
                }
            }));
        for (auto& h : sleepers) h.join();
        stop.store(true, std::memory_order_relaxed);
        for (auto& h : burn) h.join();
        return weft_bench::ms_since(t0);
    });

    std::vector<std::int64_t> all;
    for (auto& l : lates) all.insert(all.end(), l.begin(), l.end());
    if (all.empty()) return weft_bench::fail("sleep_lateness", "no sleep completed (secs = 0?)");
    std::sort(all.begin(), all.end());
    if (all.front() < 0)
        return weft_bench::fail("sleep_lateness", "a sleep returned " + std::to_string(-all.front()) + " ns early");
    // As the Go peer: the element at index p * (len - 1), in microseconds.
    auto q = [&](double p) { return double(all[std::size_t(p * double(all.size() - 1))]) / 1e3; };
    char extra[160];
    std::snprintf(extra, sizeof extra, "sleeps=%zu p50_us=%.0f p99_us=%.0f max_us=%.0f", all.size(), q(0.5), q(0.99),
                  q(1));
    weft_bench::result("sleep_lateness", int(workers), n, q(0.99) * 1e3, total_ms, weft_bench::peak_rss_kb(), extra);
}
