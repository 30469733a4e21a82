/// @file
/// `weft::io`: park the calling fiber until a non-blocking descriptor is
/// ready, for descriptors weft's sockets do not wrap (pipes, eventfds,
/// sockets made by another library).
///
/// On a fiber the wait goes through the runtime's epoll reactor and parks
/// only the fiber; on a plain OS thread the same call blocks the thread in
/// poll(2). The usual loop is Go's:
///
///     for (;;) {
///         ssize_t n = ::read(fd, buf, len);
///         if (n >= 0 || errno != EAGAIN) break;
///         weft::io::wait_readable(fd);
///     }
///
/// A wait may return although the descriptor is not ready (a readiness edge
/// that an earlier call already used): retry the call, as above. A hang-up or
/// an error counts as ready (the next call reports it), and so does a regular
/// file or directory, as in poll(2). A deadline that has already passed still
/// lets a wait report readiness that is there (one poll(2), no waiting), so
/// `wait_readable_for(fd, 0s)` asks "ready now?" and throws timed_out if not.
#pragma once

#include <chrono>
#include <cstdint>

#include <weft/config.hpp>
#include <weft/detail/deadline.hpp>

namespace weft {

namespace detail {
/// Waits until `fd` may be readable (`write` false) or writable, until
/// `deadline_ns` (steady ns; no_deadline: never) or cancellation. Throws
/// std::system_error (std::errc::timed_out at the deadline,
/// bad_file_descriptor for fd < 0 or when io::close closed it meanwhile, the
/// errno of a failed epoll_ctl), operation_cancelled. May suspend.
WEFT_API void io_wait(int fd, bool write, std::int64_t deadline_ns);
/// io::close: wakes every fiber waiting on `fd` (they throw
/// bad_file_descriptor), forgets its registration, then close(2)s it.
WEFT_API int io_close(int fd) noexcept;
}  // namespace detail

namespace io {

/// The deadline that never comes.
inline constexpr std::chrono::steady_clock::time_point no_deadline = std::chrono::steady_clock::time_point::max();

/// Blocks until `fd` (non-blocking, any kind poll(2) accepts) may be read
/// without EAGAIN, or has hung up or failed. May suspend the calling fiber;
/// callable from fibers and plain threads. Throws std::system_error with
/// std::errc::timed_out when `deadline` passes first, with
/// std::errc::bad_file_descriptor for a negative fd, one that names no open
/// descriptor, or when io::close() (or the close() of the weft socket that
/// owns it) closes it during the wait;
/// std::errc::too_many_files_open for an open fd numbered 4,194,304 or more
/// (beyond weft's descriptor table), unless a fiber's deadline has already
/// passed (that call only asks poll(2)); weft::operation_cancelled when the
/// fiber is cancelled (runtime shutdown).
template <class Clock, class Duration>
void wait_readable(int fd, const std::chrono::time_point<Clock, Duration>& deadline) {
    detail::io_wait(fd, false, detail::to_steady_ns(deadline));
}
inline void wait_readable(int fd) { detail::io_wait(fd, false, detail::no_deadline); }
/// As wait_readable, for a relative timeout.
template <class Rep, class Period>
void wait_readable_for(int fd, const std::chrono::duration<Rep, Period>& d) {
    detail::io_wait(fd, false, detail::deadline_after_ns(detail::saturating_ns(d)));
}

/// As wait_readable, until `fd` may be written without EAGAIN.
template <class Clock, class Duration>
void wait_writable(int fd, const std::chrono::time_point<Clock, Duration>& deadline) {
    detail::io_wait(fd, true, detail::to_steady_ns(deadline));
}
inline void wait_writable(int fd) { detail::io_wait(fd, true, detail::no_deadline); }
template <class Rep, class Period>
void wait_writable_for(int fd, const std::chrono::duration<Rep, Period>& d) {
    detail::io_wait(fd, true, detail::deadline_after_ns(detail::saturating_ns(d)));
}

/// close(2) for a descriptor fibers may be waiting on: first wakes every
/// such fiber (its wait throws bad_file_descriptor), then closes. Returns
/// close(2)'s result (errno set on -1). Never suspends; callable anywhere.
/// A plain ::close() of a descriptor that a fiber is waiting on leaves that
/// fiber parked until its deadline, as in Go: close through weft.
inline int close(int fd) noexcept { return detail::io_close(fd); }

}  // namespace io
}  // namespace weft
