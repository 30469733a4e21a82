// weft::io::wait_readable / wait_writable / io::close against
// include/weft/io.hpp, on pipes and eventfds (descriptors weft's sockets do not
// wrap, so the one-shot path of the reactor): a fiber parks until a writer
// (fiber or plain thread) makes the pipe readable; many fiber pairs ping-pong
// through pipes (every wake-up must come from the reactor: no fiber spins);
// a full pipe parks the writer until a reader drains it; a deadline throws
// timed_out (never early); io::close wakes a parked fiber with
// bad_file_descriptor; a descriptor closed with ::close and reused by a new
// pipe is waited on correctly; a negative or closed descriptor throws; a regular
// file is always ready (as in poll(2)); a deadline already past still reports
// readiness that is there, and a system_clock deadline long past times out;
// plain threads use poll(2) with the same contract; shutdown cancels a fiber
// parked on a descriptor. Public API only.
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "child_process.hpp"
#include "runtime_fixture.hpp"

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

namespace {

struct pipe_pair {
    int r = -1, w = -1;
    pipe_pair() {
        int fds[2];
        if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
        r = fds[0];
        w = fds[1];
    }
    ~pipe_pair() {
        if (r >= 0) weft::io::close(r);
        if (w >= 0) weft::io::close(w);
    }
    pipe_pair(const pipe_pair&) = delete;
    pipe_pair& operator=(const pipe_pair&) = delete;
};

/// Reads one byte, parking while the pipe is empty.
char read_byte(int fd) {
    char c = 0;
    for (;;) {
        const ssize_t n = ::read(fd, &c, 1);
        if (n == 1) return c;
        if (n == 0) throw std::runtime_error("unexpected end of pipe");
        if (errno != EAGAIN) throw std::system_error(errno, std::generic_category(), "read");
        weft::io::wait_readable(fd);
    }
}

void write_byte(int fd, char c) {
    for (;;) {
        if (::write(fd, &c, 1) == 1) return;
        if (errno != EAGAIN) throw std::system_error(errno, std::generic_category(), "write");
        weft::io::wait_writable(fd);
    }
}

std::errc code_of(const std::system_error& e) { return static_cast<std::errc>(e.code().value()); }

}  // namespace

TEST_P(RuntimeTest, IoWaitReadableParksUntilAThreadWrites) {
    pipe_pair p;
    std::atomic<bool> started{false}, done{false};
    auto h = rt.spawn([&] {
        started = true;
        const char c = read_byte(p.r);
        done = true;
        return c;
    });
    // Causal, not timed: the reader has begun, and 50 ms later it has still not returned
    // (a loaded machine may start it late, but it can never finish before the write).
    while (!started) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(done);
    write_byte(p.w, 'x');  // a plain thread: poll(2) path if it had to wait
    EXPECT_EQ(h.join(), 'x');
    EXPECT_TRUE(done);
}

// A fiber that yields in a loop (on every worker) does not starve a fiber
// whose descriptor became ready: busy workers poll the reactor, yields
// included (worker.hpp W7).
TEST_P(RuntimeTest, IoReadinessIsSeenWhileEveryWorkerYields) {
    pipe_pair p;
    std::atomic<bool> got{false};
    auto reader = rt.spawn([&] {
        const char c = read_byte(p.r);
        got = true;
        return c;
    });
    std::vector<weft::join_handle<bool>> spinners;
    for (std::size_t i = 0; i < GetParam(); ++i)
        spinners.push_back(rt.spawn([&] { return weft_test::yield_until([&] { return got.load(); }); }));
    std::this_thread::sleep_for(20ms);  // the reader is parked, the spinners spin
    write_byte(p.w, 'y');
    for (auto& s : spinners) EXPECT_TRUE(s.join());
    EXPECT_EQ(reader.join(), 'y');
}

namespace {
/// Computes without a yield point until `stop` or 10 s: a fiber that holds its worker.
bool hold_the_worker_until(const std::atomic<bool>& stop) {
    const auto limit = clk::now() + 10s;
    while (!stop.load() && clk::now() < limit) {
    }
    return stop.load();
}

// reactor.hpp E9: the blocking poller wakes for one fiber that then computes
// without switching; the other worker, asleep on its futex, must be woken (by
// the stall monitor's backstop) to take over the poller role, or a second
// descriptor's readiness waits for the computation (it did: 1.4 s). Causal:
// the second reader returns while the first still holds its worker.
void readiness_seen_while_the_former_poller_computes(weft::runtime& rt) {
    pipe_pair a, b;
    std::atomic<bool> second_woke{false};
    std::atomic<int> parked{0};
    auto first = rt.spawn([&] {
        ++parked;
        weft::io::wait_readable(a.r);
        return hold_the_worker_until(second_woke);
    });
    auto second = rt.spawn([&] {
        ++parked;
        const char c = read_byte(b.r);
        second_woke = true;
        return c;
    });
    while (parked.load() < 2) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(50ms);  // every worker asleep: one in epoll_wait, the others on futexes
    write_byte(a.w, 'a');               // the poller wakes for `first`, which computes
    std::this_thread::sleep_for(50ms);
    write_byte(b.w, 'b');
    EXPECT_EQ(second.join(), 'b');
    EXPECT_TRUE(first.join()) << "the second reader woke only after the first stopped computing";
}

// reactor.hpp E9: every worker went to sleep on its futex while nothing was
// registered; then a fiber parks on a pipe and its worker goes on with a fiber
// that computes. A sleeper must be woken to poll.
void readiness_seen_when_the_first_wait_finds_every_worker_asleep(weft::runtime& rt) {
    pipe_pair p;
    std::atomic<bool> reader_woke{false}, parking{false};
    weft::latch go(1);
    auto holder = rt.spawn([&] {
        go.wait();
        return hold_the_worker_until(reader_woke);
    });
    std::this_thread::sleep_for(50ms);  // every worker asleep on its futex: nothing registered
    auto reader = rt.spawn([&] {
        go.count_down();  // `holder` lands in this worker's LIFO slot: it runs when we park
        parking = true;
        const char c = read_byte(p.r);
        reader_woke = true;
        return c;
    });
    while (!parking.load()) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(50ms);
    write_byte(p.w, 'r');
    EXPECT_EQ(reader.join(), 'r');
    EXPECT_TRUE(holder.join()) << "the reader woke only after the holder stopped computing";
}

/// A runtime like the fixture's with stall warnings off: E9's backstop must not depend on them.
weft::runtime without_stall_warnings(std::size_t workers) {
    return weft::runtime(weft::runtime_options{.workers = workers, .stall_warning = -1ms});
}
}  // namespace

TEST_P(RuntimeTest, IoReadinessIsSeenWhileTheFormerPollerComputes) {
    if (workers() < 2) GTEST_SKIP() << "one worker held by a computation cannot poll";
    readiness_seen_while_the_former_poller_computes(rt);
}

TEST_P(RuntimeTest, IoReadinessIsSeenWhenTheFirstWaitFindsEveryWorkerAsleep) {
    if (workers() < 2) GTEST_SKIP() << "one worker held by a computation cannot poll";
    readiness_seen_when_the_first_wait_finds_every_worker_asleep(rt);
}

TEST_P(RuntimeTest, IoReadinessBackstopRunsWithStallWarningsOff) {
    if (workers() < 2) GTEST_SKIP() << "one worker held by a computation cannot poll";
    weft::runtime quiet = without_stall_warnings(workers());
    readiness_seen_while_the_former_poller_computes(quiet);
    readiness_seen_when_the_first_wait_finds_every_worker_asleep(quiet);
}

TEST_P(RuntimeTest, IoPipePingPongBetweenManyFiberPairs) {
    const std::size_t pairs = weft_test::scaled(200);
    const int rounds = weft_test::sanitized ? 20 : 200;
    std::vector<std::unique_ptr<pipe_pair>> there, back;
    for (std::size_t i = 0; i < pairs; ++i) {
        there.push_back(std::make_unique<pipe_pair>());
        back.push_back(std::make_unique<pipe_pair>());
    }
    std::atomic<long> sum{0};
    rt.block_on([&] {
        std::vector<weft::join_handle<void>> hs;
        for (std::size_t i = 0; i < pairs; ++i) {
            hs.push_back(weft::spawn([&, i] {  // echo side
                for (int k = 0; k < rounds; ++k) write_byte(back[i]->w, read_byte(there[i]->r));
            }));
            hs.push_back(weft::spawn([&, i] {  // ping side
                for (int k = 0; k < rounds; ++k) {
                    const char c = static_cast<char>('a' + k % 26);
                    write_byte(there[i]->w, c);
                    EXPECT_EQ(read_byte(back[i]->r), c);
                    sum.fetch_add(1, std::memory_order_relaxed);
                }
            }));
        }
        for (auto& h : hs) h.join();
    });
    EXPECT_EQ(sum.load(), static_cast<long>(pairs) * rounds);
}

TEST_P(RuntimeTest, IoFullPipeParksTheWriterUntilDrained) {
    pipe_pair p;
    const std::size_t total = 1 << 20;  // far more than a pipe holds (64 KiB)
    auto writer = rt.spawn([&] {
        std::vector<char> buf(8192, 'w');
        std::size_t sent = 0;
        while (sent < total) {
            const ssize_t n = ::write(p.w, buf.data(), std::min(buf.size(), total - sent));
            if (n > 0) sent += static_cast<std::size_t>(n);
            else if (errno == EAGAIN) weft::io::wait_writable(p.w);
            else throw std::system_error(errno, std::generic_category(), "write");
        }
        return sent;
    });
    auto reader = rt.spawn([&] {
        std::vector<char> buf(4096);
        std::size_t got = 0;
        while (got < total) {
            const ssize_t n = ::read(p.r, buf.data(), buf.size());
            if (n > 0) got += static_cast<std::size_t>(n);
            else if (n < 0 && errno == EAGAIN) weft::io::wait_readable(p.r);
            else throw std::runtime_error("read failed");
        }
        return got;
    });
    EXPECT_EQ(writer.join(), total);
    EXPECT_EQ(reader.join(), total);
}

TEST_P(RuntimeTest, IoDeadlineThrowsTimedOutNeverEarly) {
    pipe_pair p;
    auto times_out = [&] {  // on an empty pipe, on a fiber or a plain thread
        const auto t0 = clk::now();
        try {
            weft::io::wait_readable_for(p.r, 30ms);
            ADD_FAILURE() << "returned without data";
        } catch (const std::system_error& e) {
            EXPECT_EQ(code_of(e), std::errc::timed_out);
        }
        EXPECT_GE(clk::now() - t0, 30ms);
        // A deadline already past: no wait at all, still timed_out.
        try {
            weft::io::wait_readable(p.r, clk::now() - 1s);
            ADD_FAILURE() << "returned without data";
        } catch (const std::system_error& e) {
            EXPECT_EQ(code_of(e), std::errc::timed_out);
        }
    };
    rt.block_on(times_out);
    times_out();
}

TEST_P(RuntimeTest, IoCloseWakesAParkedFiberWithBadDescriptor) {
    pipe_pair p;
    std::atomic<bool> waiting{false};
    auto h = rt.spawn([&waiting, fd = p.r] {  // the fd by value: the test clears p.r meanwhile
        waiting = true;
        try {
            weft::io::wait_readable(fd);
        } catch (const std::system_error& e) {
            return code_of(e);
        }
        return std::errc{};
    });
    ASSERT_TRUE(weft_test::eventually([&] { return waiting.load(); }));
    std::this_thread::sleep_for(20ms);  // let it park
    EXPECT_EQ(weft::io::close(p.r), 0);
    p.r = -1;
    EXPECT_EQ(h.join(), std::errc::bad_file_descriptor);
}

TEST_P(RuntimeTest, IoCloseWakesAPlainThreadWithBadDescriptor) {
    pipe_pair p;
    std::atomic<int> result{-1};
    std::thread t([&result, fd = p.r] {  // the fd by value: the test clears p.r meanwhile
        try {
            weft::io::wait_readable(fd);
            result = 0;
        } catch (const std::system_error& e) {
            result = e.code().value();
        }
    });
    std::this_thread::sleep_for(30ms);
    weft::io::close(p.r);
    p.r = -1;
    t.join();
    EXPECT_EQ(result.load(), EBADF);
}

TEST_P(RuntimeTest, IoDescriptorReusedAfterPlainCloseIsWaitedOnCorrectly) {
    rt.block_on([&] {
        for (int round = 0; round < 20; ++round) {
            int fds[2];
            ASSERT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
            auto reader = weft::spawn([r = fds[0]] { return read_byte(r); });
            weft::this_fiber::sleep_for(1ms);
            write_byte(fds[1], static_cast<char>('A' + round));
            EXPECT_EQ(reader.join(), 'A' + round);
            ::close(fds[0]);  // plain close: the numbers are reused next round
            ::close(fds[1]);
        }
    });
}

TEST_P(RuntimeTest, IoEventfdWakesManyWaitersInTurn) {
    const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC | EFD_SEMAPHORE);
    ASSERT_GE(efd, 0);
    const int n = 50;
    std::atomic<int> got{0};
    rt.block_on([&] {
        std::vector<weft::join_handle<void>> hs;
        for (int i = 0; i < n; ++i) {
            hs.push_back(weft::spawn([&] {
                std::uint64_t v = 0;
                while (::read(efd, &v, sizeof v) != sizeof v) {
                    ASSERT_EQ(errno, EAGAIN);
                    weft::io::wait_readable(efd);
                }
                got.fetch_add(1);
            }));
        }
        weft::this_fiber::sleep_for(5ms);
        for (int i = 0; i < n; ++i) {
            const std::uint64_t one = 1;
            ASSERT_EQ(::write(efd, &one, sizeof one), static_cast<ssize_t>(sizeof one));
        }
        for (auto& h : hs) h.join();
    });
    EXPECT_EQ(got.load(), n);
    weft::io::close(efd);
}

TEST_P(RuntimeTest, IoBadDescriptorsThrow) {
    rt.block_on([] {
        EXPECT_THROW(weft::io::wait_readable(-1), std::system_error);
        char name[] = "/tmp/weft_io_testXXXXXX";
        const int fd = ::mkstemp(name);
        ASSERT_GE(fd, 0);
        ::unlink(name);
        ::close(fd);
        try {  // a closed descriptor: the same error as on a plain thread
            weft::io::wait_readable(fd);
            ADD_FAILURE() << "no error for a closed descriptor";
        } catch (const std::system_error& e) {
            EXPECT_EQ(code_of(e), std::errc::bad_file_descriptor) << e.what();
        }
    });
    EXPECT_THROW(weft::io::wait_writable(-5), std::system_error);
    // A deadline already past does not turn a bad descriptor into a timeout (poll(2) skips fd < 0).
    auto negative_past = [] {
        try {
            weft::io::wait_readable_for(-1, 0s);
            ADD_FAILURE() << "no error for fd -1";
        } catch (const std::system_error& e) {
            EXPECT_EQ(code_of(e), std::errc::bad_file_descriptor) << e.what();
        }
    };
    rt.block_on(negative_past);
    negative_past();
    // A number past weft's descriptor table that names nothing: EBADF, as poll(2) says, not EMFILE.
    auto beyond_the_table = [] {
        for (const int fd : {1 << 30, INT_MAX}) {
            try {
                weft::io::wait_readable(fd);
                ADD_FAILURE() << "no error for fd " << fd;
            } catch (const std::system_error& e) {
                EXPECT_EQ(code_of(e), std::errc::bad_file_descriptor) << fd << ": " << e.what();
            }
        }
    };
    rt.block_on(beyond_the_table);
    beyond_the_table();
}

TEST_P(RuntimeTest, IoRegularFilesAreAlwaysReadyAsInPoll) {
    char name[] = "/tmp/weft_io_testXXXXXX";
    const int fd = ::mkstemp(name);
    ASSERT_GE(fd, 0);
    ::unlink(name);
    auto waits = [fd] {  // epoll refuses regular files (EPERM); poll(2) calls them ready
        weft::io::wait_readable(fd);
        weft::io::wait_writable(fd);
        weft::io::wait_readable_for(fd, 0s);
    };
    EXPECT_NO_THROW(rt.block_on(waits));
    EXPECT_NO_THROW(waits());
    ::close(fd);
}

TEST_P(RuntimeTest, IoPastDeadlineStillReportsReadiness) {
    pipe_pair p;
    auto check = [&] {  // on a fiber or a plain thread
        // The pipe is empty and writable: "ready now?" is answered, not refused.
        EXPECT_NO_THROW(weft::io::wait_writable_for(p.w, 0s));
        EXPECT_NO_THROW(weft::io::wait_writable(p.w, clk::now() - 1h));
        try {
            weft::io::wait_readable_for(p.r, 0s);
            ADD_FAILURE() << "an empty pipe reported readable";
        } catch (const std::system_error& e) {
            EXPECT_EQ(code_of(e), std::errc::timed_out) << e.what();
        }
        write_byte(p.w, 'q');
        EXPECT_NO_THROW(weft::io::wait_readable_for(p.r, 0s));
        EXPECT_NO_THROW(weft::io::wait_readable(p.r, clk::time_point::min()));
        EXPECT_EQ(read_byte(p.r), 'q');
    };
    rt.block_on(check);
    check();
}

TEST_P(RuntimeTest, IoDeadlinesOnTheSystemClockDoNotOverflow) {
    pipe_pair p;
    std::atomic<bool> finished{false};
    // A watchdog turns a wrapped-around "far future" deadline into a failure
    // (the wait would return with data) instead of a hang.
    std::thread watchdog([&] {
        for (int i = 0; i < 500 && !finished; ++i) std::this_thread::sleep_for(10ms);
        if (!finished) write_byte(p.w, 'w');
    });
    auto long_past = [&] {
        try {
            weft::io::wait_readable(p.r, std::chrono::system_clock::time_point::min());
            ADD_FAILURE() << "returned: the deadline did not count as past";
        } catch (const std::system_error& e) {
            EXPECT_EQ(code_of(e), std::errc::timed_out) << e.what();
        }
    };
    rt.block_on(long_past);
    long_past();
    finished = true;
    watchdog.join();
}

TEST_P(RuntimeTest, IoShutdownCancelsAParkedFiber) {
    pipe_pair p;
    std::atomic<int> outcome{0};
    {
        weft::runtime local{weft::runtime_options{.workers = workers()}};
        local.spawn([&] {
            try {
                weft::io::wait_readable(p.r);
                outcome = 1;
            } catch (const weft::operation_cancelled&) {
                outcome = 2;
            }
        }).detach();
        std::this_thread::sleep_for(20ms);
        local.shutdown();
    }
    EXPECT_EQ(outcome.load(), 2);
}

// A kernel older than 5.11 (or a seccomp profile) refuses epoll_pwait2: the
// reactor falls back to epoll_wait (millisecond timeouts) instead of treating
// every poll as "no events", which left I/O waiters asleep for good and the
// blocking poller spinning. The child installs a seccomp filter that makes
// epoll_pwait2 fail with ENOSYS, before its runtime's threads exist.
namespace {
constexpr const char* no_pwait2_env = "WEFT_TEST_NO_PWAIT2_WORKERS";

bool deny_epoll_pwait2() {
    sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_epoll_pwait2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof f / sizeof f[0]), f};
    return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}
}  // namespace

TEST(IoNoPwait2Child, Run) {
    const char* arg = std::getenv(no_pwait2_env);
    if (!arg) GTEST_SKIP() << "runs only in the child process of RuntimeTest.IoWorksWithoutEpollPwait2";
    ASSERT_TRUE(deny_epoll_pwait2()) << std::strerror(errno);
    ASSERT_EQ(::syscall(SYS_epoll_pwait2, -1, nullptr, 0, nullptr, nullptr, 0), -1);
    ASSERT_EQ(errno, ENOSYS) << "the filter is not in force";
    weft::runtime rt{weft::runtime_options{.workers = std::strtoul(arg, nullptr, 10)}};
    pipe_pair p;
    auto reader = rt.spawn([&] {
        weft::io::wait_readable_for(p.r, 20s);  // timed_out here would be the old failure
        return read_byte(p.r);
    });
    std::this_thread::sleep_for(50ms);  // the reader is parked, a worker is in epoll_wait
    write_byte(p.w, 'z');
    EXPECT_EQ(reader.join(), 'z');
    // A sleeping worker's timer deadline becomes the poll timeout, rounded up to a millisecond.
    const auto t0 = clk::now();
    rt.block_on([] { weft::this_fiber::sleep_for(3ms); });
    EXPECT_GE(clk::now() - t0, 3ms);
}

TEST_P(RuntimeTest, IoWorksWithoutEpollPwait2) {
    const auto res = weft_test::run_test_in_child("IoNoPwait2Child.Run",
                                                  std::string(no_pwait2_env) + "=" + std::to_string(workers()), 60s);
    EXPECT_TRUE(weft_test::child_passed(res));
    EXPECT_EQ(res.output.find("epoll_wait failed"), std::string::npos) << res.output;
}
