/// @file
/// Helpers shared by the synchronization tests in api/ (mutex, condition
/// variable, semaphore, latch/barrier, wait_group, call_once, channels): the "shape" of
/// a test (fibers, plain threads or both), running a body in a shape,
/// shutting a runtime down with a bound, counting parked fibers from
/// runtime::dump_json(), and small checks for std::system_error and try_lock
/// from another thread. Includes only the public API (through
/// runtime_fixture.hpp) and std, so the api/ tests that use it still prove
/// the boundary.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

namespace weft_test {

/// Who runs a test's bodies: fibers of the test's runtime, plain threads, or both at once.
enum class shape { fibers, threads, mixed };
inline constexpr shape all_shapes[] = {shape::fibers, shape::threads, shape::mixed};

inline const char* name_of(shape s) {
    switch (s) {
        case shape::fibers: return "fibers only";
        case shape::threads: return "threads only";
        case shape::mixed: return "fibers and threads";
    }
    return "?";
}

/// Runs body(i) for i in [0, n) at once: on fibers of `rt`, plain threads, or
/// half and half (the lowest indices on threads); returns when all have returned.
template <class Body>
void run_on(weft::runtime& rt, shape s, int n, Body body) {
    const int threads = s == shape::fibers ? 0 : s == shape::threads ? n : n / 2;
    std::vector<weft::join_handle<void>> fibers;
    std::vector<std::thread> ts;
    for (int i = threads; i < n; ++i) fibers.push_back(rt.spawn([&body, i] { body(i); }));
    for (int i = 0; i < threads; ++i) ts.emplace_back([&body, i] { body(i); });
    for (auto& h : fibers) h.join();
    for (auto& t : ts) t.join();
}

/// Shuts `rt` down from a helper thread; fails and aborts if that takes over
/// 10 s (a waiter that shutdown could not cancel), so a bug fails the test
/// instead of hanging the executable.
inline void shutdown_promptly(weft::runtime& rt) {
    std::atomic<bool> returned{false};
    std::thread stopper([&] {
        rt.shutdown();
        returned.store(true);
    });
    if (!eventually([&] { return returned.load(); }, std::chrono::seconds(10))) {
        ADD_FAILURE() << "shutdown() did not return within 10 s; dump: " << rt.dump_json();
        stopper.detach();
        std::abort();
    }
    stopper.join();
}

/// How many of `rt`'s fibers are parked with wait reason `why` right now.
inline std::size_t count_parked(const weft::runtime& rt, std::string_view why) {
    const std::string dump = rt.dump_json();
    const std::string needle = "\"state\":\"parked\",\"wait_reason\":\"" + std::string(why) + "\"";
    std::size_t n = 0;
    for (auto at = dump.find(needle); at != std::string::npos; at = dump.find(needle, at + 1)) ++n;
    return n;
}

/// Runs op() and expects std::system_error with `expected`.
inline void expect_system_error(const std::function<void()>& op, std::errc expected) {
    try {
        op();
        ADD_FAILURE() << "no exception; expected " << std::make_error_code(expected).message();
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), expected) << e.what();
    }
}

/// try_lock() from a fresh plain thread (an owner distinct from every fiber):
/// false while anyone else holds `m`.
template <class M>
bool try_lock_from_thread(M& m) {
    bool got = false;
    std::thread([&] {
        got = m.try_lock();
        if (got) m.unlock();
    }).join();
    return got;
}

/// Runs f on a fiber of rt or on a plain thread; join() (or the destructor)
/// waits for it, so a failed EXPECT never leaves it running.
class runner {
public:
    template <class F>
    runner(weft::runtime& rt, bool on_fiber, F f) {
        if (on_fiber) fiber_.emplace(rt.spawn(std::move(f)));
        else thread_ = std::thread(std::move(f));
    }
    runner(const runner&) = delete;
    runner& operator=(const runner&) = delete;
    ~runner() { join(); }
    void join() {
        if (fiber_) {
            fiber_->join();
            fiber_.reset();
        }
        if (thread_.joinable()) thread_.join();
    }

private:
    std::optional<weft::join_handle<void>> fiber_;
    std::thread thread_;
};

/// A kind of channel (rendezvous, bounded(n) or unbounded), named for SCOPED_TRACE.
struct channel_kind {
    const char* name;
    bool unbounded;
    std::size_t capacity;
    template <class T>
    weft::channel<T> make() const {
        return unbounded ? weft::channel<T>::unbounded() : weft::channel<T>(capacity);
    }
};

}  // namespace weft_test
