// echo_client: a closed-loop load generator for echo servers, written in weft.
//
//   echo_client <addr> <connections> <seconds> [workers] [payload=64]
//   echo_client 127.0.0.1:7000 10000 10
//
// Opens <connections> TCP connections, one fiber each. Once all are
// connected, each fiber runs the same blocking loop for <seconds>: send
// <payload> bytes, read_exact the echo (checked), record the round trip's
// latency, repeat. Each fiber keeps its own latency histogram (no shared
// state per request); main merges them when the fibers are joined and prints
//
//   echo_client: requests/s=... p50_us=... p99_us=... requests=... errors=... connections=...
//
// Exits 1 when a connection failed (errors > 0) or nothing completed.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <weft/latch.hpp>
#include <weft/net.hpp>
#include <weft/runtime.hpp>
#include <weft/timer.hpp>

#include "serve.hpp"

namespace {

using clk = std::chrono::steady_clock;
constexpr const char* usage = "echo_client <addr> <connections> <seconds> [workers] [payload=64]";

/// Log-linear histogram of nanoseconds: 16 buckets per power of two (each
/// within 1/16 of its value), from 0 up to 2^44 ns (larger values clamp).
/// 32-bit counts (2.6 KiB in all): one per connection is cheap even at
/// 10,000 connections, and a bucket would need 4 billion round trips to wrap.
class latency_histogram {
public:
    static constexpr int sub_bits = 4, sub = 1 << sub_bits, max_exp = 44;
    static constexpr int buckets = sub + (max_exp - sub_bits) * sub;

    void add(std::uint64_t ns) {
        ++count_[index(ns)];
        ++total_;
    }
    void merge(const latency_histogram& o) {
        for (int i = 0; i < buckets; ++i) count_[i] += o.count_[i];
        total_ += o.total_;
    }
    std::uint64_t total() const { return total_; }
    /// The p-quantile (0 < p <= 1) in microseconds: the middle of its bucket.
    double quantile_us(double p) const {
        if (total_ == 0) return 0;
        auto want = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(p * double(total_) + 0.5));
        std::uint64_t seen = 0;
        for (int i = 0; i < buckets; ++i)
            if ((seen += count_[i]) >= want) return (double(low(i)) + double(low(i + 1))) / 2 / 1000;
        return double(low(buckets)) / 1000;
    }

private:
    static int index(std::uint64_t v) {
        if (v < sub) return static_cast<int>(v);
        int e = 63 - __builtin_clzll(v);  // >= sub_bits
        if (e >= max_exp) return buckets - 1;
        return sub + (e - sub_bits) * sub + static_cast<int>((v >> (e - sub_bits)) & (sub - 1));
    }
    static std::uint64_t low(int i) {  // the smallest value of bucket i
        if (i < sub) return static_cast<std::uint64_t>(i);
        int e = (i - sub) / sub + sub_bits, m = (i - sub) % sub;
        return std::uint64_t(sub + m) << (e - sub_bits);
    }

    std::array<std::uint32_t, buckets> count_{};
    std::uint64_t total_ = 0;
};

struct conn_result {
    latency_histogram latency;
    std::uint64_t errors = 0;
    std::string error;  // the first one's message
};

/// Everything the connection fibers share; written by main before `go` opens.
struct run_plan {
    weft::net::endpoint to;
    std::size_t payload = 64;
    weft::latch connected;  // every fiber arrives once connected (or failed)
    weft::latch go{1};      // opened by main once all have arrived
    clk::time_point start, end;
    explicit run_plan(std::ptrdiff_t conns) : connected(conns) {}
};

/// Connects, retrying for up to 10 s while the server refuses (it may still
/// be starting).
weft::net::tcp_stream connect_patiently(const weft::net::endpoint& to) {
    auto give_up = clk::now() + std::chrono::seconds(10);
    for (;;) {
        try {
            return weft::net::tcp_stream::connect(to, std::chrono::seconds(10));
        } catch (const std::system_error& e) {
            if (e.code() != std::errc::connection_refused || clk::now() > give_up) throw;
        }
        weft::this_fiber::sleep_for(std::chrono::milliseconds(50));
    }
}

void note_error(conn_result& r, const char* what) {
    if (r.errors++ == 0) r.error = what;
}

/// One connection's fiber: connect, wait for the start, then the closed loop.
/// Only round trips that complete before the end count.
std::unique_ptr<conn_result> run_connection(run_plan* plan) {
    auto res = std::make_unique<conn_result>();
    weft::net::tcp_stream s;
    try {
        s = connect_patiently(plan->to);  // TCP_NODELAY: weft's default, as Go's
    } catch (const std::system_error& e) {
        note_error(*res, e.what());
        plan->connected.count_down();
        return res;
    }
    plan->connected.count_down();
    plan->go.wait();
    std::vector<char> msg(plan->payload, 'x'), echo(plan->payload);
    const clk::time_point end = plan->end;
    s.set_deadline(end + std::chrono::seconds(5));  // a silent server cannot hang the run
    try {
        for (clk::time_point t0 = clk::now(); t0 < end;) {
            s.write_all(msg.data(), msg.size());
            if (!s.read_exact(echo.data(), echo.size())) {
                note_error(*res, "the server closed the connection");
                break;
            }
            clk::time_point t1 = clk::now();
            if (std::memcmp(msg.data(), echo.data(), msg.size()) != 0) {
                note_error(*res, "the echo differs from what was sent");
                break;
            }
            if (t1 <= end) res->latency.add(static_cast<std::uint64_t>((t1 - t0).count()));
            t0 = t1;
        }
    } catch (const std::system_error& e) {
        note_error(*res, e.what());
    }
    return res;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s\n", usage);
        return 2;
    }
    weft::net::endpoint to;
    try {
        to = weft::net::endpoint::parse(argv[1]);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "echo_client: %s\nusage: %s\n", e.what(), usage);
        return 2;
    }
    long conns = weft_examples::number_arg(argc, argv, 2, 0, usage, 10'000'000);
    long secs = weft_examples::number_arg(argc, argv, 3, 0, usage, 30L * 24 * 3600);
    auto workers = static_cast<std::size_t>(weft_examples::number_arg(argc, argv, 4, 0, usage, 1024));
    long payload = weft_examples::number_arg(argc, argv, 5, 64, usage, 1 << 20);
    if (conns < 1 || secs < 1 || payload < 1 || payload > (1 << 20)) {
        std::fprintf(stderr, "echo_client: need connections >= 1, seconds >= 1, 1 <= payload <= 1 MiB\nusage: %s\n",
                     usage);
        return 2;
    }
    rlim_t fds = weft_examples::raise_fd_limit();
    if (fds < rlim_t(conns) + 64) {
        std::fprintf(stderr, "echo_client: %ld connections need %ld descriptors, the limit is %llu (ulimit -n)\n", conns,
                     conns + 64, static_cast<unsigned long long>(fds));
        return 1;
    }

    auto rtp = weft_examples::make_runtime("echo_client", weft::runtime_options{.workers = workers, .name = "echo_client"});
    weft::runtime& rt = *rtp;
    std::printf("echo_client: %ld connections to %s, %ld-byte payload, %ld s, %zu workers\n", conns,
                to.to_string().c_str(), payload, secs, rt.options().workers);
    std::fflush(stdout);

    run_plan plan(conns);
    plan.to = to;
    plan.payload = static_cast<std::size_t>(payload);
    std::vector<weft::join_handle<std::unique_ptr<conn_result>>> fibers;
    fibers.reserve(static_cast<std::size_t>(conns));
    auto t0 = clk::now();
    for (long i = 0; i < conns; ++i) fibers.push_back(rt.spawn(run_connection, &plan));
    plan.connected.wait();
    plan.start = clk::now();
    plan.end = plan.start + std::chrono::seconds(secs);
    plan.go.count_down();  // release: the fibers read start/end after their wait
    std::printf("echo_client: connected in %.2f s; running\n", std::chrono::duration<double>(plan.start - t0).count());
    std::fflush(stdout);

    latency_histogram all;
    std::uint64_t errors = 0;
    std::string first_error;
    for (auto& f : fibers) {
        std::unique_ptr<conn_result> r = f.join();
        all.merge(r->latency);
        if (r->errors != 0 && errors == 0) first_error = r->error;
        errors += r->errors;
    }
    double window = std::chrono::duration<double>(plan.end - plan.start).count();
    std::printf("echo_client: requests/s=%.0f p50_us=%.1f p99_us=%.1f requests=%llu errors=%llu connections=%ld\n",
                double(all.total()) / window, all.quantile_us(0.50), all.quantile_us(0.99),
                static_cast<unsigned long long>(all.total()), static_cast<unsigned long long>(errors), conns);
    if (errors != 0) std::printf("echo_client: first error: %s\n", first_error.c_str());
    return errors == 0 && all.total() > 0 ? 0 : 1;
}
