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
/// A body is skipped: Content-Length, or chunked (RFC 9112 7.1, with
/// extensions and trailers; bounded state, any size). A request that expects
/// "100 Continue" before it sends its body gets the answer at once, with
/// "Connection: close" (as Go's net/http does for a handler that does not
/// read the body): the client then never sends it, and nothing it sends later
/// on that connection can be mistaken for it. A transfer coding other than
/// chunked gets 501. Anything malformed (a bad request line or header, bare
/// LF line ends, a missing Host in HTTP/1.1, conflicting Content-Length
/// values, Content-Length beside Transfer-Encoding, Transfer-Encoding in
/// HTTP/1.0, or headers over 8 KiB) gets 400. Both close the connection. A
/// malformed chunk closes it too, with no 400: its request was answered when
/// its head came (a second answer would be taken for the next request's).
/// Responses carry Date (RFC 9110 6.6.1). Public API only.
/// Tested by test/api/http1_test.cpp.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>
#include <ctime>

#include <weft/net.hpp>

namespace weft_examples {

/// What parse_http_request found at the front of a buffer.
struct http_request {
    enum class status { incomplete, complete, bad, not_implemented };
    status state = status::incomplete;
    std::size_t header_bytes = 0;  ///< request line + headers + blank line (when complete)
    std::uint64_t body_bytes = 0;  ///< Content-Length (when complete)
    bool chunked = false;          ///< a chunked body follows instead
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
    bool chunked = false, other_coding = false, expect_continue = false;
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
        // A list of codings over any number of lines; chunked must come last, once.
        if (value.empty()) return false;
        while (!value.empty()) {
            std::size_t comma = value.find(',');
            std::string_view coding = trim_ows(value.substr(0, comma));
            if (f.chunked) return false;  // anything after chunked
            if (iequals(coding, "chunked")) f.chunked = true;
            else if (is_token(coding)) f.other_coding = true;
            else if (!coding.empty()) return false;
            value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
        }
    } else if (iequals(name, "expect")) {
        if (!iequals(value, "100-continue")) return false;  // RFC 9110 10.1.1 allows 417; a 400 ends it as well
        f.expect_continue = true;
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
    const bool coded = f.chunked || f.other_coding;
    // RFC 9112 3.2: an HTTP/1.1 request without Host is a 400. 6.1: Transfer-Encoding
    // beside Content-Length, or in HTTP/1.0, is a framing a proxy may read otherwise
    // (request smuggling): refused.
    if ((!r.http10 && !f.host) || (coded && (f.has_length || r.http10))) {
        r.state = http_request::status::bad;
        return r;
    }
    if (f.other_coding) {  // 6.1: a coding the server does not understand, or chunked not last
        r.state = http_request::status::not_implemented;
        return r;
    }
    r.state = http_request::status::complete;
    r.header_bytes = pos;
    r.body_bytes = f.length;
    r.chunked = f.chunked;
    r.keep_alive = r.http10 ? f.keep_alive && !f.close : !f.close;
    // The client waits for "100 Continue" before its body: answer and close (header comment).
    if (f.expect_continue && !r.http10 && (f.chunked || f.length > 0)) r.keep_alive = false;
    return r;
}

/// Skips a chunked body (RFC 9112 7.1) fed in pieces of any size, as
/// strictly as the RFC's grammar: a chunk size in hex (at most 15 significant
/// digits), optional whitespace then ";" extensions, CRLF, the data, CRLF;
/// after the last chunk, trailer lines that are header fields ("name:
/// value"), then a blank line. The size line with its extensions and the
/// trailers are bounded like headers; anything else malformed is `bad`
/// (a lenient reading, "1 0" as 1, is how a proxy and a server come to frame
/// one stream differently).
class chunked_skipper {
public:
    enum class result { more, done, bad };

    /// Consumes from the front of `in` (sets `used`); `done` once the body has ended.
    result feed(std::string_view in, std::size_t& used) {
        used = 0;
        while (used < in.size()) {
            const char c = in[used];
            if (st_ == st::data) {
                const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(left_, in.size() - used));
                used += k;
                left_ -= k;
                if (left_ == 0) st_ = st::data_cr;
                continue;
            }
            ++used;
            if (st_ <= st::ext && ++line_ > http_detail::max_header_bytes) return result::bad;
            if (st_ >= st::trailer_name && st_ <= st::trailer_value && ++trailers_ > http_detail::max_header_bytes)
                return result::bad;
            switch (st_) {
                case st::size: {
                    const int v = hex(c);
                    if (v >= 0) {
                        if ((left_ != 0 || v != 0) && ++significant_ > 15) return result::bad;
                        left_ = left_ * 16 + static_cast<std::uint64_t>(v);
                        digits_ = true;
                        break;
                    }
                    if (!digits_) return result::bad;
                    st_ = st::size_ws;
                    [[fallthrough]];
                }
                case st::size_ws:  // BWS before ";"
                    if (c == ';') st_ = st::ext;
                    else if (c == '\r') st_ = st::size_lf;
                    else if (c != ' ' && c != '\t') return result::bad;
                    break;
                case st::ext:
                    if (c == '\r') st_ = st::size_lf;
                    else if (!text(c)) return result::bad;
                    break;
                case st::size_lf:
                    if (c != '\n') return result::bad;
                    st_ = left_ == 0 ? st::trailer_start : st::data;
                    break;
                case st::data_cr:
                    if (c != '\r') return result::bad;
                    st_ = st::data_lf;
                    break;
                case st::data_lf:
                    if (c != '\n') return result::bad;
                    digits_ = false;
                    significant_ = 0;
                    line_ = 0;
                    st_ = st::size;
                    break;
                case st::trailer_start:
                    if (c == '\r') {
                        st_ = st::final_lf;
                        break;
                    }
                    if (!http_detail::is_tchar(static_cast<unsigned char>(c))) return result::bad;
                    ++trailers_;
                    st_ = st::trailer_name;
                    break;
                case st::trailer_name:
                    if (c == ':') st_ = st::trailer_value;
                    else if (!http_detail::is_tchar(static_cast<unsigned char>(c))) return result::bad;
                    break;
                case st::trailer_value:
                    if (c == '\r') st_ = st::trailer_lf;
                    else if (!text(c)) return result::bad;
                    break;
                case st::trailer_lf:
                    if (c != '\n') return result::bad;
                    st_ = st::trailer_start;
                    break;
                case st::final_lf:
                    if (c != '\n') return result::bad;
                    *this = chunked_skipper();
                    return result::done;
                case st::data:
                    break;  // handled above
            }
        }
        return result::more;
    }

private:
    // In this order: the size line's states first, then the trailer's (feed's bounds).
    enum class st { size, size_ws, ext, size_lf, data, data_cr, data_lf, trailer_start, trailer_name, trailer_value,
                    trailer_lf, final_lf };
    static int hex(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') return (c | 0x20) - 'a' + 10;
        return -1;
    }
    static bool text(char c) { return static_cast<unsigned char>(c) >= 0x20 ? c != 0x7f : c == '\t'; }

    st st_ = st::size;
    std::uint64_t left_ = 0;
    bool digits_ = false;
    int significant_ = 0;       // digits after leading zeros
    std::size_t line_ = 0;      // bytes of this chunk's size line
    std::size_t trailers_ = 0;  // bytes of trailer lines
};

namespace http_detail {
/// "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" for now, formatted once a second per thread.
inline std::string_view date_line() {
    thread_local std::time_t at = -1;
    thread_local char line[64];
    thread_local std::size_t len = 0;
    const std::time_t now = std::time(nullptr);
    if (now != at) {
        std::tm tm{};
        ::gmtime_r(&now, &tm);
        len = std::strftime(line, sizeof line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);  // C locale names
        at = now;
    }
    return std::string_view(line, len);
}
}  // namespace http_detail

/// Appends the response to `r` to `out`.
inline void append_http_response(std::string& out, const http_request& r) {
    out += "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n";
    out += http_detail::date_line();
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
    static constexpr std::string_view not_implemented =
        "HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
        "Connection: close\r\n\r\nnot implemented\n";
    char in[http_detail::max_header_bytes + 1024];
    std::size_t have = 0;      // bytes in `in` not yet consumed
    std::uint64_t skip = 0;    // body bytes of the last request still to discard
    bool in_chunks = false;    // the last request's chunked body is still being skipped
    chunked_skipper chunks;
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
                if (in_chunks) {
                    const auto res = chunks.feed(std::string_view(in + pos, have - pos), k);
                    pos += k;
                    if (res == chunked_skipper::result::more) break;
                    in_chunks = false;
                    if (res == chunked_skipper::result::bad) {  // its request has its answer: just close
                        close = true;
                        break;
                    }
                }
                http_request r = parse_http_request(std::string_view(in + pos, have - pos));
                if (r.state == http_request::status::incomplete) break;
                if (r.state != http_request::status::complete) {
                    out += r.state == http_request::status::bad ? bad_request : not_implemented;
                    close = true;
                    break;
                }
                append_http_response(out, r);
                pos += r.header_bytes;
                skip = r.body_bytes;
                in_chunks = r.chunked;
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
