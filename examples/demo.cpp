// demo: a short tour of the runtime on real workloads, with human-readable figures.
//   1. skynet: a 10-ary tree of 1,111,111 fibers (1M leaves), each node joining its 10 children
//   2. 100,000 fibers spawned and joined from one fiber
//   3. Go's concurrent prime sieve on rendezvous channels (a fiber per prime), ended by select
//   4. the runtime's counters
// Exits non-zero when a result is wrong. Worker count: WEFT_WORKERS or the CPU count.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <vector>

#include <weft/weft.hpp>

namespace {

using clk = std::chrono::steady_clock;

double ms_since(clk::time_point t0) { return std::chrono::duration<double, std::milli>(clk::now() - t0).count(); }

std::uint64_t skynet(std::uint64_t num, std::uint64_t size) {
    if (size <= 1) return num;
    std::array<weft::join_handle<std::uint64_t>, 10> kids;
    for (std::uint64_t i = 0; i < 10; ++i) kids[i] = weft::spawn(skynet, num + i * (size / 10), size / 10);
    std::uint64_t sum = 0;
    for (auto& k : kids) sum += k.join();
    return sum;
}

/// Sends every number from 2 up on out until `done` is closed.
void generate(const weft::channel<int>& out, const weft::channel<int>& done) {
    for (int i = 2;; ++i)
        if (weft::select(weft::on_send(out, i), weft::on_recv(done)) == 1) return;
}

/// Passes on what `in` gives that `prime` does not divide, until `done` is closed.
void filter(const weft::channel<int>& in, const weft::channel<int>& out, int prime, const weft::channel<int>& done) {
    for (;;) {
        std::optional<int> v;
        if (weft::select(weft::on_recv(in, [&](std::optional<int> x) { v = x; }), weft::on_recv(done)) == 1) return;
        if (*v % prime != 0 && weft::select(weft::on_send(out, *v), weft::on_recv(done)) == 1) return;
    }
}

}  // namespace

int main() {
    weft::runtime rt(weft::runtime_options{.name = "demo"});
    const auto& opt = rt.options();
    std::printf("weft demo: %zu worker thread(s), %zu KiB stacks, %zu guard page(s)\n", opt.workers,
                opt.stack_size / 1024, opt.guard_pages);
    int bad = 0;

    // 1. skynet
    constexpr std::uint64_t leaves = 1000000;
    auto t0 = clk::now();
    std::uint64_t sum = rt.block_on([] { return skynet(0, leaves); });
    double ms = ms_since(t0);
    std::uint64_t want = leaves * (leaves - 1) / 2;
    std::printf("\nskynet (join form): %llu leaves, 1,111,111 fibers\n", (unsigned long long)leaves);
    std::printf("  sum      = %llu (%s)\n", (unsigned long long)sum, sum == want ? "correct" : "WRONG");
    std::printf("  time     = %.1f ms  (%.0f ns per fiber)\n", ms, ms * 1e6 / 1111111.0);
    bad += sum != want;

    // 2. spawn + join
    constexpr long n = 100000;
    std::atomic<long> ran{0};
    t0 = clk::now();
    rt.block_on([&] {
        std::vector<weft::join_handle<void>> hs;
        hs.reserve(n);
        for (long i = 0; i < n; ++i)
            hs.push_back(weft::spawn([&ran] { ran.fetch_add(1, std::memory_order_relaxed); }));  // relaxed: read after the joins
        for (auto& h : hs) h.join();
    });
    ms = ms_since(t0);
    long got = ran.load(std::memory_order_relaxed);
    std::printf("\nspawn + join: %ld fibers from one fiber\n", n);
    std::printf("  ran      = %ld (%s)\n", got, got == n ? "correct" : "WRONG");
    std::printf("  time     = %.1f ms  (%.0f ns per spawn+join)\n", ms, ms * 1e6 / double(n));
    bad += got != n;

    // 3. prime sieve
    constexpr int primes = 1000;
    t0 = clk::now();
    int last = rt.block_on([] {
        weft::channel<int> done;  // closed to stop every stage
        std::vector<weft::join_handle<void>> stages;
        weft::channel<int> ch;
        stages.push_back(weft::spawn([ch, done] { generate(ch, done); }));
        int p = 0;
        for (int i = 0; i < primes; ++i) {
            p = *ch.recv();
            weft::channel<int> next;
            stages.push_back(weft::spawn([ch, next, p, done] { filter(ch, next, p, done); }));
            ch = next;
        }
        done.close();
        for (auto& s : stages) s.join();
        return p;
    });
    ms = ms_since(t0);
    std::printf("\nprime sieve: the first %d primes through a chain of %d fibers and rendezvous channels\n", primes,
                primes + 1);
    std::printf("  last     = %d (%s)\n", last, last == 7919 ? "correct" : "WRONG");
    std::printf("  time     = %.1f ms\n", ms);
    bad += last != 7919;

    // 4. counters
    auto st = rt.stats();
    std::printf("\nruntime stats\n");
    std::printf("  workers        = %zu\n", st.workers);
    std::printf("  spawned        = %llu\n", (unsigned long long)st.spawned);
    std::printf("  switches       = %llu\n", (unsigned long long)st.switches);
    std::printf("  steals         = %llu\n", (unsigned long long)st.steals);
    std::printf("  parks          = %llu\n", (unsigned long long)st.parks);
    std::printf("  worker sleeps  = %llu\n", (unsigned long long)st.worker_sleeps);
    std::printf("  fibers alive   = %llu\n", (unsigned long long)st.fibers_alive);
    std::printf("  stacks mapped  = %llu\n", (unsigned long long)st.stacks_mapped);
    std::printf("  guard mode     = %s\n", st.guard_mode.c_str());

    if (bad) std::printf("\ndemo: %d check(s) FAILED\n", bad);
    return bad ? 1 : 0;
}
