/// @file
/// Structured concurrency: `scope` (a nursery: children never outlive it),
/// `race` (the first to finish wins, the rest are cancelled) and
/// `with_timeout` (cancel a call that takes too long).
///
/// Cancellation is cooperative, and it is the runtime's own: a cancelled
/// child's next blocking call - or the one it is parked in - throws
/// weft::operation_cancelled, as runtime::shutdown() does; code between
/// blocking calls runs on. The std::stop_token a child may take as its first
/// parameter reports the same request, for loops that compute without
/// blocking. Which waits are cancellation points is said in runtime.hpp
/// (std's lock() and join() waits are not).
///
/// Decisions where the design is silent (Trio's nurseries and Go's
/// errgroup are the models):
///  - The first child exception wins; it cancels the other children, and
///    scope::join() rethrows it after they have all ended. Later exceptions
///    are dropped, and so is operation_cancelled from a child once the scope
///    itself asked for the stop (it is the cancellation working).
///  - race() is decided by the first function to finish, with a value or an
///    exception (as Promise.race); with_timeout(d, f) is race(f, a timer).
///  - A child that is cancelled before it started never runs; its
///    operation_cancelled counts as its exception unless the scope asked.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <optional>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <tuple>
#include <utility>

#include <weft/config.hpp>
#include <weft/detail/deadline.hpp>
#include <weft/detail/task.hpp>
#include <weft/error.hpp>
#include <weft/runtime.hpp>
#include <weft/timer.hpp>

namespace weft {

namespace detail {
struct scope_state;

/// A running child, on its own stack, on its scope's list (scope.cpp S2).
struct scope_link {
    fiber* f = nullptr;
    scope_link* prev = nullptr;
    scope_link* next = nullptr;
};

WEFT_API scope_state* scope_open();                     // throws std::bad_alloc
WEFT_API void scope_close(scope_state* s) noexcept;     // no child left
WEFT_API void scope_add_child(scope_state* s) noexcept;  // one more child to wait for
WEFT_API void scope_child_begin(scope_state* s, scope_link& l) noexcept;
/// The child's last touch of the scope; l is null for a child that never ran,
/// e is its exception (null: it returned, or it never existed).
WEFT_API void scope_child_end(scope_state* s, scope_link* l, std::exception_ptr e) noexcept;
/// Waits until no child is left. Cancellable: throws operation_cancelled, and
/// the children go on. Throws fiber_error(resource_deadlock_would_occur) from
/// one of the scope's own children.
WEFT_API void scope_wait(scope_state* s, bool cancellable);
WEFT_API bool scope_request_stop(scope_state* s) noexcept;
/// The same, sparing the calling child's own fiber (race()'s winner).
WEFT_API bool scope_request_stop_others(scope_state* s) noexcept;
/// Is the calling fiber cancelled (its flag, or its runtime's shutdown)? False on a plain thread.
WEFT_API bool scope_caller_cancelled() noexcept;
/// The runtime a default-constructed scope spawns on: the calling fiber's, else the default one.
WEFT_API runtime_impl* scope_default_runtime();
WEFT_API std::stop_token scope_stop_token(scope_state* s) noexcept;
WEFT_API std::exception_ptr scope_take_error(scope_state* s) noexcept;
WEFT_API void scope_report_unobserved(std::exception_ptr e) noexcept;

/// The body of a scope's child. Constructed -> counted, destroyed -> uncounted
/// (scope.cpp S1), whichever way the fiber went (ran, never started, or the
/// spawn itself failed).
template <class Fn>
struct scope_task final : task_base {
    scope_state* st;
    std::optional<Fn> fn;
    bool ended = false;

    scope_task(scope_state* s, Fn&& f) : st(s), fn(std::move(f)) { scope_add_child(st); }
    ~scope_task() override {
        if (ended) return;
        fn.reset();
        // not_started is null when the spawn failed (the caller of spawn gets
        // that exception), else why the fiber never ran (cancelled first, or no stack).
        scope_child_end(st, nullptr, this->not_started);
    }
    void run() noexcept override {
        scope_link link;
        scope_child_begin(st, link);
        std::exception_ptr e;
        try {
            (*fn)();
        } catch (...) {
            e = std::current_exception();
        }
        fn.reset();  // the captures die before the scope may end (and before join() returns)
        destroy_current_fiber_locals();  // and so do the fiber's fiber_local values
        ended = true;
        scope_child_end(st, &link, std::move(e));  // the last touch of st: it may be freed now
    }
};
}  // namespace detail

/// A nursery: every fiber spawned into it has ended before join() returns
/// and before the scope is destroyed. Fiber-safe: any fiber or thread may
/// spawn into it or stop it; join() is for one caller at a time.
class WEFT_API scope {
public:
    /// Children run on the calling fiber's runtime, or, from a plain thread,
    /// on the default runtime (started if need be, which may throw as
    /// runtime's constructor does), whoever spawns them later. Never
    /// suspends. Throws std::bad_alloc.
    scope();
    /// Children run on `rt`.
    explicit scope(runtime& rt);
    scope(const scope&) = delete;
    scope& operator=(const scope&) = delete;

    /// Waits for every child (not a cancellation point: children never outlive
    /// their scope); when the scope is destroyed by an exception's unwinding,
    /// or by a fiber that was cancelled, it first stops the children. A child exception that no join() took is
    /// logged at error level, as a detached fiber's (the destructor cannot
    /// throw). May suspend the calling fiber, or block a plain thread.
    ~scope();

    /// Starts f(args...) (or f(stop_token, args...) when f takes one) on a new
    /// fiber, as weft::spawn does. Never suspends. After request_stop() the
    /// child starts cancelled. Throws what spawn throws
    /// (fiber_error(runtime_shut_down), std::bad_alloc); the child is then not
    /// counted.
    template <class F, class... Args>
    void spawn(F&& f, Args&&... args) {
        if constexpr (std::is_invocable_v<std::decay_t<F>, std::stop_token, std::decay_t<Args>...>)
            start(detail::bind_call(std::forward<F>(f), get_stop_token(), std::forward<Args>(args)...));
        else
            start(detail::bind_call(std::forward<F>(f), std::forward<Args>(args)...));
    }

    /// Waits until every child has ended, then rethrows the first child
    /// exception (once: a later join() does not see it again). A cancellation
    /// point: if the calling fiber is cancelled meanwhile, it stops the
    /// children, waits for them (uncancellably) and throws operation_cancelled.
    /// May suspend the calling fiber, or block a plain thread. A child that
    /// joins its own scope gets fiber_error(resource_deadlock_would_occur).
    void join();

    /// Cancels every child, running or still to be spawned (sticky), the
    /// calling fiber too if it is one of them. Returns false if the stop was
    /// already requested. Never suspends; callable from anywhere (costs one
    /// membarrier(2) system call when children are running). Callbacks
    /// registered on the token (std::stop_callback) run in the thread that
    /// makes the request - which, when a child failed because no stack could
    /// be mapped for it, is a worker's scheduler: they must not block.
    bool request_stop() noexcept;
    /// The scope's stop token (the one its children may take).
    std::stop_token get_stop_token() const noexcept;
    bool stop_requested() const noexcept { return get_stop_token().stop_requested(); }

    /// Internal (race()).
    detail::scope_state* native_state() const noexcept { return st_; }

private:
    template <class Call>
    void start(Call&& call) {
        (void)detail::make_and_spawn<detail::scope_task<std::decay_t<Call>>>(rt_, st_, std::forward<Call>(call));
    }

    detail::scope_state* st_;
    detail::runtime_impl* rt_ = nullptr;
    int uncaught_ = 0;
};

namespace detail {
template <class F>
decltype(auto) call_with_optional_token(F& f, const std::stop_token& tok) {
    if constexpr (std::is_invocable_v<F&, std::stop_token>) return std::invoke(f, tok);
    else return std::invoke(f);
}
template <class F>
using race_result_t = std::remove_cvref_t<decltype(call_with_optional_token(std::declval<std::decay_t<F>&>(),
                                                                             std::declval<const std::stop_token&>()))>;
}  // namespace detail

/// Runs each function on its own fiber of the calling fiber's runtime (or
/// the default runtime) and returns the outcome of the first to finish: its
/// value, or its exception rethrown. The others are cancelled (their blocking
/// calls throw operation_cancelled) and race returns only after all have
/// ended; their outcomes are dropped. Each function may take a
/// std::stop_token. The result type is the std::common_type of the results
/// (void if all are void); references are returned as copies. A cancellation
/// point (see scope::join). May suspend the calling fiber, or block a plain
/// thread.
template <class... F>
auto race(F&&... fs) -> std::common_type_t<detail::race_result_t<F>...> {
    static_assert(sizeof...(F) >= 1, "weft::race needs at least one function");
    using R = std::common_type_t<detail::race_result_t<F>...>;
    struct outcome {
        std::atomic<bool> decided{false};
        std::optional<std::conditional_t<std::is_void_v<R>, char, R>> value;
        std::exception_ptr error;
    } out;
    {
        scope s;
        // The first to finish decides (`decided`, relaxed: s.join() publishes the
        // outcome), stores it, and stops the others - not itself: its captures and
        // arguments are still to be destroyed, and may block.
        auto contender = [&out, &s](auto& f, const std::stop_token& tok) {
            std::optional<std::conditional_t<std::is_void_v<R>, char, R>> v;
            std::exception_ptr e;
            try {
                if constexpr (std::is_void_v<R>) {
                    detail::call_with_optional_token(f, tok);
                    v.emplace('\0');
                } else {
                    v.emplace(detail::call_with_optional_token(f, tok));
                }
            } catch (const operation_cancelled&) {
                if (s.stop_requested()) return;  // lost the race
                e = std::current_exception();
            } catch (...) {
                e = std::current_exception();
            }
            if (out.decided.exchange(true, std::memory_order_relaxed)) return;
            if (e) {
                out.error = std::move(e);
            } else {
                try {
                    out.value.emplace(std::move(*v));
                } catch (...) {  // R's move threw: that is the outcome
                    out.error = std::current_exception();
                }
            }
            detail::scope_request_stop_others(s.native_state());
        };
        (s.spawn([contender, f = std::decay_t<F>(std::forward<F>(fs))](std::stop_token tok) mutable {
            contender(f, tok);
        }),
         ...);
        try {
            s.join();  // children catch everything: only a child that never ran, or our own cancellation
        } catch (const operation_cancelled&) {
            throw;
        } catch (...) {  // a loser that could not start: dropped once somebody decided
            if (!out.decided.load(std::memory_order_relaxed)) throw;  // relaxed: join() published it
        }
    }
    if (out.error) std::rethrow_exception(out.error);
    if constexpr (!std::is_void_v<R>) return std::move(*out.value);
}

/// Runs f(args...) (or f(stop_token, args...)) on a new fiber and returns its
/// value or rethrows its exception if it finishes within `d`; otherwise
/// cancels it, waits until it has ended, and throws
/// std::system_error(std::errc::timed_out). A `d` of zero or less throws
/// timed_out without running f. A cancellation point. May suspend the calling
/// fiber, or block a plain thread.
template <class Rep, class Period, class F, class... Args>
auto with_timeout(std::chrono::duration<Rep, Period> d, F&& f, Args&&... args) {
    const std::int64_t deadline = detail::deadline_after_ns(detail::saturating_ns(d));  // NaN: invalid_argument
    if (d <= d.zero()) throw std::system_error(std::make_error_code(std::errc::timed_out), "with_timeout");
    auto call = [f = std::decay_t<F>(std::forward<F>(f)),
                 tup = std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...)](std::stop_token tok) mutable {
        // Called once: f and the arguments are passed as rvalues, as std::thread does.
        if constexpr (std::is_invocable_v<std::decay_t<F>, std::stop_token, std::decay_t<Args>...>)
            return std::apply([&](auto&... a) { return std::invoke(std::move(f), tok, std::move(a)...); }, tup);
        else
            return std::apply([&](auto&... a) { return std::invoke(std::move(f), std::move(a)...); }, tup);
    };
    using R = std::remove_cvref_t<std::invoke_result_t<decltype(call)&, std::stop_token>>;
    return race(std::move(call), [deadline]() -> R {
        detail::sleep_until_steady_ns(deadline);
        throw std::system_error(std::make_error_code(std::errc::timed_out), "with_timeout");
    });
}

}  // namespace weft
