// condvar_pingpong: two fibers take turns through one weft::mutex and one
// weft::condition_variable; n round trips (each side waits for its turn with the
// predicate form, flips it, notify_one), as the Go and Boost.Fiber peers do.
// Usage: condvar_pingpong <n=1000000> <workers=1>
#include <mutex>

#include <weft/weft.hpp>

#include "bench.hpp"

int main(int argc, char** argv) {
    long n = weft_bench::arg(argc, argv, 1, 1000000);
    long w = weft_bench::arg(argc, argv, 2, 1);
    weft::runtime rt(weft::runtime_options{.workers = std::size_t(w)});
    weft::mutex m;
    weft::condition_variable cv;
    bool ping_turn = true;
    long rounds = 0;
    const double ms = rt.block_on([&] {
        auto pong = rt.spawn([&] {
            for (long i = 0; i < n; ++i) {
                std::unique_lock<weft::mutex> lk(m);
                cv.wait(lk, [&] { return !ping_turn; });
                ping_turn = true;
                cv.notify_one();
            }
        });
        auto t0 = weft_bench::clk::now();
        for (long i = 0; i < n; ++i) {
            std::unique_lock<weft::mutex> lk(m);
            cv.wait(lk, [&] { return ping_turn; });
            ping_turn = false;
            ++rounds;
            cv.notify_one();
        }
        pong.join();
        return weft_bench::ms_since(t0);
    });
    if (rounds != n) return weft_bench::fail("condvar_pingpong", "wrong round count");
    weft_bench::result("condvar_pingpong", int(rt.options().workers), n, weft_bench::ns_per_op(ms, n), ms,
                       weft_bench::peak_rss_kb());
}
