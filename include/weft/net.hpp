/// @file
/// `weft::net`: TCP and UDP sockets whose blocking calls park the calling
/// fiber (through the runtime's epoll reactor) instead of its worker thread.
///
/// The same calls work from a plain OS thread, where they block the thread
/// (poll(2)). Every socket is non-blocking underneath and close-on-exec;
/// writes never raise SIGPIPE (MSG_NOSIGNAL). Errors are std::system_error
/// with the errno code (std::errc::timed_out when a deadline passes,
/// connection_refused, connection_reset, broken_pipe, ...); a blocking call
/// of a cancelled fiber throws weft::operation_cancelled. Bad arguments (an
/// unparsable address) throw std::invalid_argument; a call on a closed or
/// moved-from socket throws std::system_error(bad_file_descriptor).
///
/// A socket object is used by one fiber at a time per direction: one may
/// read while another writes (a reader and a writer fiber per connection,
/// as in Go); close() from any fiber wakes both with bad_file_descriptor.
/// (Two concurrent readers, or writers, are not undefined behaviour, but
/// their bytes interleave in no useful order.) The descriptor is closed only
/// once no call is using it, so its number cannot be reused under a call in
/// flight. Moving, releasing or destroying a socket while another fiber uses
/// it is a bug (weft aborts with a message when it notices). A plain thread
/// blocked in a call learns of a close() within 100 ms (its wait is poll(2)
/// in slices). close() acts on this descriptor only, as close(2) and Go's
/// Close do: a duplicate of it (dup(2), one passed over a Unix socket, a
/// child's inherited copy) keeps the connection or the listener working.
///
/// Deadlines are read when a call starts: setting one (from any fiber) does
/// not affect a call that is already waiting; close() does.
///
/// "May suspend" also covers a yield without waiting: on a fiber, every
/// 128th data or accept call in a row that did not park yields to the
/// worker's other fibers (a cooperative budget, as Tokio's), keeping its
/// result; Go gets the same fairness from preemption.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <weft/config.hpp>
#include <weft/detail/deadline.hpp>

namespace weft::detail {
/// Internal (src/io/net.cpp, N1-N6): a socket descriptor and the count of
/// calls using it. Not a public API.
struct net_fd {
    mutable std::atomic<int> fd{-1};            // -1: none (never opened, released, or closed)
    mutable std::atomic<std::uint32_t> use{0};  // bit 0: close() began; bits 1..: calls in flight
    mutable std::atomic<std::uint64_t> drained{0};  // N6: 0, or 1 | the read sequence before a short read << 1
    net_fd() noexcept = default;
    explicit net_fd(int f) noexcept : fd(f) {}
    int get() const noexcept { return fd.load(std::memory_order_relaxed); }  // relaxed: a snapshot, no data behind it
    bool open() const noexcept {
        return (use.load(std::memory_order_relaxed) & 1u) == 0 && get() >= 0;  // relaxed: a snapshot
    }
};
/// A deadline kept as steady-clock ticks, so that a fiber may set it while
/// another reads it. One on another clock is converted when set.
struct net_deadline {
    static_assert(std::is_same_v<std::chrono::steady_clock::period, std::nano>, "ticks are steady nanoseconds");
    std::atomic<std::chrono::steady_clock::rep> ticks{std::chrono::steady_clock::time_point::max().time_since_epoch().count()};
    net_deadline() noexcept = default;
    net_deadline(const net_deadline& o) noexcept : ticks(o.ticks.load(std::memory_order_relaxed)) {}  // relaxed: a value copy
    net_deadline& operator=(const net_deadline& o) noexcept {
        set(o.get());
        return *this;
    }
    void set(std::chrono::steady_clock::time_point t) noexcept {
        ticks.store(t.time_since_epoch().count(), std::memory_order_relaxed);  // relaxed: a value; the call that reads it publishes nothing
    }
    /// Any clock, any precision: saturated (a coarse max() stays "none"
    /// instead of overflowing); another clock's time is measured from its
    /// now(). Throws std::invalid_argument for a NaN time.
    template <class Clock, class Duration>
    void set_any(const std::chrono::time_point<Clock, Duration>& t) {
        static_assert(std::chrono::is_clock_v<Clock>, "weft: a deadline needs a std::chrono clock's time_point");
        set(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(to_steady_ns(t))));
    }
    std::chrono::steady_clock::time_point get() const noexcept {
        return std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(ticks.load(std::memory_order_relaxed)));  // relaxed: as set()
    }
};

/// The read and write deadlines of tcp_stream and udp_socket: their public
/// setters and getters, written once.
class WEFT_API net_rw_deadlines {
public:
    /// Absolute deadlines for later reads / writes (time_point::max() of
    /// any clock: none, the default). A call that would wait past its
    /// deadline throws std::system_error(std::errc::timed_out); the deadline
    /// stays in force until changed, as Go's SetReadDeadline. A call that
    /// need not wait succeeds even past its deadline. Never suspends; any
    /// fiber or thread. Any std::chrono clock and precision: a time on
    /// another clock than steady_clock (weft::net::clock), system_clock say,
    /// is converted when it is set, as Go keeps a deadline's monotonic
    /// reading, so a later step of that clock does not move it; the getters
    /// give it on steady_clock. Throws std::invalid_argument only for a NaN
    /// time (floating-point durations), and then changes nothing.
    template <class Clock, class Duration>
    void set_read_deadline(const std::chrono::time_point<Clock, Duration>& t) {
        read_deadline_.set_any(t);
    }
    template <class Clock, class Duration>
    void set_write_deadline(const std::chrono::time_point<Clock, Duration>& t) {
        write_deadline_.set_any(t);
    }
    template <class Clock, class Duration>
    void set_deadline(const std::chrono::time_point<Clock, Duration>& t) {
        read_deadline_.set_any(t);
        write_deadline_.set(read_deadline_.get());  // one conversion: both the same
    }
    std::chrono::steady_clock::time_point read_deadline() const noexcept { return read_deadline_.get(); }
    std::chrono::steady_clock::time_point write_deadline() const noexcept { return write_deadline_.get(); }

protected:
    net_rw_deadlines() noexcept = default;
    net_rw_deadlines(const net_rw_deadlines&) noexcept = default;
    net_rw_deadlines& operator=(const net_rw_deadlines&) noexcept = default;
    ~net_rw_deadlines() = default;

    net_deadline read_deadline_;
    net_deadline write_deadline_;
};
}  // namespace weft::detail

namespace weft::net {

using clock = std::chrono::steady_clock;

/// An IPv4 or IPv6 address and a port (a value type).
class WEFT_API endpoint {
public:
    /// 0.0.0.0:0.
    endpoint() noexcept;
    /// From an address literal ("127.0.0.1", "::1"; no host names) and a
    /// port. Throws std::invalid_argument naming the bad text.
    endpoint(std::string_view address, std::uint16_t port);
    /// "127.0.0.1:80", "[::1]:80" (an IPv6 literal needs brackets; no
    /// host-less ":80"). Throws std::invalid_argument naming the bad text
    /// (control characters as \xNN) and saying what is wrong with it.
    static endpoint parse(std::string_view text);
    /// As parse, but empty instead of throwing.
    static std::optional<endpoint> try_parse(std::string_view text) noexcept;
    /// From a socket address (AF_INET or AF_INET6; else std::invalid_argument).
    static endpoint from_sockaddr(const sockaddr* sa, socklen_t len);

    bool is_v4() const noexcept;
    bool is_v6() const noexcept;
    std::uint16_t port() const noexcept;
    /// "127.0.0.1", "::1".
    std::string address() const;
    /// "127.0.0.1:80", "[::1]:80".
    std::string to_string() const;

    const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
    socklen_t size() const noexcept;
    int family() const noexcept { return storage_.ss_family; }

    friend WEFT_API bool operator==(const endpoint& a, const endpoint& b) noexcept;

private:
    sockaddr_storage storage_;
};

WEFT_API std::ostream& operator<<(std::ostream& os, const endpoint& e);

/// The addresses of `host` (a name or a literal) with `port`, via
/// getaddrinfo(3) run on the blocking pool (spawn_blocking), so only the
/// calling fiber waits. May suspend; callable from fibers and plain threads.
/// Throws std::system_error: the category "resolve" carries getaddrinfo's
/// EAI_* code (its message is gai_strerror's); an empty result is EAI_NONAME;
/// EAI_SYSTEM becomes the errno it stands for (generic category). An address
/// literal is answered without the pool, an IPv6 one also in brackets
/// ("[::1]", as a URL writes it). Throws std::invalid_argument, before any
/// lookup, for a numeric host that is not a literal endpoint accepts
/// ("127.1", "0x7f.1": shorthands getaddrinfo would read), for brackets
/// around anything but an IPv6 literal, and for a host holding a space, a
/// control character or a bracket ("localhost\n"); and whatever spawn_blocking throws
/// (its pool's configuration errors). Not cancellable and without a timeout
/// of its own: a fiber waits for getaddrinfo, and runtime::shutdown() waits
/// for the lookup to end. The result has no duplicates, in getaddrinfo's
/// order (RFC 6724 preference).
WEFT_API std::vector<endpoint> resolve(std::string_view host, std::uint16_t port);

/// The category of resolve()'s errors: name() is "resolve", values are
/// getaddrinfo's EAI_* codes, message() is gai_strerror's. A temporary
/// failure (EAI_AGAIN) compares equal to
/// std::errc::resource_unavailable_try_again, EAI_MEMORY to
/// not_enough_memory, EAI_FAMILY (and glibc's EAI_ADDRFAMILY) to
/// address_family_not_supported, EAI_BADFLAGS to invalid_argument; "no such
/// host" (EAI_NONAME, EAI_NODATA) and a permanent failure (EAI_FAIL) have no
/// std::errc and compare equal only to themselves.
WEFT_API const std::error_category& resolve_category() noexcept;

/// What tcp_stream::read_exact() and write_all() throw when they fail: the
/// error of the system call or wait that failed (code() as the other calls
/// give it: timed_out at the deadline, connection_reset, bad_file_descriptor
/// after close(), no_message_available for an end of stream in the middle),
/// and how many bytes were read into the buffer or written before it, so a
/// deadline or a reset loses nothing: the caller knows where to resume. A
/// fiber's cancellation (weft::operation_cancelled) is not wrapped.
class WEFT_API transfer_error : public std::system_error {
public:
    transfer_error(std::error_code ec, const std::string& what, std::size_t bytes_transferred);
    ~transfer_error() override;
    /// Bytes read into the buffer / written, from its start, before the failure.
    std::size_t bytes_transferred() const noexcept { return bytes_; }

private:
    std::size_t bytes_;
};

/// A connected TCP socket. Move-only; the destructor closes it.
class WEFT_API tcp_stream : public detail::net_rw_deadlines {
public:
    /// Not connected (every I/O call throws bad_file_descriptor).
    tcp_stream() noexcept = default;
    /// Adopts a connected (or connecting) stream socket: makes it
    /// non-blocking. Throws std::invalid_argument when fd is negative, not a
    /// socket, not SOCK_STREAM or a listening socket; std::system_error if
    /// getsockopt(2) or fcntl(2) fails. When it throws, the caller still
    /// owns fd. Never suspends.
    explicit tcp_stream(int fd);
    tcp_stream(tcp_stream&& o) noexcept;
    tcp_stream& operator=(tcp_stream&& o) noexcept;  // closes what it held
    ~tcp_stream();  ///< close(): never suspends

    /// Connects to `to`, giving up after `timeout` (std::errc::timed_out);
    /// without one, waits as long as the kernel tries. The timeout saturates
    /// (hours::max() means none); one <= 0 does not wait, so the call
    /// succeeds only if the connection completes at once (as it may on
    /// loopback). May suspend; from fibers and plain threads. Throws
    /// std::system_error (connection_refused, timed_out,
    /// network_unreachable, ...).
    static tcp_stream connect(const endpoint& to) { return connect_until(to, detail::no_deadline); }
    template <class Rep, class Period>
    static tcp_stream connect(const endpoint& to, const std::chrono::duration<Rep, Period>& timeout) {
        return connect_until(to, detail::deadline_after_ns(detail::saturating_ns(timeout)));
    }
    /// As above with an address literal ("127.0.0.1:80", "[::1]:80"; host
    /// names: net::resolve, then connect to one of its endpoints). Throws
    /// std::invalid_argument for other text.
    static tcp_stream connect(std::string_view to) { return connect(endpoint::parse(to)); }
    template <class Rep, class Period>
    static tcp_stream connect(std::string_view to, const std::chrono::duration<Rep, Period>& timeout) {
        return connect(endpoint::parse(to), timeout);
    }

    /// Reads at most `n` bytes (at least 1 unless n == 0); 0 means end of
    /// stream. Waits while nothing is available, up to the read deadline.
    /// May suspend.
    std::size_t read(void* buf, std::size_t n);
    /// Reads exactly `n` bytes. Returns false if the stream ended before the
    /// first byte; throws transfer_error (a std::system_error) with
    /// std::errc::no_message_available if it ended after some but not all,
    /// and for any other failure once it has started (the read deadline:
    /// timed_out), giving the count of bytes already in `buf` (a closed
    /// socket: plain bad_file_descriptor, nothing read). May suspend.
    bool read_exact(void* buf, std::size_t n);
    /// Writes at least 1 byte (unless n == 0), at most `n`; returns how many.
    /// May suspend (while the send buffer is full), up to the write deadline.
    std::size_t write(const void* buf, std::size_t n);
    /// Writes all `n` bytes, across partial writes. May suspend. Throws
    /// transfer_error (a std::system_error) with how many bytes were written
    /// before the failure (the write deadline: timed_out).
    void write_all(const void* buf, std::size_t n);
    void write_all(std::string_view s) { write_all(s.data(), s.size()); }

    /// The peer reads end of stream after what was written (shutdown(SHUT_WR)).
    /// Never suspends. Throws std::system_error.
    void shutdown_write();
    /// Closes the socket; fibers blocked on it wake with
    /// bad_file_descriptor. Idempotent. Never suspends.
    void close() noexcept;
    bool is_open() const noexcept { return fd_.open(); }

    // Deadlines: set_read_deadline, set_write_deadline, set_deadline and their
    // getters, from detail::net_rw_deadlines (documented there).

    /// TCP_NODELAY (Nagle off when true). Streams from connect() and
    /// accept() start with it on, as Go's do; adopted ones keep their own.
    /// Never suspends. Throws std::system_error.
    void set_nodelay(bool on);
    /// The address the stream was accepted from or connected to, kept from
    /// then on as Go's RemoteAddr: it still answers after the peer reset the
    /// connection (to name the peer in a log line). An adopted stream asks
    /// getpeername(2) when adopted, or, if it was not connected yet, at each
    /// call (std::system_error(not_connected) until it is, and after a
    /// reset). Throws bad_file_descriptor on a closed socket,
    /// std::invalid_argument for an AF_UNIX socket (adopted). Never suspends.
    endpoint peer_endpoint() const;
    /// getsockname(2). Never suspends. Throws std::system_error.
    endpoint local_endpoint() const;

    /// The descriptor, for socket options and the like. Reading it directly
    /// while weft reads it too is unsupported: in particular, do not take
    /// urgent data with recv(MSG_OOB) (read() relies on seeing it pending;
    /// with SO_OOBINLINE the urgent byte is ordinary data and that is fine).
    /// With SO_RCVLOWAT > 1, a read() that follows a short one waits for the
    /// low-water mark, as the kernel's readiness does.
    int native_handle() const noexcept { return fd_.get(); }
    /// Gives up ownership (-1 if none): weft forgets the descriptor (one
    /// epoll_ctl if it was registered), which is the caller's to close, with
    /// ::close or io::close. Never suspends. Must not race with a call on the
    /// socket.
    int release() noexcept;

private:
    friend class tcp_listener;
    struct adopt_t {};
    static tcp_stream connect_until(const endpoint& to, std::int64_t deadline_ns);  // steady ns
    tcp_stream(int fd, adopt_t) noexcept : fd_(fd) {}  // already non-blocking
    void remember_peer(const sockaddr* sa, socklen_t len) noexcept;
    std::string describe(const char* op, int fd) const;  // error text: "op <peer>" (the kept one first)

    detail::net_fd fd_;
    // The peer (peer_endpoint; net.cpp N7): set before the stream is shared,
    // then only by a move. peer_len_ 0: not known.
    sockaddr_in6 peer_{};
    socklen_t peer_len_ = 0;
};

/// A listening TCP socket (SO_REUSEADDR, as Go's net.Listen). Move-only.
class WEFT_API tcp_listener {
public:
    tcp_listener() noexcept = default;
    tcp_listener(tcp_listener&& o) noexcept;
    tcp_listener& operator=(tcp_listener&& o) noexcept;
    ~tcp_listener();  ///< close(): never suspends

    /// Binds and listens; port 0 picks a free port (see local_endpoint).
    /// The kernel caps `backlog` at net.core.somaxconn (0 is allowed: the
    /// kernel keeps a minimal queue). Throws std::invalid_argument for a
    /// negative backlog or bad text, std::system_error (address_in_use, ...).
    /// Never suspends; callable from fibers and plain threads, as every
    /// socket call (a plain thread blocks where a fiber would suspend).
    static tcp_listener bind(const endpoint& at, int backlog = 1024);
    static tcp_listener bind(std::string_view at, int backlog = 1024);

    /// The next connection (non-blocking, close-on-exec). May suspend.
    /// ECONNABORTED and similar per-connection failures are skipped; when
    /// the process is out of descriptors (EMFILE/ENFILE, also ENOBUFS/ENOMEM)
    /// it logs one warning per accept() call and retries with a growing
    /// pause (1 ms doubling up to 1 s) instead of spinning, so it recovers
    /// once descriptors are freed. Throws std::system_error (timed_out past
    /// the accept deadline, bad_file_descriptor once closed; a close() during
    /// such a pause is noticed when the pause ends).
    tcp_stream accept();
    /// As accept(), also giving the peer's address.
    tcp_stream accept(endpoint& peer);

    /// As tcp_stream's deadlines (any clock): for later accept() calls.
    /// Never suspends.
    template <class Clock, class Duration>
    void set_accept_deadline(const std::chrono::time_point<Clock, Duration>& t) {
        deadline_.set_any(t);
    }
    clock::time_point accept_deadline() const noexcept { return deadline_.get(); }
    /// getsockname(2). Never suspends. Throws std::system_error.
    endpoint local_endpoint() const;
    /// Fibers blocked in accept() wake with bad_file_descriptor. Idempotent.
    /// Never suspends.
    void close() noexcept;
    bool is_open() const noexcept { return fd_.open(); }
    int native_handle() const noexcept { return fd_.get(); }

private:
    detail::net_fd fd_;
    detail::net_deadline deadline_;
};

/// A UDP socket. Move-only.
class WEFT_API udp_socket : public detail::net_rw_deadlines {
public:
    udp_socket() noexcept = default;
    udp_socket(udp_socket&& o) noexcept;
    udp_socket& operator=(udp_socket&& o) noexcept;
    ~udp_socket();  ///< close(): never suspends

    /// Binds to `at` (port 0: any free port). Never suspends. Throws
    /// std::system_error (std::invalid_argument for bad text).
    static udp_socket bind(const endpoint& at);
    static udp_socket bind(std::string_view at);

    /// Sets the default peer (send/recv), as connect(2); only datagrams from
    /// it are received afterwards. Never suspends. Throws std::system_error.
    void connect(const endpoint& peer);
    /// Sends one datagram; returns its size. May suspend (send buffer full).
    /// Throws std::system_error (message_size when n is too large for one
    /// datagram, timed_out past the write deadline, ...).
    std::size_t send_to(const void* buf, std::size_t n, const endpoint& to);
    /// Receives one datagram; returns the bytes stored. A datagram longer
    /// than `n` is truncated and the rest is dropped, as recvfrom(2) and Go's
    /// ReadFrom do: a buffer of 65,536 bytes never truncates (n == 0 takes a
    /// datagram and stores nothing). May suspend, up to the read deadline.
    std::size_t recv_from(void* buf, std::size_t n, endpoint& from);
    /// As above, and `truncated` says whether the datagram was longer than
    /// `n` (its rest dropped: MSG_TRUNC, as Go's ReadMsgUDP flags).
    std::size_t recv_from(void* buf, std::size_t n, endpoint& from, bool& truncated);
    /// On a connected socket, as send_to and recv_from: may suspend, up to the
    /// write or read deadline. send and recv may throw connection_refused
    /// when an earlier datagram found no listener (an ICMP error, reported
    /// by whichever call comes next).
    std::size_t send(const void* buf, std::size_t n);
    std::size_t recv(void* buf, std::size_t n);
    std::size_t recv(void* buf, std::size_t n, bool& truncated);  // as recv_from's

    // Deadlines: as tcp_stream's (detail::net_rw_deadlines).
    /// getsockname(2). Never suspends. Throws std::system_error.
    endpoint local_endpoint() const;
    /// Fibers blocked on it wake with bad_file_descriptor. Idempotent. Never suspends.
    void close() noexcept;
    bool is_open() const noexcept { return fd_.open(); }
    int native_handle() const noexcept { return fd_.get(); }

private:
    detail::net_fd fd_;
};

}  // namespace weft::net
