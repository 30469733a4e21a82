/// @file
/// `weft::spawn_blocking(f, args...)`: runs a call that would block its OS
/// thread (a system call with no non-blocking form, a C library that does its
/// own I/O, a long computation) on a separate pool of OS threads, and parks
/// only the calling fiber until it returns.
///
/// Decisions (the semantics, in one place):
///  - Copies. f and args are decay-copied (moved from rvalues) in the caller,
///    as std::thread does, and invoked as rvalues:
///    std::invoke(std::move(f'), std::move(args')...). Pass std::ref to share
///    an object. The copies are made before anything is submitted, so an
///    exception from a copy constructor propagates from spawn_blocking and f
///    never runs. The copies are destroyed on the thread that ran f, right
///    after it returns (as std::thread destroys them on the new thread), and
///    always before spawn_blocking returns.
///  - Result. spawn_blocking returns what f returns: void; an object type R
///    (R must be move-constructible: it is built on the pool thread and moved
///    to the caller, so move-only types work, but a const move-only result is
///    refused at compile time); or an lvalue reference, returned
///    as std::invoke returns it (it must not refer into f's or args' copies,
///    which are gone by then). An rvalue-reference result is refused at
///    compile time (return by value instead). An exception that escapes f is
///    caught on the pool thread and rethrown in the caller with its type
///    (std::exception_ptr).
///  - On a fiber, the call goes to the process-wide blocking pool and the
///    fiber parks until a pool thread has run f (its worker runs other fibers
///    meanwhile). The wait is NOT a cancellation point and cannot be
///    interrupted: f may refer to the caller's stack, so the fiber waits until
///    f returns, even when runtime::shutdown() cancels it (shutdown() then
///    waits for f; the fiber's next cancellable wait throws
///    weft::operation_cancelled as usual). A runaway f therefore delays
///    shutdown, as a fiber holding a weft::mutex would.
///  - On a plain OS thread (not a weft fiber: main(), a std::thread, a pool
///    thread running another spawn_blocking job), f runs inline on the calling
///    thread, which may block anyway; so a job that itself calls
///    spawn_blocking never waits for a pool thread (no self-deadlock at the
///    bound). Copies, result and exception behave exactly as on a fiber.
///  - The pool starts with no thread. A job goes to an idle pool thread if
///    there is one (the most recently idle, so that the others can expire);
///    else a new thread is started if fewer than the bound exist; else it
///    waits in a FIFO queue for the next pool thread that finishes a job. An
///    idle pool thread exits after 10 s without work (keep-alive). Threads
///    are named "weft-blocking" and have the default thread stack size. The
///    pool lives for the whole process and is never torn down: the process
///    may exit while jobs run (their threads die with it, like goroutines).
///    After fork(), the child starts with an empty pool (none of the parent's
///    threads exist there); its first job starts a thread afresh.
///  - Bound: at most 512 pool threads (Tokio's default). The environment
///    variable WEFT_BLOCKING_THREADS (an integer in [1, 65536]) overrides it;
///    it is read once, when a fiber first uses the pool. A value that is not
///    such an integer makes that call, and every later one from a fiber,
///    throw std::invalid_argument naming the variable (as WEFT_WORKERS does
///    for a runtime): bad input fails loudly instead of being ignored.
///    At the bound a job queues until a running one returns, so jobs that
///    wait for one another (a job blocking until a later job has run) need
///    a bound above their number, or they deadlock as threads of a full
///    fixed-size pool do (weft's stall monitor cannot see pool threads).
///  - Memory: the job record (f's and args' copies, the result slot, a queue
///    link and the word the fiber parks on) lives in spawn_blocking's frame on
///    the caller's stack, which stays valid because the caller waits for the
///    job to finish. No allocation per call (beyond what f and its copies do).
///
/// May suspend the calling fiber (never cancellably); blocks a plain thread for
/// as long as f runs. Thread-safe: any number of fibers and threads may call it.
/// Throws: whatever f throws, or the copies of f and args throw;
/// std::invalid_argument for a bad WEFT_BLOCKING_THREADS (fibers only);
/// std::system_error(std::errc::resource_unavailable_try_again) when the pool
/// has no thread and cannot start one (f did not run).
/// f must not shut down or destroy the runtime of the fiber waiting for it:
/// shutdown() would wait for that fiber, which waits for f, so weft aborts
/// with a message instead (as for shutdown() from the runtime's own fibers).
///
/// Implementation: src/io/blocking_pool.hpp (invariants B1-B5).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <weft/config.hpp>

namespace weft {

namespace detail {

/// One spawn_blocking call, type-erased for the compiled pool. Internal.
struct blocking_job {
    /// Runs the call once, stores its result or exception in the job and
    /// destroys the copies of f and args. Set by the template; never throws.
    void (*run)(blocking_job*) noexcept = nullptr;
    /// The pool's FIFO link while queued (guarded by the pool's lock).
    blocking_job* next = nullptr;
    /// `running`, then `woken` once run() has returned (stored under the
    /// parking-lot bucket lock; the caller parks on this word's address),
    /// then `released` once the pool thread will touch neither the job nor
    /// the caller's runtime again (B4 in src/io/blocking_pool.hpp).
    std::atomic<std::uint32_t> done{running};
    static constexpr std::uint32_t running = 0, woken = 1, released = 2;
    /// The runtime of the fiber that waits (set by blocking_execute), so that
    /// its shutdown() called from the job fails loudly instead of waiting for
    /// itself.
    const void* origin = nullptr;
};

/// Runs `job` (inline on a plain thread; on the blocking pool from a fiber,
/// parking the fiber uncancellably until it is done). On return job->run has
/// returned. Throws std::invalid_argument (bad WEFT_BLOCKING_THREADS) or
/// std::system_error (no pool thread could be started); then run() never ran.
WEFT_API void blocking_execute(blocking_job* job);

/// A snapshot of the blocking pool, for tests and diagnostics. Internal.
struct blocking_stats {
    std::size_t threads = 0;      ///< pool threads alive (started, not exited or told to exit)
    std::size_t idle = 0;         ///< of those, waiting for work
    std::size_t queued = 0;       ///< jobs waiting for a thread
    std::size_t max_threads = 0;  ///< the bound
};

/// Thread-safe. Throws std::invalid_argument on a bad WEFT_BLOCKING_THREADS.
WEFT_API blocking_stats blocking_pool_stats();

/// Test hook (internal; the public knob is WEFT_BLOCKING_THREADS): sets the
/// bound, returns the previous one. Lowering it makes surplus idle threads
/// exit at once and surplus busy ones after their job; raising it does not
/// start threads for jobs already queued (later submissions do). Throws
/// std::invalid_argument unless n is in [1, 65536].
WEFT_API std::size_t blocking_pool_set_max_threads(std::size_t n);

/// Test hook (internal): sets how long an idle pool thread waits for work
/// before it exits (default 10 s), returns the previous value. Idle threads
/// re-evaluate their deadline at once. Throws std::invalid_argument unless d
/// is in [1 ms, 24 h].
WEFT_API std::chrono::nanoseconds blocking_pool_set_keep_alive(std::chrono::nanoseconds d);

/// Test hook (internal): while `on`, starting a pool thread fails as
/// pthread_create does at a thread limit (EAGAIN). Returns the previous value.
WEFT_API bool blocking_pool_fail_thread_starts(bool on) noexcept;

/// Where a blocking_call keeps f's result: an object (moved out by take()),
/// a pointer for an lvalue reference, nothing for void.
template <class R>
struct blocking_slot {
    std::optional<std::remove_cv_t<R>> value;
    template <class Call>
    void fill(Call&& call) { value.emplace(std::forward<Call>(call)()); }
    R take() { return std::move(*value); }
};
template <class T>
struct blocking_slot<T&> {
    T* ptr = nullptr;
    template <class Call>
    void fill(Call&& call) { ptr = std::addressof(std::forward<Call>(call)()); }
    T& take() { return *ptr; }
};
template <>
struct blocking_slot<void> {
    template <class Call>
    void fill(Call&& call) { std::forward<Call>(call)(); }
    void take() {}
};

/// The job of one spawn_blocking call: f's and args' decayed copies, then
/// the result or the exception.
template <class R, class Fn, class... Args>
class blocking_call final : public blocking_job {
public:
    template <class F, class... A>
    explicit blocking_call(F&& f, A&&... args) : call_(std::in_place, std::forward<F>(f), std::forward<A>(args)...) {
        run = &invoke;
    }

    /// After blocking_execute: the result, or f's exception rethrown.
    R take() {
        if (error_) std::rethrow_exception(error_);
        return result_.take();
    }

private:
    static void invoke(blocking_job* job) noexcept {
        auto* self = static_cast<blocking_call*>(job);
        try {
            self->result_.fill([self]() -> R {
                return std::apply([](Fn&& fn, Args&&... args) -> R { return std::invoke(std::move(fn), std::move(args)...); },
                                  std::move(*self->call_));
            });
        } catch (...) {
            self->error_ = std::current_exception();
        }
        self->call_.reset();  // the copies die on the thread that ran f, as std::thread's do
    }

    std::optional<std::tuple<Fn, Args...>> call_;
    std::exception_ptr error_;
    blocking_slot<R> result_;
};

}  // namespace detail

/// Runs `f(args...)` (decayed copies, invoked as rvalues) on the blocking pool
/// and returns its result or rethrows its exception; from a plain thread, runs
/// it inline. See the file comment for the exact rules. May suspend the
/// calling fiber (not a cancellation point). Thread-safe.
template <class F, class... Args>
std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...> spawn_blocking(F&& f, Args&&... args) {
    using R = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;
    static_assert(!std::is_rvalue_reference_v<R>,
                  "weft::spawn_blocking: f returns an rvalue reference, which would dangle; return by value");
    static_assert(std::is_void_v<R> || std::is_lvalue_reference_v<R> || std::is_move_constructible_v<R>,
                  "weft::spawn_blocking: f's result type must be move-constructible");
    detail::blocking_call<R, std::decay_t<F>, std::decay_t<Args>...> job(std::forward<F>(f),
                                                                         std::forward<Args>(args)...);
    detail::blocking_execute(&job);
    return job.take();
}

}  // namespace weft
