// weft::net sockets: tcp_stream, tcp_listener, udp_socket over the reactor
// (include/weft/net.hpp is the spec; endpoint and resolve are in
// io/endpoint.cpp).
//
// Vocabulary. A *call* is one public operation on a socket that uses its
// descriptor (read, write_all, accept, ...). It *enters* the socket's net_fd
// before it loads the descriptor and *leaves* after its last system call.
// The net_fd word `use` holds bit 0 C ("close() began") and, above it, the
// number of calls in flight (2 per call).
//
// Every call is the same loop, Go's: load the descriptor's edge sequence,
// try the system call; on EAGAIN wait with detail::io_wait_owned and that
// sequence (a fiber parks through the reactor's owned, edge-triggered
// registration unless an edge came since: reactor.hpp E7; a plain thread
// polls), then try again.
//
// Invariants.
//  N1 Every descriptor is non-blocking and close-on-exec from birth
//     (SOCK_NONBLOCK | SOCK_CLOEXEC on socket(2) and accept4(2)); an adopted
//     one (tcp_stream(int)) is made non-blocking. Writes pass MSG_NOSIGNAL, so
//     a peer that is gone gives EPIPE, never SIGPIPE.
//  N2 A descriptor is closed exactly once, by io_close (which forgets the
//     reactor's registration, E1 in io/reactor.hpp), and only when no call
//     is in flight: its number cannot be reused under a call that still
//     holds it. Entering fails (EBADF) once C is set; entering and setting C
//     are CASes on `use`, so every call either entered before close() began
//     (and is counted) or fails.
//  N3 close() enters and sets C in one CAS (idempotent: a second close()
//     sees C and returns). If other calls were in flight it evicts the
//     descriptor (reactor.hpp E11): their waits, parked or to come, throw
//     bad_file_descriptor (a plain thread's within its 100 ms poll slice).
//     Then it leaves. The call that leaves last (the one whose fetch_sub
//     takes `use` from C|2 to C) closes the descriptor. close() never waits.
//     It does not shutdown(2) the socket: that would end the connection for
//     every duplicate of the descriptor as well (an earlier version did).
//  N4 A call checks C before each system call, and again when a system call
//     fails or reports end of stream, and throws bad_file_descriptor once C
//     is set, as net.hpp promises. A call whose check came before close()
//     set C reaches, at worst, a wait after its system call: that wait is
//     on the evicted descriptor and throws EBADF (E11: the eviction and the
//     wait's check of it are under the same descriptor lock, and C is set
//     before the eviction).
//  N5 Deadlines are read once, when a call starts (net_deadline is a relaxed
//     atomic so that another fiber may set it meanwhile, without effect on
//     that call). A call waits only after EAGAIN or, N6, after the last
//     read drained the queue, and then not once its deadline has passed: a
//     call that need not wait succeeds even past its deadline.
//
// Memory orders. Entering is a relaxed CAS: it publishes nothing, and the
// descriptor it then loads was stored before the socket object was shared
// (publication by whatever shared it). Leaving is an acq_rel fetch_sub: the
// release orders a call's system calls before its exit, the acquire makes
// the last leaver (who closes) see every earlier leaver's exit, so nothing
// of theirs comes after the close. close()'s CAS is acq_rel for the same
// reason (it may be the last leaver's predecessor or successor). Reading C
// in the loop is relaxed: it is a hint; what guarantees the call ends is the
// eviction, which its waits check under the descriptor lock (N4, E11).
//
//  N6 A stream read whose recv(2) came back short (the receive queue was
//     empty then) records the reactor's read sequence loaded before it
//     (`drained`, reactor.hpp E6); the next read waits with io_wait_drained
//     before its first recv instead of after an EAGAIN one - one system call
//     less per request/response round, as the epoll baseline's "a short read
//     means drained". A full read, end of stream, an error, a move or
//     release() clears the mark (a stale mark is still sound: E6 re-checks
//     under the descriptor lock; clearing only spares a useless park). What
//     makes it sound where a bare "short read => wait" is not: an end of
//     stream, reset or urgent byte that came with the last bytes is a state
//     without a new edge (E6's sticky bit), and a read_exact() or a second
//     reader may have taken an edge and left bytes queued (the sequence
//     moved). Not covered: a user who reads the urgent byte with
//     recv(MSG_OOB) on native_handle() (the kernel then stops reads at the mark
//     but no longer reports EPOLLPRI; documented as unsupported in net.hpp), and
//     a recv that faults part-way (EFAULT after a partial copy: a caller bug).
//     Tested by ReadSeesEndOfStreamOrResetThatCameWithTheLastBytes,
//     ReadAfterAReadExactThatLeftDataQueued and their neighbours in
//     test/api/net_test.cpp.
//
//  N7 A stream's peer address (peer_endpoint, as Go's RemoteAddr) is kept
//     in plain fields written before the stream is shared - by accept (from
//     accept4's address), connect (getpeername once connected, else the
//     address dialled) or adoption (getpeername, if connected then) - and
//     after that only by a move, which must not race with calls (above).
//     Readers need no atomics: publishing the stream to another fiber
//     publishes them. Unknown (an adopted stream still connecting): asked
//     of the kernel at each call.
//
// Memory orders of `drained`: relaxed - a hint whose soundness E6 checks under
// the descriptor lock; any value a reader stored is sound for this descriptor.
//
// Decisions where net.hpp is silent (and why):
//  - Concurrency of calls is not serialised (Go serialises reads and writes
//    with fdMutex): two readers are legal, their data interleave. Only the
//    close protocol (N2-N4) is enforced.
//  - Moving, releasing or destroying a socket while a call is in flight on
//    it aborts with a message (it would be a use-after-free) - checked on the
//    count, so it catches the misuse when it overlaps, not always.
//  - accept(): ECONNABORTED, EPROTO, EPERM (a firewall) and the pending
//    network errors accept(2) lists (ENETDOWN, ENOPROTOOPT, EHOSTDOWN,
//    ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH) are about that one
//    connection: skipped. EMFILE, ENFILE, ENOBUFS, ENOMEM: a warning (once
//    per accept() call), then sleep 1 ms, 2 ms, ... up to 1 s between tries,
//    never past the accept deadline; the pause restarts at 1 ms on the next
//    accept() call, i.e. after a success. The pause is a timed sleep, not a
//    wait on the descriptor, since a queued connection keeps the listener
//    readable (a poll would spin); so close() is noticed when it ends.
//  - tcp_listener::bind sets SO_REUSEADDR (as Go); IPV6_V6ONLY is left at
//    the system default (Linux: "[::]" accepts IPv4 too). udp_socket::bind
//    sets nothing. A negative backlog is std::invalid_argument; a large one
//    is the kernel's to cap (somaxconn).
//  - tcp_stream(fd) adopts only a non-listening SOCK_STREAM socket (TCP or
//    AF_UNIX, connected or connecting): a pipe, a datagram socket or a
//    listener is std::invalid_argument at once instead of an unrelated
//    errno at its first call.
//  - read(n == 0) and write(n == 0) return 0 without a system call (after
//    checking the socket is open); UDP sends and receives of 0 bytes go to
//    the kernel (an empty datagram is a datagram).
//  - Error messages name the operation and an endpoint: "connect
//    127.0.0.1:9: Connection refused", "read 127.0.0.1:9: ..." (the peer,
//    else the local address, else "fd N" when the socket no longer has
//    one), "accept on 127.0.0.1:80: ...". Codes are std::generic_category
//    errno values.
//
// Tested by test/api/net_test.cpp, test/stress/net_stress_test.cpp.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>

#include <weft/error.hpp>
#include <weft/io.hpp>
#include <weft/net.hpp>
#include <weft/timer.hpp>

#include "io/reactor.hpp"
#include "util/check.hpp"
#include "util/log.hpp"

namespace weft::net {

namespace {

using weft::detail::net_fd;

constexpr std::uint32_t closing_bit = 1;  // C
constexpr std::uint32_t one_call = 2;

[[noreturn]] void throw_errno(int err, const std::string& what) {
    throw std::system_error(err, std::generic_category(), what);
}

// recv/send as raw system calls: libc's wrappers are pthread cancellation
// points, which costs two calls around every syscall (measured ~2% of an
// echo server's time); weft fibers are never pthread-cancelled. Sanitizer
// builds keep libc's calls: ASan checks the buffer and TSan records the
// kernel's write into it only in their interceptors.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
ssize_t sys_recv(int fd, void* buf, std::size_t n) noexcept { return ::recv(fd, buf, n, 0); }
ssize_t sys_send(int fd, const void* buf, std::size_t n) noexcept { return ::send(fd, buf, n, MSG_NOSIGNAL); }  // N1
#else
ssize_t sys_recv(int fd, void* buf, std::size_t n) noexcept {
    return ::syscall(SYS_recvfrom, fd, buf, n, 0, nullptr, nullptr);
}
ssize_t sys_send(int fd, const void* buf, std::size_t n) noexcept {
    return ::syscall(SYS_sendto, fd, buf, n, MSG_NOSIGNAL, nullptr, 0);  // N1
}
#endif

std::int64_t deadline_ns(clock::time_point t) noexcept {
    return t == clock::time_point::max() ? weft::detail::no_deadline : weft::detail::to_steady_ns(t);
}

/// Error text: "op 1.2.3.4:5" naming the peer (peer == true) if the socket
/// has one, else "op on 1.2.3.4:5" naming the local address, else "op fd N".
std::string describe(const char* op, int fd, bool peer) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    auto* sa = reinterpret_cast<sockaddr*>(&ss);
    if (fd >= 0) {
        if (peer && ::getpeername(fd, sa, &len) == 0 && (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
            return std::string(op) + " " + endpoint::from_sockaddr(sa, len).to_string();
        len = sizeof ss;
        if (::getsockname(fd, sa, &len) == 0 && (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
            return std::string(op) + " on " + endpoint::from_sockaddr(sa, len).to_string();
    }
    return std::string(op) + " fd " + std::to_string(fd);
}

void abort_in_use(const char* what) noexcept {
    std::fprintf(stderr,
                 "weft::net: a socket was %s while another call was using it (close() it and let that call "
                 "return first)\n",
                 what);
    std::fflush(stderr);
    std::abort();
}

/// N3: leaves; the last call out after close() began closes the descriptor.
void leave(net_fd& s) noexcept {
    // acq_rel: release orders this call's system calls before its exit; acquire
    // makes the last leaver see every earlier exit before it closes (N2).
    const std::uint32_t prev = s.use.fetch_sub(one_call, std::memory_order_acq_rel);
    if (prev == (closing_bit | one_call)) {
        const int fd = s.fd.exchange(-1, std::memory_order_relaxed);  // relaxed: we are alone now (count 0, C set)
        if (fd >= 0) (void)weft::detail::io_close(fd);
    }
}

/// N3.
void close_fd(net_fd& s) noexcept {
    std::uint32_t cur = s.use.load(std::memory_order_relaxed);  // relaxed: the CAS below decides
    do {
        if (cur & closing_bit) return;  // idempotent
        // acq_rel: as leave(); failure relaxed: we only retry.
    } while (!s.use.compare_exchange_weak(cur, (cur + one_call) | closing_bit, std::memory_order_acq_rel,
                                          std::memory_order_relaxed));
    const int fd = s.fd.load(std::memory_order_relaxed);  // relaxed: stored before the socket was shared
    if (cur >= one_call && fd >= 0) weft::detail::io_evict(fd);  // N3: wake the calls in flight (E11)
    leave(s);
}

/// For moves and release(): the descriptor, which `s` no longer owns.
int take_fd(net_fd& s, const char* what) noexcept {
    const std::uint32_t u = s.use.load(std::memory_order_relaxed);  // relaxed: a misuse check
    if (u >= one_call) abort_in_use(what);
    const int fd = s.fd.exchange(-1, std::memory_order_relaxed);  // relaxed: not shared (no call in flight)
    s.use.store(0, std::memory_order_relaxed);                    // relaxed: as above
    s.drained.store(0, std::memory_order_relaxed);                // relaxed: as above (N6)
    return (u & closing_bit) ? -1 : fd;                           // a closed socket's fd is already gone
}

/// Move-assignment's descriptor part: closes what `dst` held, takes `src`'s.
void assign_fd(net_fd& dst, net_fd& src) noexcept {
    if (dst.use.load(std::memory_order_relaxed) >= one_call) abort_in_use("assigned to");  // relaxed: a misuse check
    close_fd(dst);
    const int fd = take_fd(src, "moved");
    dst.use.store(0, std::memory_order_relaxed);  // relaxed: not shared (no call in flight)
    dst.drained.store(0, std::memory_order_relaxed);  // relaxed: as above (N6)
    dst.fd.store(fd, std::memory_order_relaxed);  // relaxed: as above
}

/// A socket's destructor.
void destroy_fd(net_fd& s) noexcept {
    close_fd(s);
    if (s.use.load(std::memory_order_relaxed) >= one_call) abort_in_use("destroyed");  // relaxed: a misuse check
}

/// One call in flight (N2): enters in the constructor, leaves in the destructor.
class call {
public:
    call(net_fd& s, const char* op) : s_(s) {
        std::uint32_t cur = s.use.load(std::memory_order_relaxed);  // relaxed: the CAS decides
        do {
            if (cur & closing_bit) throw_errno(EBADF, std::string(op) + ": socket closed");
            // relaxed: entering publishes nothing (see the file comment).
        } while (!s.use.compare_exchange_weak(cur, cur + one_call, std::memory_order_relaxed,
                                              std::memory_order_relaxed));
        fd_ = s.fd.load(std::memory_order_relaxed);  // relaxed: stored before the socket was shared
        if (fd_ < 0) {
            leave(s);
            throw_errno(EBADF, std::string(op) + ": socket not open");
        }
    }
    ~call() { leave(s_); }
    call(const call&) = delete;
    call& operator=(const call&) = delete;

    int fd() const noexcept { return fd_; }
    const net_fd& sock() const noexcept { return s_; }
    /// N4.
    bool closing() const noexcept {
        return (s_.use.load(std::memory_order_relaxed) & closing_bit) != 0;  // relaxed: a hint, re-checked (N4)
    }
    [[noreturn]] void throw_closed(const char* op) const { throw_errno(EBADF, std::string(op) + ": socket closed"); }

private:
    net_fd& s_;
    int fd_ = -1;
};

/// Runs a reactor wait, its error message renamed after the operation. A
/// fiber's cancellation (operation_cancelled, a fiber_error) passes unchanged.
template <class What, class Wait>
void renamed_errors(const What& what, Wait wait) {
    try {
        wait();
    } catch (const weft::fiber_error&) {
        throw;
    } catch (const std::system_error& e) {
        // A wait times out only at the call's deadline: say so, since the same code from
        // the kernel (a connection that died: keep-alive, retransmissions) means otherwise.
        if (e.code() == std::errc::timed_out) throw std::system_error(e.code(), what() + ": deadline exceeded");
        throw std::system_error(e.code(), what());
    }
}

/// read_exact / write_all: runs one step of a transfer that has moved `done`
/// of `n` bytes; its std::system_error becomes a transfer_error carrying that
/// count (nothing is lost), with e's own text (its what() without the code's
/// message) and the count. Cancellation (fiber_error) passes unchanged.
template <class Step>
std::size_t transfer_step(std::size_t done, std::size_t n, const char* verb, Step step) {
    try {
        return step();
    } catch (const weft::fiber_error&) {
        throw;  // cancellation: the runtime is going away
    } catch (const std::system_error& e) {
        std::string_view text = e.what();
        const std::string tail = ": " + e.code().message();
        if (text.size() >= tail.size() && text.substr(text.size() - tail.size()) == tail)
            text.remove_suffix(tail.size());
        throw transfer_error(e.code(),
                             std::string(text) + " (" + std::to_string(done) + " of " + std::to_string(n) +
                                 " bytes " + verb + ")",
                             done);
    }
}

/// `seq`: weft::detail::io_seq loaded before the system call that said EAGAIN (reactor.hpp E7).
template <class What>
void wait_ready(int fd, bool write, std::int64_t deadline, const What& what, const std::uint64_t* seq = nullptr,
                const void* touch = nullptr) {
    renamed_errors(what, [=] { weft::detail::io_wait_owned(fd, write, deadline, seq, touch); });
}

/// The loop of every data call (N4): sys(fd) until it does not say EAGAIN.
/// Returns its non-negative result; `*seq_out` (if given): the edge sequence
/// loaded before the call that returned it (reactor.hpp E6).
template <class Sys, class What>
std::size_t io_loop(const call& c, const char* op, bool write, std::int64_t deadline, Sys sys, const What& what,
                    std::uint64_t* seq_out = nullptr) {
    for (;;) {
        const std::uint64_t seq = weft::detail::io_seq(c.fd(), write);  // before the call (E7) and C's check (N4)
        if (c.closing()) c.throw_closed(op);
        const ssize_t r = sys(c.fd());
        if (seq_out) *seq_out = seq;
        if (r > 0) {
            weft::detail::io_spent();  // W8: may yield; the result is ours meanwhile
            return static_cast<std::size_t>(r);
        }
        if (r == 0) {
            if (c.closing()) c.throw_closed(op);  // N4: close() began; say so rather than "end of stream"
            weft::detail::io_spent();
            return 0;
        }
        const int e = errno;
        if (e == EINTR) continue;
        if (e == EAGAIN || e == EWOULDBLOCK) {
            wait_ready(c.fd(), write, deadline, what, &seq, &c.sock());  // E10: c.closing() reads it next
            continue;
        }
        if (c.closing()) c.throw_closed(op);
        throw_errno(e, what());
    }
}

/// One stream recv into buf[0, n), n > 0, with N6: waits first if the last
/// read drained the queue, records whether this one did. Returns recv's
/// non-negative result (0: end of stream).
template <class What>
std::size_t stream_recv(const call& c, net_fd& s, const char* op, std::int64_t deadline, void* buf, std::size_t n,
                        const What& what) {
    const std::uint64_t mark = s.drained.load(std::memory_order_relaxed);  // relaxed: N6
    if (mark != 0) {
        if (c.closing()) c.throw_closed(op);
        renamed_errors(what, [&] {
            weft::detail::io_wait_drained(c.fd(), mark >> 1, deadline, &s);  // E10: the next closing() reads s
        });
    }
    std::uint64_t seq = 0;
    const std::size_t got = io_loop(
        c, op, false, deadline, [buf, n](int fd) { return sys_recv(fd, buf, n); }, what, &seq);
    // relaxed: N6. A short read leaves the mark; a full one or the end of stream clears it
    // (an error leaves whatever was there: any mark is sound, N6).
    s.drained.store(got > 0 && got < n ? (seq << 1) | 1 : 0, std::memory_order_relaxed);
    return got;
}

int open_socket(int family, int type, const std::string& what) {
    const int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);  // N1
    if (fd < 0) throw_errno(errno, what + ": socket");
    return fd;
}

/// Go's default for every TCP connection it makes or accepts: Nagle off
/// (docs/design/io.md). A failure (the peer already reset) is left for the
/// socket's next call to report.
void nodelay_by_default(int fd) noexcept {
    const int one = 1;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void set_int_option(int fd, int level, int name, int value, const std::string& what) {
    if (::setsockopt(fd, level, name, &value, sizeof value) != 0) throw_errno(errno, what);
}

endpoint sock_name(const net_fd& s, bool peer, const char* op) {
    call c(const_cast<net_fd&>(s), op);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    auto* sa = reinterpret_cast<sockaddr*>(&ss);
    const int r = peer ? ::getpeername(c.fd(), sa, &len) : ::getsockname(c.fd(), sa, &len);
    if (r != 0) throw_errno(errno, op);
    return endpoint::from_sockaddr(sa, len);
}

/// udp_socket's receives: one datagram by recvmsg(2), its sender into `from`
/// when given (from_len: its length), and whether it was cut to `n`
/// (MSG_TRUNC).
std::size_t recv_datagram(const call& c, const char* op, std::int64_t deadline, void* buf, std::size_t n,
                          sockaddr_storage* from, socklen_t& from_len, bool& truncated) {
    msghdr m{};
    iovec v{buf, n};
    const std::size_t r = io_loop(
        c, op, false, deadline,
        [&m, &v, from](int fd) {
            m = msghdr{};
            m.msg_name = from;
            m.msg_namelen = from ? sizeof *from : 0;
            m.msg_iov = &v;
            m.msg_iovlen = 1;
            return ::recvmsg(fd, &m, 0);
        },
        [&c, op, from] { return describe(op, c.fd(), from == nullptr); });
    truncated = (m.msg_flags & MSG_TRUNC) != 0;
    from_len = m.msg_namelen;
    return r;
}

}  // namespace

// ---------------------------------------------------------------- tcp_stream

tcp_stream::tcp_stream(int fd) {
    const std::string what = "weft::net::tcp_stream: cannot adopt fd " + std::to_string(fd);
    if (fd < 0) throw std::invalid_argument(what + ": negative descriptor");
    // A stream socket, not listening: anything else would fail only at its first call,
    // with an error about that call (ENOTSOCK, EDESTADDRREQ, ENOTCONN).
    int type = 0, listening = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
        if (errno == ENOTSOCK) throw std::invalid_argument(what + ": not a socket");
        throw_errno(errno, what);
    }
    if (type != SOCK_STREAM) throw std::invalid_argument(what + ": not a stream socket (SOCK_STREAM)");
    len = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening != 0)
        throw std::invalid_argument(what + ": a listening socket (accept() its connections instead)");
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ((flags & O_NONBLOCK) == 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0))
        throw_errno(errno, "weft::net::tcp_stream: fcntl(O_NONBLOCK) of fd " + std::to_string(fd));
    detail::io_forget(fd);  // E8: a registration left by a plain close of an earlier file with this number
    fd_.fd.store(fd, std::memory_order_relaxed);  // relaxed: not shared yet
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0)  // not connected yet: asked at each call
        remember_peer(reinterpret_cast<const sockaddr*>(&ss), sl);
}

tcp_stream::tcp_stream(tcp_stream&& o) noexcept
    : net_rw_deadlines(o),
      fd_(take_fd(o.fd_, "moved")),
      peer_(o.peer_),
      peer_len_(o.peer_len_) {}

tcp_stream& tcp_stream::operator=(tcp_stream&& o) noexcept {
    if (this != &o) {
        assign_fd(fd_, o.fd_);
        net_rw_deadlines::operator=(o);
        peer_ = o.peer_;
        peer_len_ = o.peer_len_;
    }
    return *this;
}

std::string tcp_stream::describe(const char* op, int fd) const {
    // The kept peer (N7) first: after a reset getpeername fails, and the
    // message would name only our own address.
    if (peer_len_ != 0)
        return std::string(op) + " " +
               endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&peer_), peer_len_).to_string();
    return net::describe(op, fd, true);
}

void tcp_stream::remember_peer(const sockaddr* sa, socklen_t len) noexcept {
    // Only an IPv4 or IPv6 address that fits (AF_UNIX: not kept; peer_endpoint says why).
    if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6) || len > static_cast<socklen_t>(sizeof peer_)) return;
    std::memcpy(&peer_, sa, len);
    peer_len_ = len;
}

transfer_error::transfer_error(std::error_code ec, const std::string& what, std::size_t bytes_transferred)
    : std::system_error(ec, what), bytes_(bytes_transferred) {}

transfer_error::~transfer_error() = default;

tcp_stream::~tcp_stream() {
    destroy_fd(fd_);
}

tcp_stream tcp_stream::connect_until(const endpoint& to, std::int64_t deadline) {
    const auto what = [&to] { return "connect " + to.to_string(); };
    tcp_stream s(open_socket(to.family(), SOCK_STREAM, what()), adopt_t{});  // closes on the way out of a throw
    const int fd = s.native_handle();
    nodelay_by_default(fd);
    sockaddr_storage ss{};
    socklen_t sl = 0;
    const auto has_peer = [&] {
        sl = sizeof ss;
        return ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0;
    };
    // N7: the peer as the kernel names it (a dial of 0.0.0.0 reaches 127.0.0.1), else `to`, as Go.
    const auto connected = [&](bool named) {
        if (named) s.remember_peer(reinterpret_cast<const sockaddr*>(&ss), sl);
        else s.remember_peer(to.data(), to.size());
        return std::move(s);
    };
    if (::connect(fd, to.data(), to.size()) == 0) return connected(has_peer());
    if (errno != EINPROGRESS && errno != EINTR) throw_errno(errno, what());  // EINTR: it goes on asynchronously
    for (;;) {
        wait_ready(fd, true, deadline, what);
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) throw_errno(errno, what());
        if (err == EISCONN) return connected(has_peer());
        if (err == 0) {
            // A wait may return early (reactor.hpp E2): connected only if it has a peer.
            if (has_peer()) return connected(true);
            continue;
        }
        if (err == EINPROGRESS || err == EALREADY || err == EINTR) continue;
        throw_errno(err, what());
    }
}

std::size_t tcp_stream::read(void* buf, std::size_t n) {
    call c(fd_, "read");
    if (n == 0) return 0;
    return stream_recv(c, fd_, "read", deadline_ns(read_deadline_.get()), buf, n,
                       [this, &c] { return describe("read", c.fd()); });
}

bool tcp_stream::read_exact(void* buf, std::size_t n) {
    call c(fd_, "read_exact");
    const std::int64_t deadline = deadline_ns(read_deadline_.get());
    auto* p = static_cast<char*>(buf);
    std::size_t got = 0;
    while (got < n) {
        const std::size_t r = transfer_step(got, n, "read", [&] {
            return stream_recv(c, fd_, "read_exact", deadline, p + got, n - got,
                               [this, &c] { return describe("read_exact", c.fd()); });
        });
        if (r == 0) {
            if (got == 0) return false;
            throw transfer_error(std::make_error_code(std::errc::no_message_available),
                                 describe("read_exact", c.fd()) + ": stream ended after " +
                                     std::to_string(got) + " of " + std::to_string(n) + " bytes",
                                 got);
        }
        got += r;
    }
    return true;
}

std::size_t tcp_stream::write(const void* buf, std::size_t n) {
    call c(fd_, "write");
    if (n == 0) return 0;
    return io_loop(c, "write", true, deadline_ns(write_deadline_.get()),
                   [buf, n](int fd) { return sys_send(fd, buf, n); },  // N1
                   [this, &c] { return describe("write", c.fd()); });
}

void tcp_stream::write_all(const void* buf, std::size_t n) {
    call c(fd_, "write_all");
    const std::int64_t deadline = deadline_ns(write_deadline_.get());
    const auto* p = static_cast<const char*>(buf);
    std::size_t done = 0;
    while (done < n) {
        done += transfer_step(done, n, "written", [&] {
            return io_loop(c, "write_all", true, deadline,
                           [p, done, n](int fd) { return sys_send(fd, p + done, n - done); },  // N1
                           [this, &c] { return describe("write_all", c.fd()); });
        });
    }
}

void tcp_stream::shutdown_write() {
    call c(fd_, "shutdown_write");
    if (::shutdown(c.fd(), SHUT_WR) != 0) {
        const int e = errno;
        if (c.closing()) c.throw_closed("shutdown_write");
        throw_errno(e, describe("shutdown_write", c.fd()));
    }
}

void tcp_stream::close() noexcept { close_fd(fd_); }

int tcp_stream::release() noexcept {
    const int fd = take_fd(fd_, "released");
    if (fd >= 0) detail::io_forget(fd);  // E8: a plain descriptor again
    return fd;
}

void tcp_stream::set_nodelay(bool on) {
    call c(fd_, "set_nodelay");
    set_int_option(c.fd(), IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0, describe("set_nodelay", c.fd()));
}

endpoint tcp_stream::peer_endpoint() const {
    if (peer_len_ == 0) return sock_name(fd_, true, "peer_endpoint");
    call c(const_cast<net_fd&>(fd_), "peer_endpoint");  // closed or moved-from: bad_file_descriptor, as the other calls
    return endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&peer_), peer_len_);
}
endpoint tcp_stream::local_endpoint() const { return sock_name(fd_, false, "local_endpoint"); }

// ---------------------------------------------------------------- tcp_listener

tcp_listener::tcp_listener(tcp_listener&& o) noexcept : fd_(take_fd(o.fd_, "moved")), deadline_(o.deadline_) {}

tcp_listener& tcp_listener::operator=(tcp_listener&& o) noexcept {
    if (this != &o) {
        assign_fd(fd_, o.fd_);
        deadline_ = o.deadline_;
    }
    return *this;
}

tcp_listener::~tcp_listener() {
    destroy_fd(fd_);
}

tcp_listener tcp_listener::bind(const endpoint& at, int backlog) {
    const std::string where = at.to_string();
    if (backlog < 0)
        throw std::invalid_argument("weft::net::tcp_listener::bind " + where + ": negative backlog " +
                                    std::to_string(backlog));
    tcp_listener l;
    const int fd = open_socket(at.family(), SOCK_STREAM, "bind " + where);
    l.fd_.fd.store(fd, std::memory_order_relaxed);  // relaxed: not shared yet
    set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1, "bind " + where + ": SO_REUSEADDR");
    if (::bind(fd, at.data(), at.size()) != 0) throw_errno(errno, "bind " + where);
    if (::listen(fd, backlog) != 0) throw_errno(errno, "listen " + where);
    return l;
}

tcp_listener tcp_listener::bind(std::string_view at, int backlog) { return bind(endpoint::parse(at), backlog); }

tcp_stream tcp_listener::accept() {
    endpoint ignored;
    return accept(ignored);
}

tcp_stream tcp_listener::accept(endpoint& peer) {
    using namespace std::chrono;
    call c(fd_, "accept");
    const std::int64_t deadline = deadline_ns(deadline_.get());
    const auto what = [&c] { return describe("accept", c.fd(), false); };
    std::int64_t pause_ns = 0;  // 0: not pausing (the warning is not logged yet)
    for (;;) {
        if (c.closing()) c.throw_closed("accept");
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        const std::uint64_t seq = weft::detail::io_seq(c.fd(), false);  // before the call (reactor.hpp E7)
        const int nfd = ::accept4(c.fd(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);  // N1
        if (nfd >= 0) {
            tcp_stream s(nfd, tcp_stream::adopt_t{});
            nodelay_by_default(nfd);
            if (pause_ns != 0) weft::detail::log().info("{}: accepting again", what());
            peer = endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
            s.remember_peer(reinterpret_cast<const sockaddr*>(&ss), len);
            weft::detail::io_spent();  // W8: an accept flood lets the accepted connections run
            return s;
        }
        const int e = errno;
        switch (e) {
        case EINTR:
            continue;
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            wait_ready(c.fd(), false, deadline, what, &seq);
            continue;
        // That connection's own trouble: take the next one.
        case ECONNABORTED:
        case EPROTO:
        case EPERM:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
            continue;
        // Out of descriptors or memory: pause, growing, instead of spinning.
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM: {
            if (pause_ns == 0) {
                pause_ns = 1'000'000;
                weft::detail::log().warn("{}: {}; retrying after a pause (1 ms, doubling up to 1 s) until "
                                         "resources are freed",
                                         what(), std::generic_category().message(e));
            } else {
                pause_ns = std::min<std::int64_t>(pause_ns * 2, 1'000'000'000);
            }
            const std::int64_t now = weft::detail::steady_now_ns();
            if (now >= deadline) throw_errno(ETIMEDOUT, what() + ": deadline exceeded");
            weft::detail::sleep_until_steady_ns(std::min(deadline, weft::detail::deadline_after_ns(pause_ns)));
            continue;
        }
        default:
            if (c.closing()) c.throw_closed("accept");
            throw_errno(e, what());
        }
    }
}

endpoint tcp_listener::local_endpoint() const { return sock_name(fd_, false, "local_endpoint"); }

void tcp_listener::close() noexcept { close_fd(fd_); }

// ---------------------------------------------------------------- udp_socket

udp_socket::udp_socket(udp_socket&& o) noexcept
    : net_rw_deadlines(o), fd_(take_fd(o.fd_, "moved")) {}

udp_socket& udp_socket::operator=(udp_socket&& o) noexcept {
    if (this != &o) {
        assign_fd(fd_, o.fd_);
        net_rw_deadlines::operator=(o);
    }
    return *this;
}

udp_socket::~udp_socket() {
    destroy_fd(fd_);
}

udp_socket udp_socket::bind(const endpoint& at) {
    const std::string where = at.to_string();
    udp_socket u;
    const int fd = open_socket(at.family(), SOCK_DGRAM, "bind " + where);
    u.fd_.fd.store(fd, std::memory_order_relaxed);  // relaxed: not shared yet
    if (::bind(fd, at.data(), at.size()) != 0) throw_errno(errno, "bind " + where);
    return u;
}

udp_socket udp_socket::bind(std::string_view at) { return bind(endpoint::parse(at)); }

void udp_socket::connect(const endpoint& peer) {
    call c(fd_, "connect");
    if (::connect(c.fd(), peer.data(), peer.size()) != 0) throw_errno(errno, "connect " + peer.to_string());
}

std::size_t udp_socket::send_to(const void* buf, std::size_t n, const endpoint& to) {
    call c(fd_, "send_to");
    return io_loop(c, "send_to", true, deadline_ns(write_deadline_.get()),
                   [buf, n, &to](int fd) { return ::sendto(fd, buf, n, MSG_NOSIGNAL, to.data(), to.size()); },
                   [&to] { return "send_to " + to.to_string(); });
}

std::size_t udp_socket::recv_from(void* buf, std::size_t n, endpoint& from) {
    bool truncated = false;
    return recv_from(buf, n, from, truncated);
}

std::size_t udp_socket::recv_from(void* buf, std::size_t n, endpoint& from, bool& truncated) {
    call c(fd_, "recv_from");
    sockaddr_storage ss{};
    socklen_t len = 0;
    const std::size_t r =
        recv_datagram(c, "recv_from", deadline_ns(read_deadline_.get()), buf, n, &ss, len, truncated);
    from = endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
    return r;
}

std::size_t udp_socket::send(const void* buf, std::size_t n) {
    call c(fd_, "send");
    return io_loop(c, "send", true, deadline_ns(write_deadline_.get()),
                   [buf, n](int fd) { return ::send(fd, buf, n, MSG_NOSIGNAL); },
                   [&c] { return describe("send", c.fd(), true); });
}

std::size_t udp_socket::recv(void* buf, std::size_t n) {
    bool truncated = false;
    return recv(buf, n, truncated);
}

std::size_t udp_socket::recv(void* buf, std::size_t n, bool& truncated) {
    call c(fd_, "recv");
    socklen_t unused = 0;
    return recv_datagram(c, "recv", deadline_ns(read_deadline_.get()), buf, n, nullptr, unused, truncated);
}

endpoint udp_socket::local_endpoint() const { return sock_name(fd_, false, "local_endpoint"); }

void udp_socket::close() noexcept { close_fd(fd_); }

}  // namespace weft::net
