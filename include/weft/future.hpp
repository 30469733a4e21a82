/// @file
/// `weft::promise<T>`, `future<T>`, `shared_future<T>` (with the `T&` and
/// `void` forms), `packaged_task<R(Args...)>` and `weft::async`: std's
/// futures, for fibers and plain OS threads alike.
///
/// Same interface, semantics and error types as the std:: ones
/// (std::future_error with std::future_errc, std::future_status,
/// std::launch; weft:: aliases are provided), and:
///  - get(), wait(), wait_for() and wait_until() may suspend: a fiber parks,
///    a plain thread sleeps on a futex. Either may wait for a value that
///    either sets. With the result already there they are one atomic load:
///    no lock, no syscall.
///  - Those waits are cancellation points: on a fiber cancelled by
///    runtime::shutdown() they throw weft::operation_cancelled (the future
///    stays valid). A result that is already there is still returned.
///  - Any call on an invalid future or shared_future other than valid(),
///    share(), assignment and destruction throws
///    future_error(future_errc::no_state) (std: undefined), so a second
///    future::get() fails loudly. promise and packaged_task members throw
///    no_state on a moved-from object, as std specifies.
///  - set_exception(nullptr) and a launch policy with neither launch::async
///    nor launch::deferred throw std::invalid_argument (std: undefined).
///  - Not provided: set_value_at_thread_exit, set_exception_at_thread_exit,
///    make_ready_at_thread_exit (a fiber has no thread exit of its own to
///    hook: its function's return is the equivalent, so set the value there)
///    and the allocator-taking constructors (states use operator new).
///
/// Thread-safety: as std. promise and packaged_task are fiber-safe, except
/// that get_future() and the setters may race with each other (std's
/// "as though they acquire a single mutex"); future is fiber-safe;
/// shared_future objects are fiber-safe and distinct copies of one shared
/// state are thread-safe (many fibers and threads may wait and get() at once).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>  // std::future_error, future_errc, future_status, launch
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <weft/config.hpp>
#include <weft/detail/deadline.hpp>
#include <weft/detail/park.hpp>
#include <weft/detail/task.hpp>

namespace weft {

using std::future_errc;
using std::future_error;
using std::future_status;
using std::launch;

template <class R>
class future;
template <class R>
class shared_future;

namespace detail {

/// Throws std::future_error(e) (out of line, to keep it off inline paths).
[[noreturn]] WEFT_API void throw_future_error(std::future_errc e);

/// The shared state of a promise, packaged_task or async call and its
/// futures: one atomic status word that waiters park on (parking lot,
/// detail/park.hpp), a reference count, and the result (in future_state<R>).
/// No mutex and no waiter list: the lot keeps the waiters.
///
/// Vocabulary. To *claim* is to win the right to write the result; to
/// *publish* is to set READY once it is written. The claimant is a promise
/// setter, packaged_task::operator(), an async task, the first waiter of a
/// deferred state, or an abandoning owner (a promise or packaged_task
/// destroyed without a result stores broken_promise).
///
/// Invariants.
///  S1 status_ bits: CLAIMED (a writer owns the result), READY (published),
///     WAITERS (someone may be parked on &status_), RETRIEVED (the future was
///     handed out). All monotonic, except that a setter whose value
///     constructor throws clears CLAIMED again (std: the promise stays
///     unsatisfied). A setter racing that one meanwhile has already thrown
///     promise_already_satisfied; std would have let it wait and retry.
///  S2 The result (value_, error_) is written only by the claimant, before
///     READY, and never changes after it; readers read it only after seeing
///     READY with acquire.
///  S3 No lost wake-up: a waiter sets WAITERS (an RMW) and parks only if
///     READY is still clear under the bucket lock (park_on's validate); the
///     publisher sets READY with an RMW that also tells it whether WAITERS
///     was set, before it takes the bucket lock in unpark_on. The two RMWs
///     are ordered on the one word: either the waiter's sees READY (it does
///     not park) or the publisher's sees WAITERS (it wakes every waiter, and
///     P2 of the parking lot covers a waiter that is between the RMW and
///     its park).
///  S4 Every promise, packaged_task, future and shared_future holds one
///     reference; the last release deletes the state. An async task holds
///     none (S6).
///  S5 Lifetime against wake-ups: after its READY RMW the publisher uses the
///     state only as the number it passes to unpark_on, which never
///     dereferences the key (parking lot P4). So a waiter that sees READY
///     may drop the last reference and delete the state at once, even
///     before the publisher's unpark_on ran: that call then finds nobody on
///     the address, or, if the memory already holds a new state, wakes that
///     state's waiters spuriously. Waiters therefore re-check READY after
///     every wake-up and park again if it is clear.
///  S6 async (kind::async): the last release waits, uncancellably, for
///     READY before deleting: std::async's "the future's destructor waits".
///     The task writes the result, destroys its callable, then publishes and
///     never touches the state again (S5), so it needs no reference and the
///     state cannot die under it. (A future of an async call destroyed on
///     that call's own fiber would wait for itself, as a std::thread
///     joining itself would.)
///  S7 deferred (kind::deferred): the first wait()/get() claims and runs the
///     function on the caller; later waiters (shared_future) park for its
///     READY like any other. Timed waits never run it: they return
///     future_status::deferred until READY.
///
/// Memory orders (each operation is labelled where it is used):
///  - publish's READY RMW is release and every reader's READY load acquire:
///    the result written under the claim (S2) is visible to whoever sees it.
///  - CLAIMED and RETRIEVED are relaxed: they only elect one writer / one
///    future and publish nothing (READY's release does).
///  - WAITERS is set with acquire, as that RMW may be the one that sees READY.
///  - The validate load under the bucket lock is relaxed: the lock orders it
///    (P2), and a waiter reloads with acquire before it reads the result.
///  - References: increments are relaxed (the caller holds one already);
///    decrements acq_rel, so the last releaser sees all other holders'
///    accesses before it deletes (the shared_ptr argument).
///
/// Tested by test/api/future_test.cpp.
class WEFT_API future_state_base {
public:
    enum class kind : unsigned char { plain, deferred, async };

    future_state_base(const future_state_base&) = delete;
    future_state_base& operator=(const future_state_base&) = delete;

    void add_ref() noexcept {
        refs_.fetch_add(1, std::memory_order_relaxed);  // relaxed: the caller already holds a reference (S4)
    }
    void release() noexcept {
        // acq_rel: the last releaser sees every other holder's accesses before deleting (S4).
        if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy_last();
    }

    bool is_ready() const noexcept {
        return (status_.load(std::memory_order_acquire) & ready_bit) != 0;  // acquire: pairs with publish (S2)
    }
    bool is_deferred() const noexcept { return kind_ == kind::deferred; }

    /// Until READY; runs a deferred function first if nobody has (S7).
    /// May suspend; cancellable (throws operation_cancelled).
    void wait() {
        if (!is_ready()) wait_slow();
    }
    /// Until READY (true) or `deadline_ns` (false). Never runs a deferred
    /// function. May suspend; throws operation_cancelled if `cancellable`.
    bool wait_until_ns(std::int64_t deadline_ns, bool cancellable = true);

    /// Wins the right to write the result (S1); false if someone has it.
    [[nodiscard]] bool try_claim() noexcept {
        // relaxed: elects one writer; the result is published by READY's release (S2).
        return (status_.fetch_or(claimed_bit, std::memory_order_relaxed) & claimed_bit) == 0;
    }
    void claim_or_throw() {
        if (!try_claim()) throw_future_error(std::future_errc::promise_already_satisfied);
    }
    /// Undoes a claim whose write failed (S1).
    void unclaim() noexcept {
        status_.fetch_and(~claimed_bit, std::memory_order_relaxed);  // relaxed: nothing was written
    }
    /// Sets READY and wakes every waiter; the caller holds the claim. The
    /// state may be gone as soon as READY is set (S5). Never suspends, never
    /// allocates.
    void publish() noexcept {
        const void* key = &status_;  // S5: after the RMW the state is only this number
        // release: publishes the result (S2); the RMW sees WAITERS (S3).
        const std::uint32_t old = status_.fetch_or(ready_bit, std::memory_order_release);
        if (old & waiters_bit) (void)unpark_on(key, static_cast<std::size_t>(-1));
    }
    /// Marks the future handed out; throws future_already_retrieved the second time.
    void mark_retrieved() {
        // relaxed: elects one future; publishes nothing (S1).
        if (status_.fetch_or(retrieved_bit, std::memory_order_relaxed) & retrieved_bit)
            throw_future_error(std::future_errc::future_already_retrieved);
    }
    /// Stores `e` and publishes, unless a result was claimed already.
    void abandon(std::exception_ptr e) noexcept {
        if (!try_claim()) return;
        error_ = std::move(e);
        publish();
    }
    /// abandon() with future_error(broken_promise).
    void abandon_broken() noexcept;

protected:
    explicit future_state_base(kind k) noexcept : kind_(k) {}
    virtual ~future_state_base();
    /// Deferred states: writes the result of the function and publishes (S7).
    virtual void run_deferred() noexcept;

    std::exception_ptr error_;  // S2

private:
    static constexpr std::uint32_t claimed_bit = 1;
    static constexpr std::uint32_t ready_bit = 2;
    static constexpr std::uint32_t waiters_bit = 4;
    static constexpr std::uint32_t retrieved_bit = 8;

    void wait_slow();
    void destroy_last() noexcept;  // S6 for async states, then delete

    std::atomic<std::uint32_t> status_{0};  // S1
    std::atomic<std::uint32_t> refs_{1};    // S4: the creator's reference
    const kind kind_;
};

/// The state with its result: R, a pointer for R&, a byte for void.
template <class R>
class future_state : public future_state_base {
public:
    using slot = typename result_slot<R>::type;

    explicit future_state(kind k = kind::plain) noexcept : future_state_base(k) {}

    /// promise::set_value: claim, construct, publish (S1, S2).
    template <class... A>
    void set_value(A&&... a) {
        claim_or_throw();
        try {
            value_.emplace(std::forward<A>(a)...);
        } catch (...) {
            unclaim();
            throw;
        }
        publish();
    }
    void set_exception(std::exception_ptr e) {
        claim_or_throw();
        error_ = std::move(e);
        publish();
    }
    /// Under the claim: stores call()'s result, or what it throws. Does not publish.
    template <class Call>
    void store_result_of(Call&& call) noexcept {
        try {
            if constexpr (std::is_void_v<R>) {
                std::forward<Call>(call)();
                value_.emplace('\0');
            } else if constexpr (std::is_reference_v<R>) {
                value_.emplace(std::addressof(std::forward<Call>(call)()));
            } else {
                value_.emplace(std::forward<Call>(call)());
            }
        } catch (...) {
            error_ = std::current_exception();
        }
    }
    /// After READY: the stored value, or rethrows the stored exception.
    slot& result() {
        if (error_) std::rethrow_exception(error_);
        return *value_;
    }

private:
    std::optional<slot> value_;  // S2
};

/// A launch::deferred call: the function runs on the first waiter (S7).
template <class R, class Fn>
class deferred_state final : public future_state<R> {
public:
    explicit deferred_state(Fn&& fn) : future_state<R>(future_state_base::kind::deferred), fn_(std::move(fn)) {}

private:
    void run_deferred() noexcept override {
        this->store_result_of(*fn_);
        fn_.reset();
        this->publish();
    }
    std::optional<Fn> fn_;
};

/// The fiber of a launch::async call. Holds no reference to the state (S6).
template <class R, class Fn>
struct async_task final : task_base {
    future_state<R>* state;  // null once published
    std::optional<Fn> fn;

    async_task(future_state<R>* s, Fn&& f) : state(s), fn(std::move(f)) {}
    ~async_task() override {
        // Never ran (cancelled before its start, no stack, or the spawn failed):
        // the future gets that error, so that its destructor does not wait forever.
        fn.reset();
        if (!state) return;
        if (not_started) state->abandon(not_started);
        else state->abandon_broken();
    }
    void run() noexcept override {
        future_state<R>* s = std::exchange(state, nullptr);
        (void)s->try_claim();  // nobody else claims an async state
        s->store_result_of(*fn);
        fn.reset();  // the callable dies before the future's destructor returns
        destroy_current_fiber_locals();  // and the fiber's fiber_local values, as std::async's thread_locals
        s->publish();  // S6: the last touch of *s
    }
};

/// packaged_task's state: the stored task, type-erased.
template <class R, class... Args>
class task_state : public future_state<R> {
public:
    /// Under the claim: runs the task and stores its result. Does not publish.
    virtual void invoke(Args&&... args) noexcept = 0;
    /// A fresh state holding this one's task (moved out): packaged_task::reset.
    virtual task_state* remake() = 0;
};

template <class Fn, class R, class... Args>
class task_state_impl final : public task_state<R, Args...> {
public:
    template <class F>
    explicit task_state_impl(F&& f) : fn_(std::forward<F>(f)) {}

    void invoke(Args&&... args) noexcept override {
        this->store_result_of([&]() -> R {
            if constexpr (std::is_void_v<R>) std::invoke(fn_, std::forward<Args>(args)...);
            else return std::invoke(fn_, std::forward<Args>(args)...);
        });
    }
    task_state<R, Args...>* remake() override { return new task_state_impl(std::move(fn_)); }

private:
    Fn fn_;
};

/// Releases a state reference at scope exit.
struct state_release {
    future_state_base* s;
    ~state_release() { s->release(); }
};

/// What future and shared_future share: the handle and the waits.
template <class R>
class future_base {
public:
    /// True if this object refers to a shared state. Never suspends, never throws.
    bool valid() const noexcept { return state_ != nullptr; }

    /// Waits until the result is ready; for a launch::deferred state, runs
    /// the function on the caller first (if no one has). May suspend;
    /// cancellation point. Throws future_error(no_state) if !valid().
    void wait() const { checked()->wait(); }

    /// Waits until the result is ready (ready) or `d` passed (timeout);
    /// future_status::deferred at once for a launch::deferred state whose
    /// function has not completed. May suspend; cancellation point. Throws
    /// future_error(no_state) if !valid().
    template <class Rep, class Period>
    std::future_status wait_for(const std::chrono::duration<Rep, Period>& d) const {
        future_state<R>* s = checked();
        if (s->is_ready()) return std::future_status::ready;
        if (s->is_deferred()) return std::future_status::deferred;
        return s->wait_until_ns(deadline_after_ns(saturating_ns(d))) ? std::future_status::ready
                                                                     : std::future_status::timeout;
    }

    /// As wait_for, until the time point `t` (any clock).
    template <class Clock, class Duration>
    std::future_status wait_until(const std::chrono::time_point<Clock, Duration>& t) const {
        future_state<R>* s = checked();
        if (s->is_ready()) return std::future_status::ready;
        if (s->is_deferred()) return std::future_status::deferred;
        return wait_until_own_clock(t, [s](std::int64_t ns) { return s->wait_until_ns(ns); })
                   ? std::future_status::ready
                   : std::future_status::timeout;
    }

protected:
    future_base() noexcept = default;
    explicit future_base(future_state<R>* s) noexcept : state_(s) {}  // adopts a reference
    ~future_base() { reset(); }

    future_state<R>* checked() const {
        if (!state_) throw_future_error(std::future_errc::no_state);
        return state_;
    }
    void reset() noexcept {
        if (state_) std::exchange(state_, nullptr)->release();
    }

    future_state<R>* state_ = nullptr;
};

/// What shared_future<R>::get returns: const R&, R& or void.
template <class R>
struct shared_get {
    using type = const R&;
};
template <class R>
struct shared_get<R&> {
    using type = R&;
};
template <>
struct shared_get<void> {
    using type = void;
};

/// Adopts a reference into a future (promise, packaged_task, async).
template <class R>
future<R> make_future(future_state<R>* s) noexcept {
    return future<R>(s);
}

}  // namespace detail

/// std::future<R>: the one receiver of a shared state. Fiber-safe. Move-only.
/// The destructor of the last future/shared_future of an async() call waits
/// for that call to finish (may suspend, uncancellably), as std's does.
template <class R>
class future : public detail::future_base<R> {
public:
    future() noexcept = default;
    future(future&& o) noexcept : detail::future_base<R>(std::exchange(o.state_, nullptr)) {}
    future& operator=(future&& o) noexcept {
        if (this != &o) {
            this->reset();
            this->state_ = std::exchange(o.state_, nullptr);
        }
        return *this;
    }
    future(const future&) = delete;
    future& operator=(const future&) = delete;
    ~future() = default;

    /// Moves this future's state into a shared_future; valid() is false after.
    /// Never suspends, never throws.
    shared_future<R> share() noexcept { return shared_future<R>(std::move(*this)); }

    /// Waits (as wait()), then returns the value (R by move, R& or void) or
    /// rethrows the stored exception; valid() is false afterwards either way.
    /// May suspend; cancellation point (the future stays valid then).
    /// Throws future_error(no_state) if !valid() (so a second get() throws).
    R get() {
        detail::future_state<R>* s = this->checked();
        s->wait();
        detail::state_release hold{std::exchange(this->state_, nullptr)};
        if constexpr (std::is_void_v<R>) s->result();
        else if constexpr (std::is_reference_v<R>) return *s->result();
        else return std::move(s->result());
    }

private:
    explicit future(detail::future_state<R>* s) noexcept : detail::future_base<R>(s) {}
    friend future detail::make_future<R>(detail::future_state<R>*) noexcept;
    friend class shared_future<R>;
};

/// std::shared_future<R>: a copyable receiver; every copy may wait and get()
/// at once, from fibers and threads; all are woken. get() returns const R&
/// (R& for a reference, void for void) and may be called many times.
template <class R>
class shared_future : public detail::future_base<R> {
    using get_result = typename detail::shared_get<R>::type;

public:
    shared_future() noexcept = default;
    shared_future(const shared_future& o) noexcept : detail::future_base<R>(o.state_) {
        if (this->state_) this->state_->add_ref();
    }
    shared_future(shared_future&& o) noexcept : detail::future_base<R>(std::exchange(o.state_, nullptr)) {}
    shared_future(future<R>&& f) noexcept : detail::future_base<R>(std::exchange(f.state_, nullptr)) {}
    shared_future& operator=(const shared_future& o) noexcept {
        detail::future_state<R>* s = o.state_;  // read first: `o` may be *this
        if (s) s->add_ref();
        this->reset();
        this->state_ = s;
        return *this;
    }
    shared_future& operator=(shared_future&& o) noexcept {
        if (this != &o) {
            this->reset();
            this->state_ = std::exchange(o.state_, nullptr);
        }
        return *this;
    }
    ~shared_future() = default;

    /// Waits (as wait()), then returns the value or rethrows the stored
    /// exception; this object stays valid. May suspend; cancellation point.
    /// Throws future_error(no_state) if !valid().
    get_result get() const {
        detail::future_state<R>* s = this->checked();
        s->wait();
        if constexpr (std::is_void_v<R>) s->result();
        else if constexpr (std::is_reference_v<R>) return *s->result();
        else return s->result();
    }
};

namespace detail {

/// What the promise specializations share.
template <class R>
class promise_base {
public:
    promise_base() : state_(new future_state<R>()) {}
    promise_base(promise_base&& o) noexcept : state_(std::exchange(o.state_, nullptr)) {}
    promise_base& operator=(promise_base&& o) noexcept {
        if (this != &o) {
            drop();
            state_ = std::exchange(o.state_, nullptr);
        }
        return *this;
    }
    promise_base(const promise_base&) = delete;
    promise_base& operator=(const promise_base&) = delete;
    /// Without a result set, stores future_error(broken_promise) (waking the
    /// waiters). Never suspends.
    ~promise_base() { drop(); }

    /// The future of this promise. Never suspends. Throws
    /// future_error(future_already_retrieved) the second time, no_state when moved-from.
    future<R> get_future() {
        future_state<R>* s = checked();
        s->mark_retrieved();
        s->add_ref();
        return make_future(s);
    }

    /// Stores the exception `p` and wakes the waiters. Never suspends. Throws
    /// future_error(promise_already_satisfied) if a result was set,
    /// no_state when moved-from, std::invalid_argument if `p` is null.
    void set_exception(std::exception_ptr p) {
        future_state<R>* s = checked();
        if (!p) throw std::invalid_argument("weft::promise::set_exception: null exception_ptr");
        s->set_exception(std::move(p));
    }

protected:
    future_state<R>* checked() const {
        if (!state_) throw_future_error(std::future_errc::no_state);
        return state_;
    }
    void swap_state(promise_base& o) noexcept { std::swap(state_, o.state_); }

private:
    void drop() noexcept {
        if (!state_) return;
        state_->abandon_broken();
        std::exchange(state_, nullptr)->release();
    }

    future_state<R>* state_;
};

}  // namespace detail

/// std::promise<R>. set_value() and set_exception() never suspend; they wake
/// every waiter (fibers and threads) without allocating. Each throws
/// future_error(promise_already_satisfied) if a result was already set, and
/// no_state on a moved-from promise; set_value also throws what R's
/// constructor throws (the promise then stays unsatisfied).
template <class R>
class promise : public detail::promise_base<R> {
public:
    promise() = default;
    promise(promise&&) noexcept = default;
    promise& operator=(promise&&) noexcept = default;
    void swap(promise& o) noexcept { this->swap_state(o); }

    void set_value(const R& v) { this->checked()->set_value(v); }
    void set_value(R&& v) { this->checked()->set_value(std::move(v)); }
};

template <class R>
class promise<R&> : public detail::promise_base<R&> {
public:
    promise() = default;
    promise(promise&&) noexcept = default;
    promise& operator=(promise&&) noexcept = default;
    void swap(promise& o) noexcept { this->swap_state(o); }

    void set_value(R& v) { this->checked()->set_value(std::addressof(v)); }
};

template <>
class promise<void> : public detail::promise_base<void> {
public:
    promise() = default;
    promise(promise&&) noexcept = default;
    promise& operator=(promise&&) noexcept = default;
    void swap(promise& o) noexcept { this->swap_state(o); }

    void set_value() { this->checked()->set_value('\0'); }
};

template <class R>
void swap(promise<R>& a, promise<R>& b) noexcept {
    a.swap(b);
}

template <class Signature>
class packaged_task;

/// std::packaged_task<R(Args...)>: a callable whose result (or exception)
/// goes to a future. Fiber-safe. operator() runs the task on the caller and
/// never suspends by itself (the task may).
template <class R, class... Args>
class packaged_task<R(Args...)> {
public:
    packaged_task() noexcept = default;

    /// Stores a decayed copy of f. Throws what its move/copy or the
    /// allocation of the state throws.
    template <class F>
        requires(!std::is_same_v<std::remove_cvref_t<F>, packaged_task> &&
                 std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
    explicit packaged_task(F&& f)
        : state_(new detail::task_state_impl<std::decay_t<F>, R, Args...>(std::forward<F>(f))) {}

    packaged_task(packaged_task&& o) noexcept : state_(std::exchange(o.state_, nullptr)) {}
    packaged_task& operator=(packaged_task&& o) noexcept {
        if (this != &o) {
            drop();
            state_ = std::exchange(o.state_, nullptr);
        }
        return *this;
    }
    packaged_task(const packaged_task&) = delete;
    packaged_task& operator=(const packaged_task&) = delete;
    /// Without a result stored, stores future_error(broken_promise). Never suspends.
    ~packaged_task() { drop(); }

    void swap(packaged_task& o) noexcept { std::swap(state_, o.state_); }
    bool valid() const noexcept { return state_ != nullptr; }

    /// As promise::get_future.
    future<R> get_future() {
        detail::task_state<R, Args...>* s = checked();
        s->mark_retrieved();
        s->add_ref();
        return detail::make_future<R>(s);
    }

    /// Runs the task with `args`, stores its result or exception, and wakes
    /// the waiters. Throws future_error(promise_already_satisfied) on a second
    /// call (without reset()), no_state if !valid().
    void operator()(Args... args) {
        detail::task_state<R, Args...>* s = checked();
        s->claim_or_throw();
        s->invoke(std::forward<Args>(args)...);
        s->publish();
    }

    /// A new shared state holding the same task; the old state, if it has no
    /// result, gets broken_promise. Throws no_state if !valid(), and what the
    /// allocation or the task's move throws.
    void reset() {
        detail::task_state<R, Args...>* fresh = checked()->remake();
        drop();
        state_ = fresh;
    }

private:
    detail::task_state<R, Args...>* checked() const {
        if (!state_) detail::throw_future_error(std::future_errc::no_state);
        return state_;
    }
    void drop() noexcept {
        if (!state_) return;
        state_->abandon_broken();
        std::exchange(state_, nullptr)->release();
    }

    detail::task_state<R, Args...>* state_ = nullptr;
};

template <class R, class... Args>
void swap(packaged_task<R(Args...)>& a, packaged_task<R(Args...)>& b) noexcept {
    a.swap(b);
}

namespace detail {

template <class F, class... Args>
future<call_result_t<F, Args...>> async_on_fiber(F&& f, Args&&... args) {
    using R = call_result_t<F, Args...>;
    auto call = bind_call(std::forward<F>(f), std::forward<Args>(args)...);
    auto* s = new future_state<R>(future_state_base::kind::async);
    future<R> fut = make_future(s);  // its destructor waits for READY (S6): every path below publishes
    try {
        (void)make_and_spawn<async_task<R, decltype(call)>>(nullptr, s, std::move(call));  // detached
    } catch (...) {
        s->abandon(std::current_exception());  // no-op if the runtime destroyed the task (it abandoned)
        throw;
    }
    return fut;
}

template <class F, class... Args>
future<call_result_t<F, Args...>> async_deferred(F&& f, Args&&... args) {
    using R = call_result_t<F, Args...>;
    auto call = bind_call(std::forward<F>(f), std::forward<Args>(args)...);
    return make_future<R>(new deferred_state<R, decltype(call)>(std::move(call)));
}

}  // namespace detail

/// std::async with launch::async: runs f(args...) (decayed copies, as
/// std::async) on a new fiber at once — of the calling fiber's runtime, or,
/// from a plain thread, of the default runtime (as weft::spawn). The result
/// or exception goes to the returned future, whose destructor (the last one,
/// with share()) waits for the call to finish, uncancellably. Never
/// suspends. Throws fiber_error(runtime_shut_down) if the runtime is
/// shutting down, and what copying f and args or the allocations throw.
/// A fiber cancelled before it started stores operation_cancelled.
template <class F, class... Args>
    requires(!std::is_same_v<std::remove_cvref_t<F>, std::launch>)
[[nodiscard]] future<detail::call_result_t<F, Args...>> async(F&& f, Args&&... args) {
    return detail::async_on_fiber(std::forward<F>(f), std::forward<Args>(args)...);
}

/// std::async with a policy: launch::async (alone or with launch::deferred)
/// as above; launch::deferred alone stores the call, which runs on the
/// first fiber or thread to call wait() or get() (wait_for/wait_until return
/// future_status::deferred until then). A policy with neither bit throws
/// std::invalid_argument.
template <class F, class... Args>
[[nodiscard]] future<detail::call_result_t<F, Args...>> async(std::launch policy, F&& f, Args&&... args) {
    if ((policy & std::launch::async) == std::launch::async)
        return detail::async_on_fiber(std::forward<F>(f), std::forward<Args>(args)...);
    if ((policy & std::launch::deferred) == std::launch::deferred)
        return detail::async_deferred(std::forward<F>(f), std::forward<Args>(args)...);
    throw std::invalid_argument("weft::async: the launch policy has neither launch::async nor launch::deferred");
}

}  // namespace weft
