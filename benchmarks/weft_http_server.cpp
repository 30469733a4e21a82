// weft_http_server: the HTTP/1.1 keep-alive "hello world" peer of Go's
// net/http http_server, driven by wrk (run.sh run_http; scripts/bench.sh).
//
//   weft_http_server <port> <workers=2> <max_secs=120>
//
// One fiber per connection; the request handling is examples/http1.hpp, the
// same as examples/http_server.cpp.
#include "../examples/http1.hpp"
#include "bench_server.hpp"

int main(int argc, char** argv) {
    return weft_bench::server_main(argc, argv, "weft_http_server", weft_examples::http_connection);
}
