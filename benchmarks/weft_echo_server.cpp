// weft_echo_server: the echo peer of Go's echo_server and the epoll baseline,
// driven by the peers' echo_client (run.sh run_echo; scripts/bench.sh).
//
//   weft_echo_server <port> <workers=2> <max_secs=120>
//
// One fiber per connection running Go's loop: read up to 4096 bytes, write
// what was read (examples/serve.hpp echo_connection).
#include "bench_server.hpp"

int main(int argc, char** argv) {
    return weft_bench::server_main(argc, argv, "weft_echo_server", weft_examples::echo_connection);
}
