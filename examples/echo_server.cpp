// echo_server: a TCP echo server, one fiber per connection, as Go writes it.
//
//   echo_server [addr=127.0.0.1:7000] [workers]
//
// Each accepted connection gets its own fiber running a plain blocking loop
// (read up to 4 KiB, write all of it back, until end of stream); the fiber
// parks in read() and write() while the socket is not ready, and its worker
// runs other connections meanwhile. The loop is echo_connection() and the
// accept loop accept_loop() in serve.hpp (the benchmark server
// benchmarks/weft_echo_server.cpp runs the same two). SIGINT or SIGTERM shuts
// the runtime down, which cancels every connection fiber, and exits 0.
// Drive it with echo_client (scripts/demo.sh does).
#include "serve.hpp"

int main(int argc, char** argv) {
    return weft_examples::example_server_main(argc, argv, "echo_server", "127.0.0.1:7000",
                                              weft_examples::echo_connection);
}
