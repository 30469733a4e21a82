// hello: the std::thread -> weft::thread rename.
//
// This is an ordinary std::thread program with `std::thread` replaced by
// `weft::thread` and `std::this_thread` by `weft::this_thread`. Nothing else
// changes: the threads become fibers of weft's default runtime (started on
// first use), and join() works from the plain main thread.
#include <atomic>
#include <cstdio>
#include <vector>

#include <weft/weft.hpp>

int main() {
    constexpr int n_threads = 8;
    constexpr int per_thread = 10000;
    std::atomic<long> counter{0};

    std::vector<weft::thread> threads;  // was: std::vector<std::thread>
    for (int i = 0; i < n_threads; ++i)
        threads.emplace_back([&counter, i] {
            for (int k = 0; k < per_thread; ++k) {
                counter.fetch_add(1, std::memory_order_relaxed);  // relaxed: only the total matters, read after join
                if (k % 1000 == 0) weft::this_thread::yield();  // was: std::this_thread::yield()
            }
            std::printf("thread %d (fiber %llu) done\n", i,
                        (unsigned long long)weft::this_thread::get_id().value());
        });
    for (auto& t : threads) t.join();

    long got = counter.load(std::memory_order_relaxed);
    std::printf("counter = %ld (want %d)\n", got, n_threads * per_thread);
    return got == long(n_threads) * per_thread ? 0 : 1;
}
