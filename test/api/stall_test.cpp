// The stall warning: a fiber that blocks its worker's OS thread is reported
// by name once the worker has made no progress for runtime_options::stall_warning.
#include <time.h>

#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

using namespace std::chrono_literals;

TEST(StallWarning, NamesTheFiberThatBlocksItsWorker) {
    testing::internal::CaptureStderr();
    {
        weft::runtime rt(weft::runtime_options{.workers = 1, .stall_warning = 20ms});
        rt.block_on([] {
            weft::this_fiber::set_name("sleepy");
            weft::this_fiber::yield();  // registered (named in reports) once it has been suspended
            std::this_thread::sleep_for(300ms);  // blocks the worker: what the warning is for
        });
    }
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("'sleepy' for"), std::string::npos) << err;
    EXPECT_NE(err.find("without switching"), std::string::npos) << err;
    EXPECT_NE(err.find("asleep in the kernel"), std::string::npos) << err;  // S4: sleep_for is not a computation
}

namespace {

/// CPU time of the calling thread.
std::chrono::nanoseconds thread_cpu_time() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

}  // namespace

TEST(StallWarning, TellsALongComputationFromABlockedThread) {
    testing::internal::CaptureStderr();
    {
        weft::runtime rt(weft::runtime_options{.workers = 1, .stall_warning = 20ms});
        rt.block_on([] {
            weft::this_fiber::set_name("busy");
            weft::this_fiber::yield();
            // 150 ms on the CPU (not of wall time: a loaded machine may give the thread less), never switching.
            const auto cpu_until = thread_cpu_time() + 150ms;
            const auto give_up = std::chrono::steady_clock::now() + 10s;
            while (thread_cpu_time() < cpu_until && std::chrono::steady_clock::now() < give_up) {
            }
        });
    }
    const std::string err = testing::internal::GetCapturedStderr();
    if (err.find("the machine is overloaded") != std::string::npos)
        GTEST_SKIP() << "the machine gave the worker too little CPU to judge: " << err;
    EXPECT_NE(err.find("'busy' for"), std::string::npos) << err;
    EXPECT_NE(err.find("a long computation"), std::string::npos) << err;
    EXPECT_EQ(err.find("asleep in the kernel"), std::string::npos) << err;
}

TEST(StallWarning, QuietForAFiberThatYieldsWithNobodyToYieldTo) {
    // Each yield is a scheduling point, though with nothing else runnable none
    // switches: the worker holds up nobody (S1 counts those yields).
    testing::internal::CaptureStderr();
    long yields = 0;
    {
        weft::runtime rt(weft::runtime_options{.workers = 1, .stall_warning = 20ms});
        yields = rt.block_on([] {
            weft::this_fiber::set_name("polite");
            long n = 0;
            const auto until = std::chrono::steady_clock::now() + 150ms;
            while (std::chrono::steady_clock::now() < until) {
                weft::this_fiber::yield();
                ++n;
            }
            return n;
        });
    }
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_GT(yields, 0);
    EXPECT_EQ(err.find("without switching"), std::string::npos) << err;
}

TEST(StallWarning, QuietForFibersThatSwitchAndWhenOff) {
    testing::internal::CaptureStderr();
    {
        weft::runtime rt(weft::runtime_options{.workers = 1, .stall_warning = 20ms});
        rt.block_on([] {
            const auto until = std::chrono::steady_clock::now() + 150ms;
            while (std::chrono::steady_clock::now() < until) weft::this_fiber::sleep_for(1ms);
        });
        weft::runtime off(weft::runtime_options{.workers = 1, .stall_warning = -1ms});
        off.block_on([] { std::this_thread::sleep_for(100ms); });
        // With 2 workers the monitor runs for the I/O backstop (S6) but stays quiet;
        // milliseconds::min() is "off" too, with no overflow (UBSan checks).
        weft::runtime off2(weft::runtime_options{.workers = 2, .stall_warning = std::chrono::milliseconds::min()});
        off2.block_on([] { std::this_thread::sleep_for(100ms); });
    }
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(err.find("without switching"), std::string::npos) << err;
}
