/// @file
/// Type erasure between the templates of the public API and the compiled
/// runtime. Not part of the public API: names and layout may change.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <new>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <weft/config.hpp>
#include <weft/error.hpp>
#include <weft/fiber_id.hpp>

namespace weft::detail {

class runtime_impl;
struct fiber;
struct timer_state;

/// The body of a fiber. run() is called once, on the fiber's own stack.
/// The object lives as long as the fiber object does (until the last
/// fiber_ref is dropped), so a join handle can read the result after run().
struct WEFT_API task_base {
    virtual ~task_base();
    virtual void run() noexcept = 0;
    /// Non-null when run() ended in an exception that nobody took by join():
    /// reported on stderr when the fiber object is released.
    virtual std::exception_ptr unobserved_exception() noexcept { return nullptr; }
    /// Set by the runtime when the fiber never started (cancelled first, or no
    /// stack could be mapped): run() is then never called and join() rethrows it.
    std::exception_ptr not_started;
};

/// Reference-counted handle to a runtime fiber object. Thread-safe counting.
class WEFT_API fiber_ref {
public:
    fiber_ref() noexcept = default;
    explicit fiber_ref(fiber* f) noexcept : f_(f) {}  // adopts one reference
    fiber_ref(const fiber_ref&) = delete;
    fiber_ref& operator=(const fiber_ref&) = delete;
    fiber_ref(fiber_ref&& o) noexcept : f_(std::exchange(o.f_, nullptr)) {}
    fiber_ref& operator=(fiber_ref&& o) noexcept {
        if (this != &o) {
            reset();
            f_ = std::exchange(o.f_, nullptr);
        }
        return *this;
    }
    ~fiber_ref() { reset(); }

    void reset() noexcept;
    explicit operator bool() const noexcept { return f_ != nullptr; }
    fiber* get() const noexcept { return f_; }

    fiber_id id() const noexcept;
    bool is_finished() const noexcept;
    /// Waits until the fiber has finished. May suspend (fiber) or block (thread).
    /// Throws fiber_error(resource_deadlock_would_occur) when called by the fiber
    /// itself, and, if `cancellable`, operation_cancelled when shutdown cancels
    /// the waiting fiber.
    void join(bool cancellable = true) const;

private:
    fiber* f_ = nullptr;
};

struct spawn_attrs {
    const char* name = nullptr;  // copied
};

/// Storage for a task of `size` bytes (alignment `align`, a power of two),
/// allocated together with the runtime's fiber object: one allocation per
/// fiber. Throws std::bad_alloc. Construct the task in it, then spawn_task it,
/// or give it back with free_task_storage if the task was never constructed.
WEFT_API void* alloc_task_storage(std::size_t size, std::size_t align);
WEFT_API void free_task_storage(void* storage) noexcept;

/// Starts `t` (constructed in alloc_task_storage memory; ownership passes to
/// the runtime, also when this throws) on `rt`, or, when rt is null, on the
/// runtime of the calling fiber or else the default runtime.
/// Throws fiber_error(runtime_shut_down).
WEFT_API fiber_ref spawn_task(runtime_impl* rt, task_base* t, const spawn_attrs& attrs = {});

/// Constructs Task(args...) in fiber storage and spawns it.
template <class Task, class... A>
std::pair<fiber_ref, Task*> make_and_spawn(runtime_impl* rt, A&&... args) {
    static_assert(alignof(Task) <= alignof(std::max_align_t),
                  "weft: over-aligned callables (alignas above alignof(std::max_align_t)) are not supported");
    void* mem = alloc_task_storage(sizeof(Task), alignof(Task));
    Task* t;
    try {
        t = ::new (mem) Task(std::forward<A>(args)...);
    } catch (...) {
        free_task_storage(mem);
        throw;
    }
    fiber_ref r = spawn_task(rt, t);
    return {std::move(r), t};
}

/// Destroys the calling fiber's fiber_local values now, with its cancellation
/// deferred: a task whose end others wait for (a scope child, an async) calls
/// it before announcing that end, as std::async destroys thread_locals before
/// the future is ready. No-op on a plain thread or a fiber without values.
WEFT_API void destroy_current_fiber_locals() noexcept;

/// Prints "weft: uncaught exception in fiber <id> '<name>': <what>" and calls std::terminate.
[[noreturn]] WEFT_API void terminate_uncaught(std::exception_ptr e) noexcept;

/// What a task keeps of its result: R, a pointer for a reference, a byte for void.
template <class R>
struct result_slot {
    using type = R;
};
template <>
struct result_slot<void> {
    using type = char;
};
template <class R>
struct result_slot<R&> {
    using type = R*;
};
template <class R>
struct result_slot<R&&> {
    using type = R*;
};

/// Holds R (or nothing for void) and/or the exception of a finished task.
template <class R>
struct result_task : task_base {
    std::optional<typename result_slot<R>::type> value;
    std::exception_ptr error;
    bool observed = false;

    std::exception_ptr unobserved_exception() noexcept override { return observed ? nullptr : error; }

    R take();  // rethrows; called once, after the fiber finished
};

template <class R>
R result_task<R>::take() {
    observed = true;
    if (this->not_started) std::rethrow_exception(this->not_started);
    if (error) std::rethrow_exception(error);
    if constexpr (std::is_reference_v<R>) return std::forward<R>(**value);
    else if constexpr (!std::is_void_v<R>) return std::move(*value);
}

/// A task that calls fn(args...) and keeps the result for join().
template <class R, class Fn>
struct fn_task final : result_task<R> {
    std::optional<Fn> fn;

    explicit fn_task(Fn&& f) : fn(std::move(f)) {}

    void run() noexcept override {
        try {
            if constexpr (std::is_void_v<R>) {
                (*fn)();
                this->value.emplace('\0');
            } else if constexpr (std::is_reference_v<R>) {
                this->value.emplace(&static_cast<R>((*fn)()));
            } else {
                this->value.emplace((*fn)());
            }
        } catch (...) {
            this->error = std::current_exception();
        }
        fn.reset();  // captured state dies on the fiber, as std::thread's does
    }
};

/// A task with std::thread's rule: an escaping exception terminates the
/// process. Except weft's own cancellation (operation_cancelled, thrown by a
/// blocking call when runtime::shutdown() cancels the fiber): the stack has
/// unwound as the runtime asked, and the thread ends quietly.
template <class Fn>
struct thread_task final : task_base {
    std::optional<Fn> fn;
    explicit thread_task(Fn&& f) : fn(std::move(f)) {}
    void run() noexcept override {
        try {
            (*fn)();
        } catch (const operation_cancelled&) {
        } catch (...) {
            terminate_uncaught(std::current_exception());
        }
        fn.reset();
    }
};

/// Binds decayed copies of f and args, as std::thread does.
template <class F, class... Args>
auto bind_call(F&& f, Args&&... args) {
    return [f = std::decay_t<F>(std::forward<F>(f)),
            tup = std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...)]() mutable -> decltype(auto) {
        return std::apply(std::move(f), std::move(tup));
    };
}

template <class F, class... Args>
using call_result_t = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;

}  // namespace weft::detail
