/// @file
/// Helpers shared by the test executables: the `RuntimeTest` fixture
/// (parameterised over worker counts, after marl), bounded waits, and the
/// scaling of large counts under sanitizers. Includes only the public API, so
/// the api/ tests that use it still prove the boundary.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

namespace weft_test {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif

#if defined(__SANITIZE_THREAD__)
inline constexpr bool thread_sanitized = true;
#else
inline constexpr bool thread_sanitized = false;
#endif

/// How long a test waits for something that should happen "soon" before it
/// fails. Generous on purpose: it bounds a hang, it does not measure speed.
inline constexpr std::chrono::seconds patience{5};

/// A count of fibers (or iterations) scaled for the build: divided by 100
/// under ASan/TSan, and under TSan also capped at 4000, because TSan tracks
/// every fiber as a thread and dies beyond 8128 live ones
/// ("ThreadSanitizer: Thread limit (8128 threads) exceeded").
constexpr std::size_t scaled(std::size_t n) {
    if constexpr (!sanitized) return n;
    std::size_t s = std::max<std::size_t>(n / 100, 1);
    if constexpr (thread_sanitized) s = std::min<std::size_t>(s, 4000);
    return s;
}

/// On a plain thread: polls pred() every millisecond until it holds or
/// `limit` passed. Returns the final value of pred().
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = patience) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) return pred();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

/// On a fiber (or a plain thread): yields until pred() holds or `limit`
/// passed. Returns the final value of pred(). Yielding, not sleeping, so that
/// on a one-worker runtime the fibers that make pred() true get to run.
template <class Pred>
bool yield_until(Pred pred, std::chrono::milliseconds limit = patience) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) return pred();
        weft::this_fiber::yield();
    }
    return true;
}

}  // namespace weft_test

/// A fresh runtime per test, over the worker counts given by the
/// INSTANTIATE_TEST_SUITE_P of the executable. TearDown checks that no fiber
/// outlived the test (detached ones get `patience` to finish).
class RuntimeTest : public testing::TestWithParam<std::size_t> {
protected:
    void TearDown() override {
        const bool drained = weft_test::eventually([&] { return rt.stats().fibers_alive == 0; });
        ASSERT_TRUE(drained) << "fibers still alive " << weft_test::patience.count()
                             << " s after the test: " << rt.stats().fibers_alive << "\n"
                             << rt.dump_json();
    }

    std::size_t workers() const { return GetParam(); }

    weft::runtime rt{weft::runtime_options{.workers = GetParam()}};
};

/// Names instantiations "1Workers", "2Workers", ... instead of /0, /1.
inline std::string worker_count_name(const testing::TestParamInfo<std::size_t>& info) {
    return std::to_string(info.param) + "Workers";
}
