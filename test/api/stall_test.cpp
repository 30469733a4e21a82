// The stall warning: a fiber that blocks its worker's OS thread is reported
// by name once the worker has made no progress for runtime_options::stall_warning.
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
    }
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(err.find("without switching"), std::string::npos) << err;
}
