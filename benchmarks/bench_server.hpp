/// @file
/// main() of the benchmark servers, in the peers' convention (Go's
/// echo_server and http_server, the epoll baseline):
///
///   <server> <port> <workers=2> <max_secs=120>
///
/// listens on 127.0.0.1:<port>, serves each connection on its own fiber, and
/// exits by itself (status 0, without tearing down, as Go's os.Exit) after
/// max_secs; the peers' run.sh also kills it when a run ends. The connection
/// loops are the examples' (examples/serve.hpp, examples/http1.hpp).
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "../examples/serve.hpp"

namespace weft_bench {

inline int server_main(int argc, char** argv, const char* name, weft_examples::connection_fn serve) {
    char usage[96];
    std::snprintf(usage, sizeof usage, "%s <port> <workers=2> <max_secs=120>", name);
    long port = weft_examples::number_arg(argc, argv, 1, 17000, usage);
    auto workers = static_cast<std::size_t>(weft_examples::number_arg(argc, argv, 2, 2, usage));
    long max_secs = weft_examples::number_arg(argc, argv, 3, 120, usage);
    if (port > 65535 || workers == 0) {
        std::fprintf(stderr, "usage: %s\n", usage);
        return 2;
    }
    weft_examples::raise_fd_limit();
    auto rtp = weft_examples::make_runtime(name, weft::runtime_options{.workers = workers, .name = name});
    weft::runtime& rt = *rtp;
    weft::net::tcp_listener ln;
    try {
        ln = weft::net::tcp_listener::bind(weft::net::endpoint("127.0.0.1", static_cast<std::uint16_t>(port)), 4096);
    } catch (const std::system_error& e) {
        std::fprintf(stderr, "%s: cannot listen on 127.0.0.1:%ld: %s\n", name, port, e.what());
        return 1;
    }
    rt.spawn(weft_examples::accept_loop, std::move(ln), serve).detach();
    std::this_thread::sleep_for(std::chrono::seconds(max_secs));
    std::fflush(nullptr);
    std::_Exit(0);
}

}  // namespace weft_bench
