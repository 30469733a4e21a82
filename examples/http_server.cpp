// http_server: an HTTP/1.1 keep-alive "hello world" server, one fiber per
// connection.
//
//   http_server [addr=127.0.0.1:8080] [workers]
//   curl http://127.0.0.1:8080/ http://127.0.0.1:8080/again   # one connection, two requests
//   wrk -t1 -c100 -d3s http://127.0.0.1:8080/
//
// Each connection's fiber reads into a buffer, answers every complete request
// it holds (pipelined answers go out in one write) and keeps what is left of
// a request split across reads; see http1.hpp, which the benchmark server
// benchmarks/weft_http_server.cpp shares. SIGINT or SIGTERM shuts down.
#include "http1.hpp"
#include "serve.hpp"

int main(int argc, char** argv) {
    return weft_examples::example_server_main(argc, argv, "http_server", "127.0.0.1:8080",
                                              weft_examples::http_connection);
}
