/// @file
/// The runtime: worker threads that run fibers M:N, `spawn`, `block_on`,
/// `join_handle`, statistics and shutdown.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <weft/config.hpp>
#include <weft/detail/task.hpp>
#include <weft/error.hpp>
#include <weft/fiber_id.hpp>

namespace weft {

/// How a runtime is built. An aggregate, so `runtime_options{.workers = 2}` works.
/// A member left at 0 (or empty) takes its default, which the environment may
/// override: WEFT_WORKERS (default std::thread::hardware_concurrency()),
/// WEFT_STACK_SIZE (bytes, with an optional K/M suffix; default 256 KiB, times
/// 4 under AddressSanitizer/ThreadSanitizer). WEFT_LOG sets the level of the
/// spdlog logger "weft" (trace, debug, info, warn, error, critical, off).
/// An explicit non-zero member wins over the environment.
/// WEFT_DEADLOCK (process-wide, read once) says what happens when nothing in
/// the process can wake anyone any more (every fiber parked with no timer and
/// no descriptor, every plain thread blocked in a weft call with no deadline,
/// no other thread): "abort" (the default) prints every fiber's wait on
/// stderr, as Go's "all goroutines are asleep", and aborts; "warn" logs the
/// same at error level and goes on; "off" does not look. README, "Deadlock report".
/// Bad values (stack_size under 16 KiB or over 1 GiB, workers over 1024,
/// guard_pages over 256, an unparsable or overflowing WEFT_WORKERS,
/// WEFT_STACK_SIZE or WEFT_STALL_MS, an unknown WEFT_DEADLOCK) throw
/// std::invalid_argument; an unknown WEFT_LOG level is reported on stderr and
/// "warn" used.
struct runtime_options {
    std::size_t workers = 0;      ///< worker OS threads
    std::size_t stack_size = 0;   ///< usable bytes per fiber stack, rounded up to pages
    /// Inaccessible pages below each stack; 0: the build's default, 16 (64 KiB,
    /// meson option guard_pages). They cost address space, not memory. A frame
    /// larger than the guard could step over it without touching it; weft's
    /// meson dependency and weft.pc add -fstack-clash-protection to the code
    /// that uses weft, which makes such frames touch every page on the way.
    std::size_t guard_pages = 0;
    std::string name = {};        ///< runtime name for logs and worker thread names ("weft")
    /// Log a warning naming the fiber when a worker runs one fiber this long
    /// without switching (a fiber blocked in a std:: lock or a blocking system
    /// call stalls its worker), saying whether its thread was computing or
    /// asleep in the kernel. A thread starved of CPU by an overloaded machine
    /// is reported only after 10 times this. 0: the default, 100 ms, or
    /// WEFT_STALL_MS (milliseconds; a negative number or "off": no
    /// warnings); negative: no warnings. The thread that watches for
    /// stalls (its looks at most 50 ms apart) also wakes a sleeping worker to
    /// watch the network when every awake worker is held by one fiber, so
    /// with 2+ workers it runs even when warnings are off.
    std::chrono::milliseconds stall_warning{0};
};

/// A snapshot of counters; each value is read without stopping the workers,
/// so the fields are individually, not mutually, consistent.
struct runtime_stats {
    std::size_t workers = 0;
    /// Spawned and not yet retired. A fiber counts until its worker has
    /// released it, which can be a moment after join() or block_on() has
    /// returned its result: read it right after, it may still say 1.
    std::uint64_t fibers_alive = 0;
    /// Queued (deques, LIFO slots, injector). Not counted: fibers that yielded
    /// and wait in their worker's private round-robin ring.
    std::uint64_t fibers_runnable = 0;
    std::uint64_t fibers_parked = 0;    ///< suspended in a blocking call
    std::uint64_t spawned = 0;          ///< fibers ever spawned
    std::uint64_t switches = 0;         ///< context switches into fibers
    std::uint64_t steals = 0;           ///< fibers taken from another worker's deque
    std::uint64_t parks = 0;            ///< times a fiber parked in a blocking call
    std::uint64_t worker_sleeps = 0;    ///< times a worker went to sleep on its futex
    std::uint64_t stacks_mapped = 0;    ///< fiber stacks currently mmap'd (cached or in use)
    std::vector<std::size_t> queue_depth;  ///< per worker: deque length + LIFO slot
    std::string guard_mode;             ///< "madvise" (MADV_GUARD_INSTALL) or "mprotect"
};

template <class R>
class join_handle;

/// A set of worker threads running fibers. Thread-safe.
///
/// Lifecycle: the constructor starts the workers (std::system_error, as
/// std::thread's, when one cannot be started: those started are joined
/// first). shutdown() (also run by the
/// destructor) refuses new spawns, cancels every live fiber (a parked fiber
/// is woken with operation_cancelled thrown from its blocking call; a fiber
/// that never started never runs), waits for all of them to finish, then
/// joins the workers. It is idempotent. It must not be called from one of
/// the runtime's own fibers (that aborts with a message: it would wait for
/// itself), nor from a spawn_blocking job one of them waits for (the same).
/// Waits that are not cancellation points (std's: mutex lock(), a
/// condition_variable re-taking its mutex, thread::join(), a future's
/// destructor) are not interrupted: a fiber in one waits for what it waits
/// for, and shutdown() for that fiber. A mutex held by another runtime's
/// fiber or a plain thread can therefore hold shutdown() up until released.
/// The destructor run on one of the runtime's own fibers (std::exit() on a
/// fiber, with the runtime a global) does not shut down: the workers are
/// abandoned, as the default runtime's are at exit, and exit() keeps its
/// status.
///
/// fork(): as with std::thread, a runtime's threads do not exist in the child
/// of a fork(), so a runtime created before it must not be used there (not
/// even destroyed: leave it, or exec); create new runtimes in the child, which
/// gets an empty blocking pool (weft/blocking.hpp). Sockets the parent's
/// runtimes waited on are still registered with them: in the child, use
/// sockets opened there.
class WEFT_API runtime {
public:
    runtime();
    explicit runtime(runtime_options opts);
    ~runtime();
    runtime(const runtime&) = delete;
    runtime& operator=(const runtime&) = delete;

    /// Runs f(args...) on a new fiber and waits for it; returns its value or
    /// rethrows its exception. Fibers that f spawned go on running.
    /// May suspend (when called from a fiber) or blocks the calling thread.
    template <class F, class... Args>
    detail::call_result_t<F, Args...> block_on(F&& f, Args&&... args);

    /// Starts f(args...) on a new fiber of this runtime. Thread-safe, never suspends.
    /// Throws fiber_error(errc::runtime_shut_down) after shutdown() began.
    template <class F, class... Args>
    join_handle<detail::call_result_t<F, Args...>> spawn(F&& f, Args&&... args);

    /// See the class comment. Blocks the calling thread. Thread-safe.
    void shutdown();

    /// Counters; thread-safe, never suspends.
    runtime_stats stats() const;

    /// The live fibers that have been suspended at least once (parked or
    /// yielded: the ones a hang can be about), as a JSON array of
    /// {id, name, state, wait_reason, worker}. Fibers still queued for their
    /// first run, or running without having paused, are only counted in
    /// stats(). Thread-safe, never suspends.
    std::string dump_json() const;

    /// The options after defaults and the environment were applied.
    const runtime_options& options() const noexcept;

    /// The runtime running the calling fiber, or nullptr on a plain thread.
    static runtime* current() noexcept;

    detail::runtime_impl* impl() const noexcept { return impl_; }

private:
    detail::runtime_impl* impl_;
};

/// Owns the right to join one fiber. Fiber-safe. Destroying (or assigning
/// over) a handle that was neither joined nor detached detaches the fiber,
/// as Go and Tokio do; only weft::thread keeps std::thread's terminate rule.
/// A detached fiber's exception is logged at error level when it ends,
/// except operation_cancelled (runtime::shutdown()'s cancellation: debug level).
template <class R>
class join_handle {
public:
    join_handle() noexcept = default;
    join_handle(join_handle&&) noexcept = default;
    join_handle& operator=(join_handle&&) noexcept = default;
    ~join_handle() = default;

    /// Waits for the fiber, then returns its value or rethrows its exception
    /// (operation_cancelled if it was cancelled before it started).
    /// May suspend. Throws fiber_error(invalid_argument) if !joinable(), and
    /// fiber_error(resource_deadlock_would_occur) when the fiber joins itself.
    R join() {
        check_joinable();
        ref_.join();
        auto* t = std::exchange(task_, nullptr);
        detail::fiber_ref keep = std::move(ref_);  // keeps t alive while we take the value
        return t->take();
    }

    /// Lets the fiber run on unowned. Throws fiber_error(invalid_argument) if !joinable().
    void detach() {
        check_joinable();
        task_ = nullptr;
        ref_.reset();
    }

    bool joinable() const noexcept { return static_cast<bool>(ref_); }
    /// The fiber's id, or fiber_id{} when !joinable().
    fiber_id id() const noexcept { return ref_ ? ref_.id() : fiber_id{}; }
    /// True once the fiber's function returned (or threw). False when !joinable().
    bool is_finished() const noexcept { return ref_ && ref_.is_finished(); }

    // Internal: adopt a spawned fiber.
    join_handle(detail::fiber_ref r, detail::result_task<R>* t) noexcept : ref_(std::move(r)), task_(t) {}

private:
    void check_joinable() const {
        if (!ref_) throw fiber_error(std::make_error_code(std::errc::invalid_argument), "join_handle not joinable");
    }

    detail::fiber_ref ref_;
    detail::result_task<R>* task_ = nullptr;
};

namespace detail {
/// Test hook (internal): while >= 0, starting the thread of worker `index` or
/// a later one fails as pthread_create does at a thread limit (std::system_error,
/// EAGAIN); -1 turns it off. Returns the previous value.
WEFT_API int runtime_fail_worker_starts_from(int index) noexcept;

template <class F, class... Args>
auto spawn_on(runtime_impl* rt, F&& f, Args&&... args) {
    using R = call_result_t<F, Args...>;
    auto call = bind_call(std::forward<F>(f), std::forward<Args>(args)...);
    auto [ref, t] = make_and_spawn<fn_task<R, decltype(call)>>(rt, std::move(call));
    return join_handle<R>(std::move(ref), t);
}
}  // namespace detail

template <class F, class... Args>
join_handle<detail::call_result_t<F, Args...>> runtime::spawn(F&& f, Args&&... args) {
    return detail::spawn_on(impl_, std::forward<F>(f), std::forward<Args>(args)...);
}

template <class F, class... Args>
detail::call_result_t<F, Args...> runtime::block_on(F&& f, Args&&... args) {
    return spawn(std::forward<F>(f), std::forward<Args>(args)...).join();
}

/// Starts f(args...) on a new fiber of the calling fiber's runtime, or, on a
/// plain thread, of the default runtime (started lazily on first use; it
/// lives until the process exits and its fibers are then abandoned, as
/// goroutines are when main returns). Thread-safe, never suspends.
template <class F, class... Args>
join_handle<detail::call_result_t<F, Args...>> spawn(F&& f, Args&&... args) {
    return detail::spawn_on(nullptr, std::forward<F>(f), std::forward<Args>(args)...);
}

/// The default runtime (started on first use: the first call starts its
/// workers and may throw as runtime's constructor does). Thread-safe, never
/// suspends; callable from anywhere.
WEFT_API runtime& default_runtime();

}  // namespace weft
