/// @file
/// A minimal HTTP/1.1 "hello world" server connection, shared by
/// examples/http_server.cpp and benchmarks/weft_http_server.cpp (the peer of
/// Go's net/http server under wrk).
///
/// Requests are parsed incrementally from a buffer: a request split across
/// reads waits for the rest, several pipelined requests in one read are all
/// answered, in order, by one write. Every request gets `hello world\n`
/// (HEAD: the headers only). Keep-alive follows HTTP/1.1 (on unless
/// "Connection: close") and HTTP/1.0 (off unless "Connection: keep-alive").
/// A Content-Length body is skipped. Anything malformed (a bad request line
/// or header, bare LF line ends, a missing Host in HTTP/1.1, conflicting
/// Content-Length values, Transfer-Encoding, which this server does not
/// implement, or headers over 8 KiB) gets 400 and the connection is closed.
/// Public API only.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>

#include <weft/net.hpp>

namespace weft_examples {

/// What parse_http_request found at the front of a buffer.
struct http_request {
    enum class status { incomplete, complete, bad };
    status state = status::incomplete;
    std::size_t header_bytes = 0;  ///< request line + headers + blank line (when complete)
    std::uint64_t body_bytes = 0;  ///< Content-Length (when complete)
    bool keep_alive = false;
    bool http10 = false;
    bool head = false;
};

namespace http_detail {

inline constexpr std::size_t max_header_bytes = 8192;

inline bool is_tchar(unsigned char c) {
    if (c >= '0' && c <= '9') return true;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
    return c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

inline bool is_token(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!is_tchar(static_cast<unsigned char>(c))) return false;
    return true;
}

inline bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if ((a[i] | 0x20) != (b[i] | 0x20)) return false;  // callers compare against letters and '-' only
    return true;
}

inline std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

/// "METHOD SP target SP HTTP/1.x", exactly. Fills http10 and head.
inline bool parse_request_line(std::string_view line, http_request& r) {
    std::size_t sp1 = line.find(' ');
    if (sp1 == std::string_view::npos) return false;
    std::size_t sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) return false;
    std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                     version = line.substr(sp2 + 1);
    if (!is_token(method) || target.empty()) return false;
    for (char c : target)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return false;
    if (version == "HTTP/1.1")
        r.http10 = false;
    else if (version == "HTTP/1.0")
        r.http10 = true;
    else
        return false;
    r.head = method == "HEAD";
    return true;
}

/// What the header lines said so far.
struct header_facts {
    bool close = false, keep_alive = false, host = false, has_length = false;
    std::uint64_t length = 0;
};

/// One "name: value" line; false when malformed or unsupported.
inline bool parse_header_line(std::string_view line, header_facts& f) {
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return false;
    std::string_view name = line.substr(0, colon), value = trim_ows(line.substr(colon + 1));
    if (!is_token(name)) return false;  // also rejects obs-fold (a line starting with a blank)
    for (char c : value)
        if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return false;
    if (iequals(name, "host")) {
        if (f.host) return false;
        f.host = true;
    } else if (iequals(name, "connection")) {
        while (!value.empty()) {
            std::size_t comma = value.find(',');
            std::string_view opt = trim_ows(value.substr(0, comma));
            if (iequals(opt, "close")) f.close = true;
            if (iequals(opt, "keep-alive")) f.keep_alive = true;
            value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
        }
    } else if (iequals(name, "content-length")) {
        if (value.empty() || value.size() > 18) return false;
        std::uint64_t n = 0;
        for (char c : value) {
            if (c < '0' || c > '9') return false;
            n = n * 10 + std::uint64_t(c - '0');
        }
        if (f.has_length && n != f.length) return false;
        f.has_length = true;
        f.length = n;
    } else if (iequals(name, "transfer-encoding")) {
        return false;  // chunked bodies are not implemented: refuse rather than misframe
    }
    return true;
}

}  // namespace http_detail

/// Parses the request at the front of `in`. incomplete: more bytes are
/// needed (nothing was consumed); complete: header_bytes of `in` are the
/// request's head and body_bytes of body follow; bad: answer 400 and close.
inline http_request parse_http_request(std::string_view in) {
    using namespace http_detail;
    http_request r;
    std::size_t pos = 0;
    while (in.size() - pos >= 2 && in[pos] == '\r' && in[pos + 1] == '\n') pos += 2;  // empty lines before a request
    header_facts f;
    for (bool first = true;; first = false) {
        std::size_t nl = in.find('\n', pos);
        if (nl == std::string_view::npos) {
            if (in.size() > max_header_bytes) r.state = http_request::status::bad;
            return r;
        }
        if (nl == pos || in[nl - 1] != '\r' || nl >= max_header_bytes) {  // bare LF, or too long
            r.state = http_request::status::bad;
            return r;
        }
        std::string_view line = in.substr(pos, nl - 1 - pos);
        pos = nl + 1;
        bool ok = first ? parse_request_line(line, r) : line.empty() || parse_header_line(line, f);
        if (!ok) {
            r.state = http_request::status::bad;
            return r;
        }
        if (!first && line.empty()) break;
    }
    if (!r.http10 && !f.host) {  // RFC 9112 3.2: an HTTP/1.1 request without Host is a 400
        r.state = http_request::status::bad;
        return r;
    }
    r.state = http_request::status::complete;
    r.header_bytes = pos;
    r.body_bytes = f.length;
    r.keep_alive = r.http10 ? f.keep_alive && !f.close : !f.close;
    return r;
}

/// Appends the response to `r` to `out`.
inline void append_http_response(std::string& out, const http_request& r) {
    out += "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n";
    if (!r.keep_alive)
        out += "Connection: close\r\n";
    else if (r.http10)
        out += "Connection: keep-alive\r\n";
    out += r.head ? "\r\n" : "\r\nhello world\n";
}

/// Half-closes after the last response, then drains what the client still
/// sends (up to 1 s), so that closing does not reset the connection and
/// destroy responses the client has not read yet.
inline void lingering_close(weft::net::tcp_stream& s) {
    s.shutdown_write();
    s.set_read_deadline(weft::net::clock::now() + std::chrono::seconds(1));
    char sink[4096];
    while (s.read(sink, sizeof sink) != 0) {
    }
}

/// Serves one HTTP connection until the client closes it, asks to, or sends
/// something malformed. Network errors and runtime shutdown end it quietly.
inline void http_connection(weft::net::tcp_stream s) {
    static constexpr std::string_view bad_request =
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
        "Connection: close\r\n\r\nbad request\n";
    char in[http_detail::max_header_bytes + 1024];
    std::size_t have = 0;      // bytes in `in` not yet consumed
    std::uint64_t skip = 0;    // body bytes of the last request still to discard
    std::string out;
    try {
        for (;;) {
            std::size_t n = s.read(in + have, sizeof in - have);
            if (n == 0) return;
            have += n;
            std::size_t pos = 0;
            bool close = false;
            for (;;) {  // every complete request in the buffer: answers batched into one write
                std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(skip, have - pos));
                pos += k;
                skip -= k;
                if (skip != 0) break;
                http_request r = parse_http_request(std::string_view(in + pos, have - pos));
                if (r.state == http_request::status::incomplete) break;
                if (r.state == http_request::status::bad) {
                    out += bad_request;
                    close = true;
                    break;
                }
                append_http_response(out, r);
                pos += r.header_bytes;
                skip = r.body_bytes;
                if (!r.keep_alive) {
                    close = true;
                    break;
                }
            }
            if (!out.empty()) {
                s.write_all(out);
                out.clear();
            }
            if (close) return lingering_close(s);
            std::memmove(in, in + pos, have - pos);
            have -= pos;
        }
    } catch (const std::system_error&) {  // includes weft::operation_cancelled
    }
}

}  // namespace weft_examples
