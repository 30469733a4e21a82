// weft::net under load: 10,000 TCP connections open at once on 127.0.0.1
// (scaled down under sanitizers). The server (this process, a fiber per
// connection) and the clients (a child process: this binary re-run with
// NetStressChild.Clients, because one process may not hold both ends of
// 10,000 connections under a 20,000-descriptor hard limit) each raise
// RLIMIT_NOFILE. Every client sends its number and reads it back, then waits
// until all clients have their echo before closing, so the server sees all
// connections open together. Public API only.
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "child_process.hpp"
#include "runtime_fixture.hpp"

using namespace std::chrono_literals;
using weft::net::endpoint;
using weft::net::tcp_listener;
using weft::net::tcp_stream;

namespace {

class NetStressTest : public RuntimeTest {};

constexpr const char* child_env = "WEFT_NET_STRESS_CHILD";  // "port connections workers"

/// Raises the soft RLIMIT_NOFILE to at least `n`; false if the hard limit is lower.
bool raise_nofile(rlim_t n, rlimit& old) {
    if (::getrlimit(RLIMIT_NOFILE, &old) != 0) return false;
    if (old.rlim_cur >= n) return true;
    if (old.rlim_max < n) return false;
    rlimit r = old;
    r.rlim_cur = n;
    return ::setrlimit(RLIMIT_NOFILE, &r) == 0;
}

}  // namespace

// The client half of TenThousandConcurrentConnections (skipped unless started by it).
TEST(NetStressChild, Clients) {
    const char* arg = std::getenv(child_env);
    if (!arg) GTEST_SKIP() << "runs only in the child process of NetStressTest.TenThousandConcurrentConnections";
    unsigned port = 0;
    std::size_t n = 0, workers = 0;
    ASSERT_EQ(std::sscanf(arg, "%u %zu %zu", &port, &n, &workers), 3) << arg;
    rlimit old{};
    ASSERT_TRUE(raise_nofile(n + 256, old)) << "hard RLIMIT_NOFILE " << old.rlim_max << " < " << n + 256;

    const endpoint at("127.0.0.1", static_cast<std::uint16_t>(port));
    weft::runtime rt{weft::runtime_options{.workers = workers}};
    weft::latch all_echoed(static_cast<std::ptrdiff_t>(n));
    weft::counting_semaphore<> connecting(256);  // connects in flight: keep the accept queue from overflowing
    std::atomic<std::size_t> ok{0};
    std::atomic<std::size_t> failed{0};
    std::vector<weft::join_handle<void>> clients;
    clients.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        clients.push_back(rt.spawn([&, i] {
            tcp_stream c;
            try {
                connecting.acquire();
                try {
                    c = tcp_stream::connect(at, 60s);
                } catch (...) {
                    connecting.release();
                    throw;
                }
                connecting.release();
                const std::uint64_t id = i;
                c.write_all(&id, sizeof id);
                std::uint64_t back = ~id;
                if (c.read_exact(&back, sizeof back) && back == id) ok.fetch_add(1);
            } catch (const std::system_error& e) {
                if (failed.fetch_add(1) < 5) std::fprintf(stderr, "client %zu: %s\n", i, e.what());
            }
            all_echoed.count_down();
            all_echoed.wait();  // every connection stays open until all have their echo
        }));
    }
    for (auto& h : clients) h.join();
    EXPECT_EQ(ok.load(), n);
    EXPECT_EQ(failed.load(), 0u);
    std::printf("clients: %zu of %zu echoed\n", ok.load(), n);
}

TEST_P(NetStressTest, TenThousandConcurrentConnections) {
    const std::size_t n = weft_test::scaled(10'000);
    rlimit old{};
    if (!raise_nofile(n + 256, old))
        GTEST_SKIP() << "hard RLIMIT_NOFILE " << old.rlim_max << " is below " << n + 256;

    auto l = tcp_listener::bind("127.0.0.1:0", 4096);
    const std::uint16_t port = l.local_endpoint().port();
    std::atomic<std::size_t> open{0}, peak{0}, echoed{0};
    auto server = rt.spawn([&] {
        std::vector<weft::join_handle<void>> conns;
        conns.reserve(n);
        try {
            for (std::size_t i = 0; i < n; ++i) {
                auto s = std::make_shared<tcp_stream>(l.accept());
                conns.push_back(weft::spawn([&, s] {
                    const std::size_t now = open.fetch_add(1) + 1;
                    for (std::size_t p = peak.load(); p < now && !peak.compare_exchange_weak(p, now);) {
                    }
                    std::uint64_t id = 0;
                    if (s->read_exact(&id, sizeof id)) {
                        s->write_all(&id, sizeof id);
                        echoed.fetch_add(1);
                        char b;
                        while (s->read(&b, 1) != 0) {
                        }
                    }
                    open.fetch_sub(1);
                }));
            }
        } catch (const std::system_error& e) {  // the listener closed early: the child failed
            std::fprintf(stderr, "server: %s\n", e.what());
        }
        for (auto& h : conns) h.join();
    });

    const auto res = weft_test::run_test_in_child(
        "NetStressChild.Clients", std::string(child_env) + "=" + std::to_string(port) + " " + std::to_string(n) + " " +
                                      std::to_string(workers()),
        300s);
    l.close();  // wakes the acceptor if the child did not connect n times
    server.join();
    ::setrlimit(RLIMIT_NOFILE, &old);

    EXPECT_FALSE(res.timed_out) << res.output;
    EXPECT_TRUE(res.exited && res.exit_code == 0) << "signal " << res.signal << "\n" << res.output;
    EXPECT_NE(res.output.find("clients: " + std::to_string(n) + " of " + std::to_string(n) + " echoed"),
              std::string::npos)
        << res.output;
    EXPECT_EQ(echoed.load(), n);
    EXPECT_EQ(peak.load(), n) << "not all connections were open at once";
    EXPECT_EQ(open.load(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Workers, NetStressTest, testing::Values(1, 2, 4), worker_count_name);
