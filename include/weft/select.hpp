/// @file
/// `weft::select`: Go's select over channels, for fibers and plain threads.
///
///     std::size_t i = weft::select(
///         weft::on_recv(in, [&](std::optional<int> v) { ... }),   // v empty: closed
///         weft::on_send(out, std::move(item), [&] { ... }),
///         weft::on_timeout(100ms, [&] { ... }),                   // or on_default(fn)
///     );                                                          // i: the case that ran
///
/// Rules (Go's):
///  - Among the cases that are ready it picks one uniformly at random. A
///    receive is ready when a value is buffered, a sender waits, or the
///    channel is closed (the handler then gets std::nullopt); a send is ready
///    when a receiver waits, there is room, or the channel is closed (the
///    chosen send then throws channel_closed, as send() does).
///  - With on_default and nothing ready, the default runs at once. Otherwise
///    the caller parks once on every channel at once (registering in a random
///    order) until one case can complete; that case completes, the caller is
///    withdrawn from every other channel, and only then its handler runs.
///    on_timeout(d) bounds the wait; at most one timeout and one default. A
///    timeout beside a default never fires (the select never waits), as a
///    time.After case beside a default in Go: allowed, and pointless.
///  - Exactly one case completes: no other case sends or receives anything.
///  - The same channel may appear in several cases (also as send and recv).
///  - Handlers are optional, run in the calling fiber after the choice is
///    committed, and may block (even select again). The result is the index
///    of the chosen case in argument order.
///  - on_send(ch, std::move(v)) moves from v only if that case is chosen, so a
///    move-only value is never lost; on_send(ch, v) with an lvalue sends a copy.
///  - A case on a moved-from channel handle is never ready (Go's nil channel).
///  - Build the cases inside the select(...) call, as above: a case refers
///    to its channel and to an rvalue it sends without owning them, so a case
///    object kept in a variable may outlive them (`auto c = on_recv(after(1s))`
///    would leave it pointing at a channel that is gone).
///  - May suspend (unless a default is given, or a case is ready). A
///    cancellation point: on a cancelled fiber it throws operation_cancelled
///    and no case ran. Callable from fibers and plain threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include <weft/channel.hpp>
#include <weft/detail/chan.hpp>
#include <weft/detail/deadline.hpp>

namespace weft {

namespace detail {

struct no_handler {
    template <class... A>
    void operator()(A&&...) const noexcept {}
};

struct select_build {
    select_case* raw;
    std::size_t* map;  // raw index -> argument index
    std::size_t n = 0;
    std::int64_t deadline = no_deadline;
    bool has_default = false;
    std::size_t timeout_index = 0;
    std::size_t default_index = 0;
};

template <class T, class F>
class recv_case {
public:
    static constexpr bool is_channel = true, is_timeout = false, is_default = false;
    recv_case(const channel<T>& ch, F fn) : ch_(ch.native_handle()), fn_(std::move(fn)) {}

    void add(select_build& b, std::size_t index) noexcept {
        b.raw[b.n] = select_case{ch_, static_cast<void*>(raw_), false};
        b.map[b.n++] = index;
    }
    void run(const select_outcome& o) {
        if (!o.ok) {
            call(std::optional<T>());
            return;
        }
        T* p = std::launder(reinterpret_cast<T*>(raw_));
        std::optional<T> v(std::move(*p));
        p->~T();
        call(std::move(v));
    }

private:
    void call(std::optional<T>&& v) {
        if constexpr (std::is_invocable_v<F&, std::optional<T>&&>) fn_(std::move(v));
        else fn_();
    }
    chan* ch_;
    F fn_;
    alignas(T) unsigned char raw_[sizeof(T)];
};

template <class T, class F>
class send_case {
public:
    static constexpr bool is_channel = true, is_timeout = false, is_default = false;
    send_case(const channel<T>& ch, T* v, F fn) : ch_(ch.native_handle()), v_(v), fn_(std::move(fn)) {}
    send_case(const channel<T>& ch, const T& v, F fn) : ch_(ch.native_handle()), copy_(v), fn_(std::move(fn)) {
        v_ = &*copy_;
    }
    send_case(send_case&& o) noexcept(std::is_nothrow_move_constructible_v<F>)
        : ch_(o.ch_), v_(o.v_), copy_(std::move(o.copy_)), fn_(std::move(o.fn_)) {
        if (copy_) v_ = &*copy_;
    }

    void add(select_build& b, std::size_t index) noexcept {
        b.raw[b.n] = select_case{ch_, static_cast<void*>(v_), true};
        b.map[b.n++] = index;
    }
    void run(const select_outcome& o) {
        if (!o.ok) throw channel_closed();
        fn_();
    }

private:
    chan* ch_;
    T* v_;
    std::optional<T> copy_;
    F fn_;
};

template <class F>
class timeout_case {
public:
    static constexpr bool is_channel = false, is_timeout = true, is_default = false;
    timeout_case(std::int64_t deadline, F fn) : deadline_(deadline), fn_(std::move(fn)) {}
    void add(select_build& b, std::size_t index) noexcept {
        b.deadline = deadline_;
        b.timeout_index = index;
    }
    void run(const select_outcome&) { fn_(); }

private:
    std::int64_t deadline_;
    F fn_;
};

template <class F>
class default_case {
public:
    static constexpr bool is_channel = false, is_timeout = false, is_default = true;
    explicit default_case(F fn) : fn_(std::move(fn)) {}
    void add(select_build& b, std::size_t index) noexcept {
        b.has_default = true;
        b.default_index = index;
    }
    void run(const select_outcome&) { fn_(); }

private:
    F fn_;
};

}  // namespace detail

/// A receive case: `fn(std::optional<T>)` (or `fn()`) runs if it is chosen;
/// the optional is empty when the channel is closed and drained.
template <class T, class F = detail::no_handler>
detail::recv_case<T, F> on_recv(const channel<T>& ch, F fn = {}) {
    static_assert(std::is_invocable_v<F&, std::optional<T>> || std::is_invocable_v<F&>,
                  "weft::on_recv(ch, fn): fn takes std::optional<T> (empty: the channel is closed), or nothing");
    return detail::recv_case<T, F>(ch, std::move(fn));
}

/// A send case: an rvalue is moved from only if this case is chosen; an
/// lvalue is copied into the case. `fn()` runs after the value was taken.
template <class T, class F = detail::no_handler>
detail::send_case<T, F> on_send(const channel<T>& ch, std::type_identity_t<T>&& v, F fn = {}) {
    return detail::send_case<T, F>(ch, &v, std::move(fn));
}
template <class T, class F = detail::no_handler>
detail::send_case<T, F> on_send(const channel<T>& ch, const std::type_identity_t<T>& v, F fn = {}) {
    return detail::send_case<T, F>(ch, v, std::move(fn));
}
/// Refused at compile time: an rvalue of another, move-only type, which would
/// be converted into a temporary T that an unchosen case destroys (channel.hpp).
template <class T, class U, class F = detail::no_handler>
    requires detail::lossy_send_conversion<U, T>
detail::send_case<T, F> on_send(const channel<T>&, U&&, F = {}) {
    detail::lossy_send_refused<U>();
}

/// Chosen when no channel case could complete within `d` (measured from this call).
template <class Rep, class Period, class F = detail::no_handler>
detail::timeout_case<F> on_timeout(const std::chrono::duration<Rep, Period>& d, F fn = {}) {
    return detail::timeout_case<F>(detail::deadline_after_ns(detail::saturating_ns(d)), std::move(fn));
}

/// Chosen at once when no channel case is ready.
template <class F = detail::no_handler>
detail::default_case<F> on_default(F fn = {}) {
    return detail::default_case<F>(std::move(fn));
}

/// See the file comment. Returns the index of the case that ran.
template <class... Cases>
std::size_t select(Cases&&... cases) {
    static_assert(sizeof...(Cases) > 0, "weft::select needs at least one case");
    static_assert((0 + ... + (std::remove_reference_t<Cases>::is_timeout ? 1 : 0)) <= 1,
                  "weft::select: at most one on_timeout case");
    static_assert((0 + ... + (std::remove_reference_t<Cases>::is_default ? 1 : 0)) <= 1,
                  "weft::select: at most one on_default case");
    constexpr std::size_t n_chan = (0 + ... + (std::remove_reference_t<Cases>::is_channel ? 1 : 0));
    detail::select_case raw[n_chan > 0 ? n_chan : 1];
    std::size_t map[n_chan > 0 ? n_chan : 1];
    detail::select_build b{raw, map};
    std::size_t i = 0;
    (cases.add(b, i++), ...);
    const detail::select_outcome o = detail::select_run(raw, b.n, b.deadline, b.has_default);
    const std::size_t chosen = o.index < b.n ? map[o.index] : (b.has_default ? b.default_index : b.timeout_index);
    i = 0;
    ((i++ == chosen ? cases.run(o) : void()), ...);
    return chosen;
}

}  // namespace weft
