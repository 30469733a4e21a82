/// @file
/// `fiber_local<T>`: storage per fiber, as `thread_local` is per thread.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include <weft/config.hpp>

namespace weft {

namespace detail {
/// The calling fiber's (or, on a plain thread, the thread's) value for `key`, or null.
WEFT_API void* local_find(std::uint64_t key) noexcept;
/// Stores p for `key` in the calling fiber's (or thread's) table; `destroy`
/// frees it when the fiber (thread) ends. On std::bad_alloc, destroys p first.
WEFT_API void local_insert(std::uint64_t key, void* p, void (*destroy)(void*));
/// A key no other fiber_local has had or will have in this process.
WEFT_API std::uint64_t local_new_key() noexcept;
}  // namespace detail

/// One T per fiber, made on the fiber's first access and destroyed when the
/// fiber ends: after its function returned, on its own stack, newest first,
/// before any join() of it returns - and before a scope's join(), race(),
/// with_timeout() or an async()'s future sees it end. A destructor may block
/// (the fiber's cancellation is deferred meanwhile, so its waits do not
/// throw operation_cancelled) and may use the other values, older ones
/// still alive; a value it makes anew is destroyed next (up to four times
/// the values there were, as POSIX thread keys stop after a few rounds). On
/// a plain thread the value is the thread's, destroyed at thread exit. A fiber keeps its value across
/// migrations between workers (unlike a thread_local, whose address changes
/// when the fiber resumes on another worker).
///
/// The first access of a fiber constructs T: value-initialised, or from the
/// initialiser given to the constructor (called on the accessing fiber; its
/// exception propagates, and nothing is stored). Destroying the fiber_local
/// while fibers still hold values is allowed: each value lives until its
/// fiber ends. Accesses never suspend (the initialiser may: it is the
/// caller's code); any fiber or thread may call them, each
/// reaching its own value. Cost of an access: a lookup in a small per-fiber
/// table (linear in the number of fiber_locals the fiber has touched).
template <class T>
class fiber_local {
public:
    fiber_local()
        requires std::default_initializable<T>
        : key_(detail::local_new_key()) {}
    /// init() makes each fiber's value.
    explicit fiber_local(std::function<T()> init) : key_(detail::local_new_key()), init_(std::move(init)) {}
    fiber_local(const fiber_local&) = delete;
    fiber_local& operator=(const fiber_local&) = delete;

    /// The calling fiber's value, made on its first access.
    T& get() {
        if (void* p = detail::local_find(key_)) return *static_cast<T*>(p);
        std::unique_ptr<T> v = make();
        // An initialiser (or T's constructor) that used this fiber_local made the
        // fiber's value already: keep that one, so the fiber has exactly one.
        if (void* p = detail::local_find(key_)) return *static_cast<T*>(p);
        T* raw = v.get();
        detail::local_insert(key_, v.release(), [](void* q) { delete static_cast<T*>(q); });
        return *raw;
    }
    T& operator*() { return get(); }
    T* operator->() { return &get(); }

private:
    std::unique_ptr<T> make() {
        if (init_) return std::make_unique<T>(init_());
        if constexpr (std::default_initializable<T>) return std::make_unique<T>();
        else return nullptr;  // unreachable: the constructor without init requires it
    }

    std::uint64_t key_;
    std::function<T()> init_;
};

}  // namespace weft
