/// @file
/// What the example servers (echo_server, http_server) and the benchmark
/// servers (benchmarks/weft_echo_server, weft_http_server) share: Go's
/// accept loop with one fiber per connection, the echo connection, the
/// descriptor limit, argument parsing and the stop signals.
/// Public API only (<weft/...>), as a consumer would write it.
#pragma once

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <cerrno>
#include <climits>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <system_error>

#include <weft/error.hpp>
#include <weft/net.hpp>
#include <weft/runtime.hpp>
#include <weft/timer.hpp>

namespace weft_examples {

/// Serves one accepted connection on its own fiber, until the peer hangs up.
using connection_fn = void (*)(weft::net::tcp_stream);

/// Echoes what it reads, as the Go peer does: read up to 4 KiB, write all of
/// it, until end of stream. A reset connection ends it quietly; so does
/// runtime shutdown (operation_cancelled).
inline void echo_connection(weft::net::tcp_stream s) {
    char buf[4096];
    try {
        for (;;) {
            std::size_t n = s.read(buf, sizeof buf);
            if (n == 0) return;
            s.write_all(buf, n);
        }
    } catch (const std::system_error&) {  // includes weft::operation_cancelled
    }
}

/// Go's accept loop: each connection (TCP_NODELAY, weft's and Go's default) gets a fiber
/// running `serve`. Returns when the listener is closed or the fiber is
/// cancelled; other accept failures are logged and retried after 1 ms.
/// (Descriptor exhaustion is handled inside accept(): it pauses and retries.)
inline void accept_loop(weft::net::tcp_listener ln, connection_fn serve) {
    for (;;) {
        weft::net::tcp_stream s;
        try {
            s = ln.accept();
        } catch (const weft::operation_cancelled&) {
            return;
        } catch (const std::system_error& e) {
            if (e.code() == std::errc::bad_file_descriptor) return;
            std::fprintf(stderr, "accept: %s\n", e.what());
            weft::this_fiber::sleep_for(std::chrono::milliseconds(1));
            continue;
        }
        try {
            weft::spawn(serve, std::move(s)).detach();
        } catch (const weft::fiber_error&) {  // spawn: the runtime is shutting down
            return;
        }
    }
}

/// Raises the soft limit on open descriptors to the hard limit, as Go does at
/// startup: one connection is one descriptor. Returns the new soft limit.
inline rlim_t raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rlimit want = rl;
        want.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
    }
    return rl.rlim_cur;
}

/// argv[i] as a number in [0, max], `def` when absent; exits with the usage
/// line on anything else.
inline long number_arg(int argc, char** argv, int i, long def, const char* usage, long max = LONG_MAX) {
    if (argc <= i) return def;
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(argv[i], &end, 10);
    if (end == argv[i] || *end != '\0' || v < 0 || errno == ERANGE || v > max) {
        std::fprintf(stderr, "%s: bad argument '%s' (a number from 0 to %ld)\nusage: %s\n", argv[0], argv[i], max,
                     usage);
        std::exit(2);
    }
    return v;
}

/// The runtime of an example, or exit(2) with what was wrong (workers over
/// weft's limit, a bad WEFT_* variable).
inline std::unique_ptr<weft::runtime> make_runtime(const char* prog, weft::runtime_options o) {
    try {
        return std::make_unique<weft::runtime>(std::move(o));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", prog, e.what());
        std::exit(2);
    }
}

/// SIGINT and SIGTERM, blocked in the constructing thread and in every thread
/// it starts afterwards (construct it before the runtime: its workers inherit
/// the mask), so that wait() on the main thread is where they arrive.
class stop_signals {
public:
    stop_signals() noexcept {
        sigemptyset(&set_);
        sigaddset(&set_, SIGINT);
        sigaddset(&set_, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    }
    /// Blocks the calling thread until SIGINT or SIGTERM; returns its number.
    int wait() const noexcept {
        int sig = 0;
        while (sigwait(&set_, &sig) != 0) {
        }
        return sig;
    }

private:
    sigset_t set_;
};

/// main() of an example server: `<name> [addr] [workers]`. Listens on addr
/// (default 127.0.0.1:<default_port>), says where, serves each connection
/// with `serve` until SIGINT/SIGTERM, then shuts the runtime down (every
/// connection fiber is cancelled) and returns 0.
inline int example_server_main(int argc, char** argv, const char* name, const char* default_addr,
                               connection_fn serve) {
    char usage[128];
    std::snprintf(usage, sizeof usage, "%s [addr=%s] [workers]", name, default_addr);
    const char* addr = argc > 1 ? argv[1] : default_addr;
    auto workers = static_cast<std::size_t>(number_arg(argc, argv, 2, 0, usage));  // 0: WEFT_WORKERS or the CPU count
    raise_fd_limit();
    stop_signals stop;
    auto rtp = make_runtime(name, weft::runtime_options{.workers = workers, .name = name});
    weft::runtime& rt = *rtp;
    weft::net::tcp_listener ln;
    try {
        ln = weft::net::tcp_listener::bind(std::string_view(addr), 4096);
    } catch (const std::exception& e) {  // std::invalid_argument (bad text) or std::system_error
        std::fprintf(stderr, "%s: cannot listen on %s: %s\nusage: %s\n", name, addr, e.what(), usage);
        return 1;
    }
    std::printf("%s: listening on %s (%zu workers); Ctrl-C stops\n", name, ln.local_endpoint().to_string().c_str(),
                rt.options().workers);
    std::fflush(stdout);
    rt.spawn(accept_loop, std::move(ln), serve).detach();
    int sig = stop.wait();
    std::printf("%s: %s, shutting down\n", name, sig == SIGINT ? "SIGINT" : "SIGTERM");
    std::fflush(stdout);
    rt.shutdown();
    return 0;
}

}  // namespace weft_examples
