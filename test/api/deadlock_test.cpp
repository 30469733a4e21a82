// Where a wake-up can still come, the deadlock watch (src/diag/deadlock.hpp)
// must stay silent: a false report aborts this whole executable. Each case
// keeps the program quiet in every other respect for longer than the watch's
// 1 s confirmation, then lets the wake-up come and checks that it arrived.
// The reports themselves are tested in test/death/deadlock_death_test.cpp.
#include <sys/timerfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>

#include "runtime_fixture.hpp"

namespace {

using namespace std::chrono_literals;

// Longer than the watch's confirmation window (1 s).
constexpr auto quiet_for = 1300ms;

// A plain thread that does not call weft (it sleeps) may wake a fiber at any
// moment: the watch cannot tell it from a thread about to send.
TEST_P(RuntimeTest, DeadlockWatchWaitsForAThreadOutsideWeft) {
    weft::channel<int> ch(0);
    std::thread late([ch]() mutable {
        std::this_thread::sleep_for(quiet_for);
        ch.send(7);
    });
    EXPECT_EQ(rt.block_on([&] { return ch.recv(); }), std::optional<int>(7));
    late.join();
}

// A fiber parked on a descriptor may be woken by the kernel: a timerfd that
// expires later, with no weft timer and no other thread in the process.
TEST_P(RuntimeTest, DeadlockWatchWaitsForADescriptor) {
    const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    ASSERT_GE(fd, 0);
    itimerspec when{};
    when.it_value.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(quiet_for).count();
    when.it_value.tv_nsec = std::chrono::duration_cast<std::chrono::nanoseconds>(quiet_for % 1s).count();
    ASSERT_EQ(::timerfd_settime(fd, 0, &when, nullptr), 0);
    const std::uint64_t expirations = rt.block_on([fd] {
        auto waiter = weft::spawn([fd] {
            weft::io::wait_readable(fd);
            std::uint64_t n = 0;
            if (::read(fd, &n, sizeof n) != static_cast<ssize_t>(sizeof n)) throw std::runtime_error("timerfd read");
            return n;
        });
        return waiter.join();
    });
    ::close(fd);
    EXPECT_EQ(expirations, 1u);
}

// A spawn_blocking job is a running thread, though the fiber waiting for it is parked.
TEST_P(RuntimeTest, DeadlockWatchWaitsForABlockingJob) {
    const int v = rt.block_on([] {
        return weft::spawn_blocking([] {
            std::this_thread::sleep_for(quiet_for);
            return 5;
        });
    });
    EXPECT_EQ(v, 5);
}

// A callback timer (after) will send, though no fiber has a timer armed.
TEST_P(RuntimeTest, DeadlockWatchWaitsForAnAfterChannel) {
    const bool got = rt.block_on([] { return weft::after(quiet_for).recv().has_value(); });
    EXPECT_TRUE(got);
}

// A fiber of another runtime that sleeps, then wakes ours.
TEST_P(RuntimeTest, DeadlockWatchSeesEveryRuntime) {
    weft::runtime other(weft::runtime_options{.workers = 1});
    weft::channel<int> ch(0);
    other.spawn([ch]() mutable {
        weft::this_fiber::sleep_for(quiet_for);
        ch.send(9);
    }).detach();
    EXPECT_EQ(rt.block_on([&] { return ch.recv(); }), std::optional<int>(9));
}

TEST(DeadlockWatch, BadModeInTheEnvironmentThrows) {
    const char* old = std::getenv("WEFT_DEADLOCK");
    const std::string saved = old ? old : "";
    for (const char* bad : {"yes", "1", "Abort"}) {
        ::setenv("WEFT_DEADLOCK", bad, 1);
        EXPECT_THROW(weft::runtime(weft::runtime_options{.workers = 1}), std::invalid_argument) << bad;
    }
    for (const char* good : {"abort", "warn", "off", ""}) {
        ::setenv("WEFT_DEADLOCK", good, 1);
        EXPECT_NO_THROW(weft::runtime(weft::runtime_options{.workers = 1})) << good;
    }
    if (old) ::setenv("WEFT_DEADLOCK", saved.c_str(), 1);
    else ::unsetenv("WEFT_DEADLOCK");
}

}  // namespace
