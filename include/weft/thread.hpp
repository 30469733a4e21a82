/// @file
/// `weft::thread` and `weft::jthread`: std::thread and std::jthread, on fibers.
#pragma once

#include <stop_token>
#include <type_traits>
#include <utility>

#include <weft/config.hpp>
#include <weft/detail/task.hpp>
#include <weft/error.hpp>
#include <weft/fiber_id.hpp>
#include <weft/this_fiber.hpp>  // weft::this_thread, as <thread> gives std::this_thread

namespace weft {

/// Exactly std::thread's interface and rules, but the function runs on a
/// fiber: of the calling fiber's runtime, or of the default runtime when
/// constructed on a plain thread. Fiber-safe (like std::thread).
///  - Destroying or move-assigning over a joinable thread calls std::terminate().
///  - An exception escaping the function prints
///    "weft: uncaught exception in fiber <id> '<name>': <what>" and terminates;
///    except operation_cancelled, which runtime::shutdown() throws from the
///    blocking call of a thread it cancels: the thread then ends quietly.
///  - join() may suspend the calling fiber (or blocks a plain thread). It throws
///    fiber_error(resource_deadlock_would_occur) on self-join and
///    fiber_error(invalid_argument) when not joinable; detach() likewise.
///    Like std::thread::join it cannot be interrupted: runtime::shutdown()
///    does not cancel it (it cancels the joined thread's blocking calls
///    instead, and waits for both), so no joinable thread is left behind by
///    a cancellation.
class WEFT_API thread {
public:
    using id = fiber_id;
    using native_handle_type = detail::fiber*;

    thread() noexcept = default;

    /// Starts f(args...) (as weft::spawn does). Never suspends. Throws
    /// fiber_error(runtime_shut_down) when the runtime is shut down, and
    /// std::bad_alloc.
    template <class F, class... Args>
        requires(!std::is_same_v<std::remove_cvref_t<F>, thread>)
    explicit thread(F&& f, Args&&... args) {
        auto call = detail::bind_call(std::forward<F>(f), std::forward<Args>(args)...);
        ref_ = detail::make_and_spawn<detail::thread_task<decltype(call)>>(nullptr, std::move(call)).first;
    }

    ~thread();
    thread(const thread&) = delete;
    thread& operator=(const thread&) = delete;
    thread(thread&& o) noexcept = default;
    thread& operator=(thread&& o) noexcept;

    bool joinable() const noexcept { return static_cast<bool>(ref_); }
    id get_id() const noexcept { return ref_ ? ref_.id() : id{}; }
    native_handle_type native_handle() const noexcept { return ref_.get(); }
    void join();
    void detach();
    void swap(thread& o) noexcept { std::swap(ref_, o.ref_); }

    /// std::thread::hardware_concurrency().
    static unsigned hardware_concurrency() noexcept;

private:
    detail::fiber_ref ref_;
};

inline void swap(thread& a, thread& b) noexcept { a.swap(b); }

/// std::jthread on fibers: joins on destruction after request_stop(); passes
/// a std::stop_token as the first argument when the function accepts one.
/// The stop token is only a flag the function may poll (as with std::jthread):
/// it does not make the fiber's blocking calls throw.
class WEFT_API jthread {
public:
    using id = fiber_id;
    using native_handle_type = thread::native_handle_type;

    jthread() noexcept : ss_(std::nostopstate) {}

    template <class F, class... Args>
        requires(!std::is_same_v<std::remove_cvref_t<F>, jthread>)
    explicit jthread(F&& f, Args&&... args) : ss_() {
        if constexpr (std::is_invocable_v<std::decay_t<F>, std::stop_token, std::decay_t<Args>...>)
            t_ = thread(std::forward<F>(f), ss_.get_token(), std::forward<Args>(args)...);
        else
            t_ = thread(std::forward<F>(f), std::forward<Args>(args)...);
    }

    /// request_stop(), then join(): may suspend the calling fiber (or block a
    /// plain thread) until the function returns.
    ~jthread();
    jthread(const jthread&) = delete;
    jthread& operator=(const jthread&) = delete;
    jthread(jthread&&) noexcept = default;
    jthread& operator=(jthread&& o) noexcept;

    bool joinable() const noexcept { return t_.joinable(); }
    id get_id() const noexcept { return t_.get_id(); }
    native_handle_type native_handle() const noexcept { return t_.native_handle(); }
    void join() { t_.join(); }
    void detach() { t_.detach(); }
    void swap(jthread& o) noexcept {
        t_.swap(o.t_);
        std::swap(ss_, o.ss_);
    }

    std::stop_source get_stop_source() noexcept { return ss_; }
    std::stop_token get_stop_token() const noexcept { return ss_.get_token(); }
    bool request_stop() noexcept { return ss_.request_stop(); }

    static unsigned hardware_concurrency() noexcept { return thread::hardware_concurrency(); }

private:
    std::stop_source ss_;
    thread t_;
};

inline void swap(jthread& a, jthread& b) noexcept { a.swap(b); }

}  // namespace weft
