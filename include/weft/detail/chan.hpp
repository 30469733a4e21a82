/// @file
/// Internal: the type-erased channel core behind weft::channel<T> and
/// weft::select. Not a public API (its shape may change); the protocol and its
/// invariants are in src/chan/chan.hpp.
///
/// Values cross the core as `void*` with an elem_ops table: the core moves
/// them under the channel's lock, straight from a sender's object into a
/// buffer slot or into a parked receiver's storage (no intermediate copy, no
/// allocation for a bounded channel).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <type_traits>

#include <weft/config.hpp>

namespace weft {

/// The result of the non-throwing channel operations.
enum class channel_op_status : unsigned char {
    success,  ///< the value was sent / received
    closed,   ///< the channel is closed (and, for a receive, drained)
    full,     ///< try_send: no receiver waiting and no room in the buffer
    empty,    ///< try_recv: no value buffered and no sender waiting
    timeout,  ///< send_for/recv_for (and _until): the deadline passed first
};

namespace detail {

/// How the core moves a T it only knows as bytes. Every function is noexcept
/// (channel<T> requires a nothrow move constructor).
struct elem_ops {
    void (*move_from)(void* dst, void* src) noexcept;  ///< construct *dst from std::move(*src); *src stays
    void (*relocate)(void* dst, void* src) noexcept;   ///< construct *dst from std::move(*src), then destroy *src
    void (*destroy)(void* p) noexcept;
    std::size_t size;
    std::size_t align;
};

template <class T>
inline constexpr elem_ops elem_ops_for = {
    [](void* d, void* s) noexcept { ::new (d) T(std::move(*static_cast<T*>(s))); },
    [](void* d, void* s) noexcept {
        T* from = static_cast<T*>(s);
        ::new (d) T(std::move(*from));
        from->~T();
    },
    [](void* p) noexcept { static_cast<T*>(p)->~T(); },
    sizeof(T),
    alignof(T),
};

struct chan;  // src/chan/chan.hpp

/// A new channel with one reference. capacity 0: rendezvous; `unbounded`:
/// capacity is ignored and the buffer grows. Throws std::bad_alloc.
WEFT_API chan* chan_create(std::size_t capacity, bool unbounded, const elem_ops* ops);
WEFT_API void chan_retain(chan* c) noexcept;
/// Drops a reference; the last one destroys the buffered values and the channel.
WEFT_API void chan_release(chan* c) noexcept;

/// Sends *v (moved from only on success). `try_only`: never blocks (full
/// instead). Otherwise blocks until a receiver or a slot takes it, the channel
/// is closed, or `deadline_ns` (steady ns; no_deadline = never). May suspend.
/// Throws operation_cancelled on a cancelled fiber (*v untouched).
WEFT_API channel_op_status chan_send(chan* c, void* v, bool try_only, std::int64_t deadline_ns);
/// Receives into the raw storage `out` (a T is constructed there on success
/// only). Same modes as chan_send (empty instead of full). May suspend.
WEFT_API channel_op_status chan_recv(chan* c, void* out, bool try_only, std::int64_t deadline_ns);
/// Closes; false if it already was. Wakes every parked sender and receiver.
WEFT_API bool chan_close(chan* c) noexcept;
WEFT_API bool chan_is_closed(const chan* c) noexcept;
WEFT_API std::size_t chan_size(const chan* c) noexcept;
WEFT_API std::size_t chan_capacity(const chan* c) noexcept;

/// One channel case of a select. `ch` null: a case that is never ready.
struct select_case {
    chan* ch;
    void* elem;    ///< send: the value (moved from only if this case runs); recv: raw storage
    bool is_send;
};

struct select_outcome {
    std::size_t index;  ///< the case that ran, or n: the default or the deadline
    bool ok;            ///< recv: a value was constructed in elem; send: false if the channel was closed
};

/// Runs one of the ready cases, chosen uniformly at random; if none is ready,
/// returns {n, false} at once when `has_default`, else parks on every channel
/// until one case can run or `deadline_ns` passes ({n, false}). May suspend.
/// Throws operation_cancelled on a cancelled fiber that would wait, and
/// std::bad_alloc when memory runs out (more than 16 cases, or a chosen send
/// to an unbounded channel whose buffer cannot grow).
WEFT_API select_outcome select_run(select_case* cases, std::size_t n, std::int64_t deadline_ns, bool has_default);

/// A send of `U` into a channel<T> that would lose a move-only value: an
/// rvalue of another, move-only type that converts to T. It would be moved
/// into a temporary T before the send, and a send that does not happen
/// (closed, full, timeout, a case not chosen) would destroy that temporary.
template <class U, class T>
concept lossy_send_conversion = !std::is_lvalue_reference_v<U> && !std::is_same_v<std::remove_cvref_t<U>, T> &&
                                !std::is_copy_constructible_v<std::remove_cvref_t<U>> &&
                                std::is_convertible_v<U&&, T>;
template <class>
inline constexpr bool refuse_lossy_send = false;
/// The body of every send overload that lossy_send_conversion selects: fails
/// to compile, with the reason.
template <class U>
[[noreturn]] void lossy_send_refused() {
    static_assert(refuse_lossy_send<U>,
                  "weft: a move-only value of another type than T would be converted into a temporary T that a "
                  "send which does not happen destroys (the value lost): convert it first, T(std::move(v))");
    std::abort();
}
}  // namespace detail
}  // namespace weft
