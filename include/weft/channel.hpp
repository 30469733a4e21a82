/// @file
/// `weft::channel<T>`: Go's channels, for fibers and plain OS threads alike.
///
/// A channel is a shared handle: copies refer to one channel, which lives
/// until the last handle is gone. Three kinds:
///  - `channel<T>(0)` (also `channel<T>()`): rendezvous. A send completes only
///    when a receiver has taken the value, hand to hand.
///  - `channel<T>(n)`: holds up to n values, FIFO; a send blocks only while full.
///  - `channel<T>::unbounded()`: a send never blocks (the buffer grows).
///
/// Semantics (Go's, with C++ errors):
///  - send(v) blocks while no receiver and no room; throws channel_closed once
///    the channel is closed (also when it is closed while the sender waits).
///  - recv() blocks until a value or close; after close it still returns the
///    buffered values in order, then std::nullopt.
///  - close() wakes every blocked receiver (they drain what is buffered, then
///    get nullopt) and every blocked sender (they get channel_closed). No value
///    is lost or delivered twice. Closing twice is harmless: close() returns
///    whether this call closed it (Go panics instead; a C++ owner closing in
///    a destructor as well as explicitly should not crash).
///  - A value is moved from the caller's object only when it is actually sent:
///    a send that fails (closed, full, timeout, cancelled) leaves it untouched,
///    so a move-only value (std::unique_ptr) is never lost.
///  - FIFO: values come out in the order their sends completed; blocked
///    senders and receivers are served first come, first served.
///  - Blocking calls may suspend: a fiber parks (its worker runs other
///    fibers), a plain thread sleeps on a futex; fibers and threads may share
///    a channel freely. They are cancellation points: on a fiber cancelled by
///    runtime::shutdown() a call that would wait throws
///    weft::operation_cancelled, and nothing was sent or received by it (a
///    call that can complete at once still does).
///  - Non-blocking calls (try_send, try_recv, close, is_closed, size,
///    capacity) never suspend. Every operation is thread-safe; a handle
///    object itself is like a std::shared_ptr (assigning to one handle object
///    while another thread uses that same object is a data race). As in Go, a
///    try_send loop and a try_recv loop on a rendezvous channel never meet:
///    a rendezvous needs one side parked in a blocking (or timed) call.
///  - T needs a noexcept move constructor (values are moved under the
///    channel's lock, where an exception could not be reported safely). The
///    forms that assign to an `out` argument (try_recv, recv_for,
///    recv_until) also need a noexcept move assignment, checked at compile
///    time: a throwing one would lose the value already taken.
///  - Using a moved-from handle throws std::logic_error.
///
/// Cost: a bounded channel allocates once, at construction; send and recv
/// take the channel's lock once and never allocate. An unbounded channel
/// allocates when its buffer doubles. Handles are not free to copy (an atomic
/// reference count), so pass them by reference where it is easy.
#pragma once

#include <chrono>
#include <cstddef>
#include <iterator>
#include <limits>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <weft/config.hpp>
#include <weft/detail/chan.hpp>
#include <weft/detail/deadline.hpp>

namespace weft {

/// Thrown by send() (and a chosen on_send case of select) on a closed channel.
class WEFT_API channel_closed : public std::runtime_error {
public:
    channel_closed();
    ~channel_closed() override;
};

template <class T>
class channel {
    static_assert(std::is_object_v<T> && !std::is_const_v<T> && !std::is_array_v<T>,
                  "weft::channel<T>: T must be a non-const object type");
    static_assert(std::is_nothrow_move_constructible_v<T>,
                  "weft::channel<T>: T must have a noexcept move constructor (values move under the channel's lock)");

public:
    using value_type = T;

    /// A channel holding up to `capacity` values; 0 (the default) is a
    /// rendezvous channel. Throws std::bad_alloc, or std::length_error for a
    /// capacity whose buffer could not be addressed. Never suspends (nor does
    /// unbounded()); callable from fibers and plain threads.
    explicit channel(std::size_t capacity = 0)
        : c_(detail::chan_create(capacity, false, &detail::elem_ops_for<T>)) {}

    /// A channel whose send never blocks; capacity() is SIZE_MAX.
    static channel unbounded() { return channel(detail::chan_create(0, true, &detail::elem_ops_for<T>), adopt_tag{}); }

    channel(const channel& o) noexcept : c_(o.c_) {
        if (c_) detail::chan_retain(c_);
    }
    channel(channel&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
    channel& operator=(const channel& o) noexcept {
        channel(o).swap(*this);
        return *this;
    }
    channel& operator=(channel&& o) noexcept {
        channel(std::move(o)).swap(*this);
        return *this;
    }
    ~channel() {
        if (c_) detail::chan_release(c_);
    }
    void swap(channel& o) noexcept { std::swap(c_, o.c_); }

    // Operations are const: a handle is a reference to the channel (as a
    // const std::shared_ptr still lets one change the object it points to).

    /// Sends v, blocking while the channel has no receiver and no room. May
    /// suspend. Throws channel_closed (v untouched) if the channel is or gets
    /// closed, operation_cancelled on a cancelled fiber.
    void send(T&& v) const {
        if (detail::chan_send(core(), &v, false, detail::no_deadline) == channel_op_status::closed)
            throw channel_closed();
    }
    void send(const T& v) const {
        T copy(v);
        send(std::move(copy));
    }
    /// Refused at compile time (detail::lossy_send_conversion), as for every
    /// send form below: an rvalue of another, move-only type converted to T.
    template <class U>
        requires detail::lossy_send_conversion<U, T>
    void send(U&&) const {
        detail::lossy_send_refused<U>();
    }

    /// Receives the next value; std::nullopt once the channel is closed and
    /// drained. May suspend. Throws operation_cancelled on a cancelled fiber.
    std::optional<T> recv() const { return recv_impl(false, detail::no_deadline); }

    /// Sends only if that needs no waiting: success, full or closed (v is
    /// moved from only on success). Never suspends.
    channel_op_status try_send(T&& v) const { return detail::chan_send(core(), &v, true, 0); }
    channel_op_status try_send(const T& v) const {
        T copy(v);
        return try_send(std::move(copy));
    }
    template <class U>
        requires detail::lossy_send_conversion<U, T>
    channel_op_status try_send(U&&) const {
        detail::lossy_send_refused<U>();
    }

    /// Receives only if a value is ready: success (assigned to out), empty or
    /// closed (closed and drained). Never suspends.
    channel_op_status try_recv(T& out) const { return recv_into(out, true, 0); }

    /// send() with a deadline: success, closed or timeout (v moved from only
    /// on success; a past deadline still tries once). May suspend. Throws
    /// operation_cancelled on a cancelled fiber.
    template <class Rep, class Period>
    channel_op_status send_for(T&& v, const std::chrono::duration<Rep, Period>& d) const {
        return detail::chan_send(core(), &v, false, detail::deadline_after_ns(detail::saturating_ns(d)));
    }
    template <class Rep, class Period>
    channel_op_status send_for(const T& v, const std::chrono::duration<Rep, Period>& d) const {
        T copy(v);
        return send_for(std::move(copy), d);
    }
    template <class U, class Rep, class Period>
        requires detail::lossy_send_conversion<U, T>
    channel_op_status send_for(U&&, const std::chrono::duration<Rep, Period>&) const {
        detail::lossy_send_refused<U>();
    }
    template <class Clock, class Duration>
    channel_op_status send_until(T&& v, const std::chrono::time_point<Clock, Duration>& t) const {
        channel_op_status s = channel_op_status::timeout;
        (void)detail::wait_until_own_clock(t, [&](std::int64_t ns) {
            return (s = detail::chan_send(core(), &v, false, ns)) != channel_op_status::timeout;
        });
        return s;
    }
    template <class Clock, class Duration>
    channel_op_status send_until(const T& v, const std::chrono::time_point<Clock, Duration>& t) const {
        T copy(v);
        return send_until(std::move(copy), t);
    }
    template <class U, class Clock, class Duration>
        requires detail::lossy_send_conversion<U, T>
    channel_op_status send_until(U&&, const std::chrono::time_point<Clock, Duration>&) const {
        detail::lossy_send_refused<U>();
    }

    /// recv() with a deadline: success (assigned to out), closed (closed and
    /// drained) or timeout. May suspend. Throws operation_cancelled.
    template <class Rep, class Period>
    channel_op_status recv_for(T& out, const std::chrono::duration<Rep, Period>& d) const {
        return recv_into(out, false, detail::deadline_after_ns(detail::saturating_ns(d)));
    }
    template <class Clock, class Duration>
    channel_op_status recv_until(T& out, const std::chrono::time_point<Clock, Duration>& t) const {
        channel_op_status s = channel_op_status::timeout;
        (void)detail::wait_until_own_clock(
            t, [&](std::int64_t ns) { return (s = recv_into(out, false, ns)) != channel_op_status::timeout; });
        return s;
    }

    /// Closes the channel (see the file comment); true if this call closed
    /// it, false if it was already closed. Never suspends.
    bool close() const noexcept { return c_ && detail::chan_close(c_); }
    /// Never suspends. A moved-from handle counts as closed.
    bool is_closed() const noexcept { return !c_ || detail::chan_is_closed(c_); }
    /// Values buffered now (0 for a rendezvous channel). Never suspends.
    std::size_t size() const noexcept { return c_ ? detail::chan_size(c_) : 0; }
    /// The capacity given at construction; SIZE_MAX when unbounded. Never suspends.
    std::size_t capacity() const noexcept { return c_ ? detail::chan_capacity(c_) : 0; }

    /// Two handles are equal when they refer to the same channel.
    friend bool operator==(const channel& a, const channel& b) noexcept { return a.c_ == b.c_; }

    /// `for (T v : ch)` receives until the channel is closed and drained
    /// (`for (auto& v : ch)` for a move-only T: the element is yours to move).
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = T;
        using difference_type = std::ptrdiff_t;
        using pointer = T*;
        using reference = T&;

        iterator() = default;
        T& operator*() const noexcept { return *cur_; }
        T* operator->() const noexcept { return &*cur_; }
        iterator& operator++() {
            cur_.reset();
            // emplace: only T's noexcept move constructor, so no value is lost
            // and T need not be assignable.
            if (std::optional<T> v = ch_->recv()) cur_.emplace(std::move(*v));
            else ch_ = nullptr;
            return *this;
        }
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.ch_ == b.ch_; }

    private:
        friend class channel;
        explicit iterator(const channel* ch) : ch_(ch) { ++*this; }
        const channel* ch_ = nullptr;
        mutable std::optional<T> cur_;  // operator* is const (std::input_iterator), the value is ours to move
    };
    /// Receives the first value (may suspend).
    iterator begin() const { return iterator(this); }
    iterator end() const noexcept { return iterator(); }

    /// The core, for select (internal).
    detail::chan* native_handle() const noexcept { return c_; }

private:
    struct adopt_tag {};
    channel(detail::chan* c, adopt_tag) noexcept : c_(c) {}

    detail::chan* core() const {
        if (!c_) throw std::logic_error("weft::channel: use of a moved-from channel handle");
        return c_;
    }

    std::optional<T> recv_impl(bool try_only, std::int64_t deadline) const {
        alignas(T) unsigned char raw[sizeof(T)];
        if (detail::chan_recv(core(), raw, try_only, deadline) != channel_op_status::success) return std::nullopt;
        T* p = std::launder(reinterpret_cast<T*>(raw));
        std::optional<T> out(std::move(*p));
        p->~T();
        return out;
    }

    channel_op_status recv_into(T& out, bool try_only, std::int64_t deadline) const {
        static_assert(std::is_nothrow_move_assignable_v<T>,
                      "weft::channel<T>: try_recv/recv_for/recv_until(T& out) need a noexcept move assignment "
                      "(a throwing one would lose the value taken from the channel); use recv()");
        alignas(T) unsigned char raw[sizeof(T)];
        const channel_op_status s = detail::chan_recv(core(), raw, try_only, deadline);
        if (s == channel_op_status::success) {
            T* p = std::launder(reinterpret_cast<T*>(raw));
            struct destroy {
                T* p;
                ~destroy() { p->~T(); }
            } guard{p};
            out = std::move(*p);
        }
        return s;
    }

    detail::chan* c_;
};

}  // namespace weft
