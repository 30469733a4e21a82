#include "sched/worker.hpp"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <system_error>
#include <thread>

#include <weft/detail/park.hpp>
#include <weft/error.hpp>
#include <weft/this_fiber.hpp>

#include "diag/deadlock.hpp"
#include "diag/overflow.hpp"
#include "io/reactor.hpp"
#include "sched/runtime_impl.hpp"
#include "sync/wait_queue.hpp"
#include "util/asym_fence.hpp"
#include "util/check.hpp"
#include "util/futex.hpp"
#include "util/log.hpp"

namespace weft::detail {

namespace {
// initial-exec: read by the SIGSEGV handler (diag/overflow.cpp), which must not
// call __tls_get_addr. Only ever read through worker::current() (never inlined).
thread_local worker* tls_worker __attribute__((tls_model("initial-exec"))) = nullptr;
}  // namespace

worker* current_worker_for_signal() noexcept { return tls_worker; }

__attribute__((noinline, noipa)) worker* worker::current() noexcept { return tls_worker; }

std::uint64_t thread_token() noexcept;  // sched/api.cpp

// Exported (weft/detail/park.hpp): the mutexes' owner token, on their fast
// paths. Reads tls_worker itself (no switch can happen inside).
std::uint64_t self_token() noexcept {
    if (worker* w = tls_worker) return w->running()->id;
    return thread_token();
}

worker::worker(runtime_impl& rt, unsigned index, std::size_t deque_capacity)
    : rt_(rt),
      index_(index),
      dq_(deque_capacity),
      wq_(deque_capacity),
      stacks_(rt.opts.stack_size, rt.opts.guard_pages, rt.stacks_mapped),
      rng_(0x9e3779b9u * (index + 1)) {}

namespace {
std::atomic<int> fail_starts_from{-1};  // the test hook; relaxed: a flag set before the runtime is built
}  // namespace

int runtime_fail_worker_starts_from(int index) noexcept {
    return fail_starts_from.exchange(index, std::memory_order_relaxed);  // relaxed: a test flag
}

void worker::start() {
    if (const int from = fail_starts_from.load(std::memory_order_relaxed); from >= 0 && index_ >= unsigned(from))
        throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again), "test hook");
    thread_ = std::thread([this] { run(); });
}

void worker::join() {
    if (thread_.joinable()) thread_.join();
}

std::size_t worker::queue_depth() const noexcept {
    return dq_.size() + wq_.size() + (lifo_full.load(std::memory_order_relaxed) ? 1 : 0);  // relaxed: stats
}

std::uint32_t worker::next_random() noexcept {  // xorshift32: victim choice only
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 17;
    rng_ ^= rng_ << 5;
    return rng_;
}

void worker::wake_thread() noexcept {
    futex_wake(sleep_word, 1);
    // E4: StoreLoad between the caller's sleep_word store and this load; the
    // sleeper stores in_epoll_ then loads sleep_word behind the same fence.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (in_epoll_.load(std::memory_order_relaxed)) rt_.io.interrupt();  // relaxed: ordered by the fence
}

bool worker::nudge_if_sleeping_past(std::int64_t deadline_ns) noexcept {
    if (sleep_deadline_.load(std::memory_order_seq_cst) <= deadline_ns) return false;  // seq_cst: T4
    std::uint32_t expected = 1;
    // acq_rel: only a sleeper's word is 1; 0 (woken) and nudged need nothing.
    if (!sleep_word.compare_exchange_strong(expected, nudged, std::memory_order_acq_rel, std::memory_order_relaxed))
        return false;
    wake_thread();
    return true;
}

// ---------------------------------------------------------------- queues

void worker::push_local(fiber* f) noexcept {
    if (dq_.push(f)) return;
    // Full: move the older half to the injector as one chain (Go's runqputslow; R4).
    fiber* head = nullptr;
    fiber* tail = nullptr;
    std::size_t n = 0;
    for (std::size_t i = 0, half = dq_.capacity() / 2; i < half; ++i) {
        fiber* g = dq_.pop_oldest();
        if (!g) break;
        g->next_run = nullptr;
        (tail ? tail->next_run : head) = g;
        tail = g;
        ++n;
    }
    if (head) rt_.post_chain(head, n);
    if (!dq_.push(f)) rt_.post(f);
}

fiber* worker::take_injected() noexcept {
    fiber* chain = rt_.injector_pop();
    if (!chain) return nullptr;
    fiber* rest = std::exchange(chain->next_run, nullptr);
    bool pushed = false;
    while (rest) {
        fiber* nx = rest->next_run;
        rest->next_run = nullptr;
        if (!dq_.push(rest)) {
            rest->next_run = nx;
            std::size_t n = 0;
            for (fiber* g = rest; g; g = g->next_run) ++n;
            rt_.post_chain(rest, n);
            break;
        }
        pushed = true;
        rest = nx;
    }
    if (pushed) rt_.idle.notify_one();  // the rest of the chain is stealable now
    return chain;
}

void worker::yq_push(fiber* f) noexcept {
    f->next_run = nullptr;
    (yq_tail_ ? yq_tail_->next_run : yq_head_) = f;
    yq_tail_ = f;
}

fiber* worker::yq_pop() noexcept {
    fiber* f = yq_head_;
    if (f) {
        yq_head_ = std::exchange(f->next_run, nullptr);
        if (!yq_head_) yq_tail_ = nullptr;
    }
    return f;
}

void worker::yq_flush() noexcept {
    // Only what fits: an overflow would send the oldest half to the injector,
    // behind younger fibers, and break the ring's FIFO order (W3).
    // Unlink before pushing: once in the deque a fiber may be stolen, run and
    // freed at once, so nothing may touch it after the push (W1's rule).
    bool moved = false;
    while (fiber* f = yq_head_) {
        fiber* nx = std::exchange(f->next_run, nullptr);
        if (!dq_.push(f)) {
            f->next_run = nx;  // not published: still ours
            break;
        }
        yq_head_ = nx;
        if (!nx) yq_tail_ = nullptr;
        moved = true;
    }
    if (moved) rt_.idle.notify_one();  // W5: now stealable
}

void worker::schedule_spawned(fiber* f) noexcept {
    // D4: a wake-up is owed only when the deque turns non-empty (and never
    // when we are the only worker, which is awake: it is running us).
    // Also owed when our fiber turns out to be alone after the push: a thief took the
    // last item between the look and the push, and its own hand-over (D2) may be over
    // already (found by review: the fiber then waited for this worker's next pick).
    const bool was_empty = !dq_.owner_nonempty();
#if WEFT_CHAOS
    // chaos: stand in for a preemption between the look and the push, where a thief
    // may take the one item we saw and finish its hand-over (D4's second case).
    if (!was_empty && dq_.size() == 1 && rt_.workers.size() > 1 && (next_random() & 3) == 0)
        std::this_thread::sleep_for(std::chrono::microseconds(300));
#endif
    push_local(f);
    if (rt_.workers.size() > 1 && (was_empty || dq_.size() <= 1)) rt_.idle.notify_one();
}

void worker::set_lifo(fiber* f) noexcept {
    lifo_ = f;
    lifo_full.store(f != nullptr, std::memory_order_relaxed);  // relaxed: stats mirror
}

void worker::push_woken(fiber* f) noexcept {
    // W6: FIFO among woken fibers. Full: the newcomer waits in the (FIFO)
    // injector rather than reorder the queue. D4 as for spawns.
    const bool was_empty = !wq_.owner_nonempty();
    if (!wq_.push(f)) {
        rt_.post(f);
        return;
    }
    if (rt_.workers.size() > 1 && (was_empty || wq_.size() <= 1)) rt_.idle.notify_one();  // D4, as for spawns
}

void worker::schedule_woken(fiber* f) noexcept {
#if WEFT_CHAOS
    if (next_random() & 1) {  // chaos: sometimes bypass the LIFO slot
        push_woken(f);
        return;
    }
#endif
    fiber* prev = lifo_;
    set_lifo(f);
    if (prev) push_woken(prev);  // the displaced fiber becomes stealable, behind earlier wakes (W6)
}

void worker::run_timers() noexcept {
    const std::int64_t earliest = timers_.earliest();
    if (earliest == timer_queue::none) return;
    const std::int64_t now = now_ns();
    if (now >= earliest) (void)timers_.run_due(now, /*try_only=*/false);
}

fiber* worker::pick() noexcept {
    run_timers();  // only reads the clock while this worker has timers
    for (;;) {
        fiber* f = nullptr;
        if (++tick_ % fairness_interval == 0) {  // W3: the oldest work first now and then
            yq_flush();                          // W5
            poll_io_tick();
            f = take_injected();
            if (!f) f = dq_.pop_oldest();
        }
        if (!f && lifo_) {
            if (lifo_streak_ < lifo_max_streak) {
                ++lifo_streak_;
                f = lifo_;
                set_lifo(nullptr);
            } else {
                push_woken(lifo_);  // streak exhausted: behind the others
                set_lifo(nullptr);
            }
        }
        if (!f) {
            lifo_streak_ = 0;
            if (wq_.owner_nonempty()) f = wq_.pop_oldest();  // W6
        }
        if (!f) f = dq_.pop();
        if (!f) f = take_injected();
        if (!f) f = yq_pop();
        return f;
    }
}

void worker::poll_io_tick() noexcept {
    // W7: ready descriptors are not starved by busy fibers (yielding ones
    // included). Not while a parking fiber's lock is still held (pick() runs
    // before the post-switch hook): it may be the very descriptor lock poll() takes.
    if (pending_unlock_ != nullptr || !rt_.io.active()) return;
    const std::int64_t now = now_ns();
    if (now - last_poll_ns_ < io_poll_interval_ns) return;
    last_poll_ns_ = now;
    (void)poll_reactor(0);  // E5: woken fibers land in our LIFO slot and woken queue
}

fiber* worker::pick_for_yield() noexcept {
    run_timers();
    for (;;) {
        fiber* f = nullptr;
        if (++tick_ % fairness_interval == 0 || (yq_head_ && rt_.idle.someone_sleeps())) {  // W5
            yq_flush();  // W5
            poll_io_tick();
            f = take_injected();
        }
        if (!f && lifo_) {
            f = lifo_;
            set_lifo(nullptr);
        }
        if (!f && wq_.owner_nonempty()) f = wq_.pop_oldest();  // W6
        if (!f && dq_.owner_nonempty()) f = dq_.pop_oldest();  // W3: everything runnable before the ring
        if (!f) f = take_injected();
        if (!f) f = yq_pop();
        return f;
    }
}

fiber* worker::search() noexcept {
    if (!searching_) {
        if (!rt_.idle.transition_to_searching()) return nullptr;
        searching_ = true;
    }
    fiber* found = take_injected();
    const std::size_t n = rt_.workers.size();
    if (!found && n > 1) found = run_others_timers();
    if (!found && n > 1) {
        const std::size_t start = next_random() % n;
        for (std::size_t i = 0; i < n && !found; ++i) {
            worker* v = rt_.workers[(start + i) % n].get();
            if (v == this) continue;
            found = v->wq_.steal();  // woken fibers first: they have waited longest (W6)
            if (found) {
                bump(n_steals);
                break;
            }
            found = v->steal();
            if (!found) continue;
            bump(n_steals);
            // Steal half: move up to half of what is left into our own deque.
            for (std::size_t k = v->dq_.size() / 2; k > 0; --k) {
                fiber* more = v->steal();
                if (!more) break;
                bump(n_steals);
                if (!dq_.push(more)) {
                    rt_.post(more);
                    break;
                }
            }
        }
    }
    if (found) stop_searching();
    return found;
}

fiber* worker::run_others_timers() noexcept {
    // A worker busy in a long fiber cannot run its own due timers; a searcher
    // fires them (timer_queue.hpp ownership). The woken fibers land in our
    // woken queue (T3: deadline order), the first of which we run now.
    std::int64_t now = 0;
    for (const auto& v : rt_.workers) {
        if (v.get() == this) continue;
        const std::int64_t earliest = v->timers_.earliest();
        if (earliest == timer_queue::none) continue;
        if (now == 0) now = now_ns();
        if (now >= earliest) (void)v->timers_.run_due(now, /*try_only=*/true);
    }
    fiber* f = lifo_;
    if (f) set_lifo(nullptr);
    else if (wq_.owner_nonempty()) f = wq_.pop_oldest();
    return f;
}

std::size_t worker::poll_reactor(std::int64_t timeout_ns) noexcept {
    return rt_.io.poll(timeout_ns, io_events_.data(), static_cast<int>(io_events_.size()));
}

fiber* worker::poll_io() noexcept {
    if (!rt_.io.active()) return nullptr;
    last_poll_ns_ = now_ns();
    if (poll_reactor(0) == 0) return nullptr;
    fiber* f = pick();  // E5: the woken fibers are in our LIFO slot and woken queue
    if (f) stop_searching();
    return f;
}

void worker::stop_searching() noexcept {
    if (!searching_) return;
    searching_ = false;
    if (rt_.idle.transition_from_searching()) rt_.idle.notify_one();  // D2: the last searcher hands over
}

fiber* worker::spin() noexcept {
    // Only searching workers spin (idle.hpp limits them to half the workers), and
    // only briefly: a burst of short fibers should not pay a futex wake per fiber.
    // Alone there is nobody to steal from: sleep at once (until the next deadline).
    // With descriptors registered (W7) the kernel wakes the poller directly: spinning would
    // only take CPU from the network stack and the peers (measured: echo at 1,000
    // connections, 2 workers, ~10% more requests/s without it).
    // The window adapts as a spinning mutex's does: full after a spin that found
    // work (hand-offs between workers, bursts), halved by each that found none, so
    // a worker that is only ever woken for one timer or one fiber (a fiber sleeping
    // in a loop: every wake-up ends with both workers spinning in vain) soon spends
    // ~1 us per miss, not 50 (measured: 200 us sleeps in a loop, 2 workers, 31% of
    // a core before). A sleep that work ended within 50 us widens it too (sleep()):
    // otherwise a window at its floor could never grow back.
    if (rt_.workers.size() == 1 || rt_.io.active()) return nullptr;
    const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(spin_window_ns_);
    do {
        for (int i = 0; i < 64; ++i) __builtin_ia32_pause();
        fiber* f = pick();  // our own due timers and queues (W3) first
        if (f) stop_searching();
        else f = search();
        if (f) {
            spin_window_ns_ = spin_max_ns;
            return f;
        }
        if (rt_.stopping()) return nullptr;
    } while (std::chrono::steady_clock::now() < until);
    spin_window_ns_ = std::max(spin_min_ns, spin_window_ns_ / 2);
    return nullptr;
}

void worker::sleep() noexcept {
    stacks_.trim();  // I2 in context/stack.hpp: give pages back now that we are idle
    const bool was_searching = searching_;
    searching_ = false;
    // Every sleeper re-scans, not only the last searcher (D2 needs no more; sleeping is the slow path).
    (void)rt_.idle.transition_to_parked(this, was_searching);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // StoreLoad: state_ RMW before the re-scan (idle.hpp D2)
    if (rt_.any_work_visible()) rt_.idle.notify_one();  // may wake ourselves
    bump(n_sleeps);
    const std::int64_t slept_at = now_ns();  // spin(): a wake soon after means spinning would have paid
    for (;;) {
        const std::uint32_t word = sleep_word.load(std::memory_order_acquire);  // acquire: pairs with the waker's release
        if (word == 0 || rt_.stopping()) break;
        if (word == nudged) {  // T4: an earlier timer was armed somewhere; look again
            std::uint32_t expected = nudged;
            // acq_rel: orders against a notifier's 0 (under idle mu_); if one came first the CAS
            // fails and the next load sees 0.
            sleep_word.compare_exchange_strong(expected, 1, std::memory_order_acq_rel, std::memory_order_relaxed);
            continue;
        }
        // T4: publish when we will wake, then re-read the deadlines (StoreLoad
        // against an arming worker's earliest_ store then our sleep_deadline_ load).
        const std::int64_t until = rt_.earliest_timer();
        sleep_deadline_.store(until, std::memory_order_seq_cst);
        if (rt_.earliest_timer() < until) continue;
        const std::int64_t wait = until == timer_queue::none ? -1 : until - now_ns();
        if (until == timer_queue::none || wait > 0) {
            const epoll_sleep how = sleep_in_epoll(wait);  // W7, E4
            if (how == epoll_sleep::returned) continue;
            if (how == epoll_sleep::got_work) {
                if (rt_.idle.cancel_park(this)) {  // D5: we leave the sleepers ourselves
                    sleep_deadline_.store(timer_queue::none, std::memory_order_relaxed);  // relaxed: a hint for nudgers
                    return;
                }
                for (std::uint32_t v; (v = sleep_word.load(std::memory_order_acquire)) != 0 && !rt_.stopping();)  // acquire: as above
                    futex_wait(sleep_word, v);
                break;
            }
            if (until == timer_queue::none) {
                futex_wait(sleep_word, 1);
            } else {
                const timespec ts{static_cast<time_t>(wait / 1000000000), static_cast<long>(wait % 1000000000)};
                futex_wait(sleep_word, 1, &ts);
            }
            continue;
        }
        // A deadline passed: leave the sleepers ourselves (D5) and run it.
        if (rt_.idle.cancel_park(this)) {
            sleep_deadline_.store(timer_queue::none, std::memory_order_relaxed);  // relaxed: a hint for nudgers
            return;
        }
        // A notifier took us out first: our word is, or is about to be, 0.
        for (std::uint32_t v; (v = sleep_word.load(std::memory_order_acquire)) != 0 && !rt_.stopping();)  // acquire: as above
            futex_wait(sleep_word, v);
        break;
    }
    sleep_deadline_.store(timer_queue::none, std::memory_order_relaxed);  // relaxed: a hint for nudgers
    searching_ = true;  // D3: a woken worker is counted as searching
    // Woken for work within a spin window's reach: a window that long would have
    // caught it without the futex round trip. Widen it (spin()), so that hand-offs
    // that begin after an idle stretch (the window at its floor) win it back.
    if (const std::int64_t slept = now_ns() - slept_at; slept < spin_max_ns)
        spin_window_ns_ = std::min(spin_max_ns, std::max(spin_window_ns_ * 2, slept * 2));
}

worker::epoll_sleep worker::sleep_in_epoll(std::int64_t timeout_ns) noexcept {
    reactor& io = rt_.io;
    if (!io.active() || io.failed() || !io.try_become_poller()) return epoll_sleep::not_used;
    in_epoll_.store(true, std::memory_order_relaxed);  // relaxed: ordered by the fence below
    std::atomic_thread_fence(std::memory_order_seq_cst);  // E4: StoreLoad against wake_thread()
    std::size_t woken = 0;
    if (sleep_word.load(std::memory_order_acquire) == 1 && !rt_.stopping()) {  // acquire: as in sleep()
        last_poll_ns_ = now_ns();
        woken = poll_reactor(timeout_ns);
    }
    in_epoll_.store(false, std::memory_order_relaxed);  // relaxed: a later wake_thread only writes the eventfd needlessly
    io.stop_being_poller();
    return woken ? epoll_sleep::got_work : epoll_sleep::returned;
}

void worker::run() noexcept {
    const deadlock::own_thread own;  // diag/deadlock.hpp Z1
    tls_worker = this;
    init_thread_context(sched_ctx_);
    thread_eh_ = thread_eh_state();  // switch.hpp X1
    install_thread_altstack();
    {
        char name[16];
        std::snprintf(name, sizeof name, "weft-w%u", index_);
        ::pthread_setname_np(::pthread_self(), name);
    }
    if (clockid_t c; ::pthread_getcpuclockid(::pthread_self(), &c) == 0) {
        cpu_clock.store(static_cast<int>(c), std::memory_order_relaxed);  // relaxed: published by os_tid's release
        // release: publishes cpu_clock; pairs with the acquire in thread_cpu_ns (S4, diag/stall.hpp)
        os_tid.store(static_cast<int>(::gettid()), std::memory_order_release);
    }
    for (;;) {
        drain_unstartable();
        fiber* f = pick();
        if (f) stop_searching();  // a woken worker is counted as searching (D3) until it finds work
        else f = search();
        if (!f) f = poll_io();  // W7
        if (!f && searching_) f = spin();
        if (f) {
            resume_from_scheduler(f);
            continue;
        }
        if (rt_.stopping()) break;
        sleep();
    }
    stop_searching();
    stacks_.clear();
    remove_thread_altstack();
    tls_worker = nullptr;
}

// ---------------------------------------------------------------- switching

bool worker::prepare(fiber* f) noexcept {
    if (f->started) return true;
    try {
        f->stk = stacks_.get();
    } catch (...) {
        // W4: never finish a fiber in the middle of a switch (the parker may hold
        // a lock its joiners need); the scheduler loop does it (drain_unstartable).
        log().error("cannot start fiber {}: no stack could be mapped", f->id);
        f->task->not_started = std::current_exception();
        f->started = true;
        unstartable_.push_back(f);
        return false;
    }
    f->started = true;
    make_context(f->ctx, f->stk.lo(), f->stk.size, &worker::fiber_main);
    return true;
}

void worker::resume_from_scheduler(fiber* f) noexcept {
    if (!prepare(f)) return;
    current_ = f;
    f->last_worker.store(static_cast<int>(index_), std::memory_order_relaxed);  // relaxed: diagnostics
    running_id.store(f->id, std::memory_order_relaxed);  // relaxed: diagnostics (diag/stall.hpp)
    bump(n_switches);
    pending_from_ = &sched_ctx_;
    pending_ = action::none;
    transfer t = switch_to(sched_ctx_, f->ctx, this, thread_eh_);
    static_cast<worker*>(t.data)->complete_switch(t);  // t.data == this: the scheduler never migrates
}

inline __attribute__((always_inline)) void worker::complete_switch(transfer t) noexcept {
    pending_from_->fctx = t.fctx;  // W1: record the leaver's context before publishing it
    if (__builtin_expect(pending_ == action::requeue, 1)) {  // yields are the hot case
        yq_push(std::exchange(pending_fiber_, nullptr));  // W5
        return;
    }
    complete_other();  // every switch sets pending_ (switch_away, resume_from_scheduler)
}

__attribute__((noinline)) void worker::complete_other() noexcept {
    // Cleared: switching_from() names a fiber only while its stack is being left.
    fiber* f = std::exchange(pending_fiber_, nullptr);
    switch (pending_) {
        case action::none:
        case action::requeue:
            break;
        case action::park: {
            bump(n_parks);
            // Publish `parked`, then look for a cancel request (fiber.hpp F7): the
            // canceller stores its flag, then loads pword; the asymmetric fence makes
            // one of the two see the other's store, so a request is never lost.
            f->publish_parked(pending_gen_);
            asym_fence::light();
            // relaxed: ordered by the fence pair (F7)
            if (f->cancel_requested.load(std::memory_order_relaxed) || rt_.cancelling(std::memory_order_relaxed))
                runtime_impl::wake_cancelled(f);
            if (pending_deadline_ != timer_queue::none) {
                timers_.arm(pending_deadline_, f, pending_gen_);  // T1, T3
                if (timers_.earliest() == pending_deadline_) rt_.nudge_sleeper(pending_deadline_, this);  // T4
            }
            std::exchange(pending_unlock_, nullptr)(pending_arg_);  // W1: only now may a waker find and resume f
            if (pending_after_) pending_after_(pending_after_arg_);  // from the worker's copy: f may be running elsewhere
            break;
        }
        case action::exited: {
            destroy_context(f->ctx);
            stacks_.put(f->stk);
            f->stk = stack{};
            f->unpin();  // the exit hook's pin: no user code here (F1)
            break;
        }
    }
}

inline __attribute__((always_inline)) worker* worker::switch_away(fiber* self, fiber* next, action a,
                                                                   bool exiting) noexcept {
    while (next && !next->started && !prepare(next)) next = pick();
    pending_ = a;
    pending_fiber_ = self;
    pending_from_ = &self->ctx;
    current_ = next;
    exec_context* to = &sched_ctx_;
    running_id.store(next ? next->id : 0, std::memory_order_relaxed);  // relaxed: diagnostics (diag/stall.hpp)
    if (next) {
        next->last_worker.store(static_cast<int>(index_), std::memory_order_relaxed);  // relaxed: diagnostics
        bump(n_switches);
        to = &next->ctx;
    }
    transfer t = switch_to(self->ctx, *to, this, thread_eh_, exiting);
    // Resumed, possibly on another worker: `this` is stale from here on.
    worker* now = static_cast<worker*>(t.data);
    now->complete_switch(t);
    return now;
}

inline __attribute__((always_inline)) worker* worker::yield_current() noexcept {
    fiber* self = current_;
    fiber* next = yq_head_;
    // Fast path (W3): nothing in the LIFO slot, the deque or the injector, not
    // a fairness tick: round robin through the ring, no atomic RMW, and no
    // callee-saved register to save (only the transfer is live after the jump).
    // Ring fibers have all started: only yields put fibers there (W5).
    if (__builtin_expect(next && self->registered && !lifo_ && --yield_countdown_ != 0 && !dq_.owner_nonempty() &&
                             !wq_.owner_nonempty() &&
                             !rt_.injector_maybe_nonempty() && timers_.earliest() == timer_queue::none,
                         1)) {
        yq_head_ = std::exchange(next->next_run, nullptr);
        if (!yq_head_) yq_tail_ = nullptr;
        pending_ = action::requeue;
        pending_fiber_ = self;
        pending_from_ = &self->ctx;
        current_ = next;
        next->last_worker.store(static_cast<int>(index_), std::memory_order_relaxed);  // relaxed: diagnostics
        running_id.store(next->id, std::memory_order_relaxed);  // relaxed: diagnostics (diag/stall.hpp)
        bump(n_switches);
        transfer t = switch_to(self->ctx, next->ctx, this, thread_eh_);
        worker* now = static_cast<worker*>(t.data);  // `this` is stale from here on
        now->complete_switch(t);
        return now;
    }
    return yield_slow();
}

__attribute__((noinline)) worker* worker::yield_slow() noexcept {
    fiber* self = current_;
    if (!self->registered) register_current();
    yield_countdown_ = fairness_interval;
    fiber* next = pick_for_yield();
    if (!next) {
        bump(n_lone_yields);  // S1: a yield point, though there was nobody to yield to
        return this;
    }
    return switch_away(self, next, action::requeue);
}

void worker::register_current() noexcept {
    rt_.registry_insert(current_);  // R5: findable by cancel_all() and dump_json() from now on
    current_->registered = true;
}

worker* worker::park_current(void (*unlock)(void*), void* arg, std::int64_t deadline_ns, bool cancellable,
                             void (*after)(void*), void* after_arg) noexcept {
    fiber* self = current_;
    if (!self->registered) register_current();
    const std::uint64_t gen = self->begin_park(cancellable);
    pending_unlock_ = unlock;
    pending_arg_ = arg;
    pending_after_ = after;
    pending_after_arg_ = after_arg;
    pending_gen_ = gen;
    pending_deadline_ = deadline_ns;
    worker* now = switch_away(self, pick(), action::park);
    bump(now->n_unparks);
    self->end_park(gen);
    return now;
}

void finish_and_wake_joiners(fiber* f) noexcept {
    f->join_lock.lock();
    f->finished.store(true, std::memory_order_release);  // release: publishes the task's result to is_finished() (F2)
    // Unlink and wake under the lock: a cancelled joiner re-takes it to unlink itself (Q3).
    while (waiter* w = f->joiners.pop_front()) (void)unpark_waiter(*w);
    f->join_lock.unlock();
}

void worker::drain_unstartable() noexcept {
    // Scheduler context only: no lock is held here (W4).
    while (!unstartable_.empty()) {
        fiber* f = unstartable_.back();
        unstartable_.pop_back();
        bump_release(n_exited);  // R2, before the joiners wake (F2)
        finish_and_wake_joiners(f);
        f->unpin();    // no exit hook will run for it (F1)
        f->release();  // the runtime's reference; the callable dies here (rare: no stack)
    }
}

void worker::exit_current() noexcept {  // `this` may be stale after release(): see below
    fiber* self = current_;
    finish_and_wake_joiners(self);
    // The runtime's reference, on our own stack (F1): if it is the last, the
    // result's destructor runs here and may block (a ~jthread joins), which can
    // park and register this fiber. So only after it: leave the registry (R5)
    // and count the exit (R2). The exit hook keeps a pin on the block.
    // Those destructors run as the fiber_local ones do (fiber.hpp F8): their
    // waits are uncancellable, and values they make are destroyed after them.
    self->cancel_deferred.store(true, std::memory_order_relaxed);  // relaxed: F8, our own flag
    self->release();
    if (self->locals) destroy_fiber_locals(self);
    worker* w = worker::current();  // release() may have parked us, and we may have migrated
    if (self->registered) w->rt_.registry_remove(self);  // R5
    bump_release(w->n_exited);  // R2
    w->switch_away(self, w->pick(), action::exited, /*exiting=*/true);
    fatal("worker::exit_current", "a finished fiber was resumed");
}

void worker::fiber_main(transfer t) noexcept {
    enter_first_time();
    worker* w = static_cast<worker*>(t.data);
    w->complete_switch(t);
    fiber* self = w->current_;
    // W4: a fiber cancelled before its first run does not run its task; it
    // still starts, so that its callable dies on its own stack.
    // relaxed: F4 flags are monotonic; a later request is seen at the first park.
    if (cancel_pending(self))
        self->task->not_started = std::make_exception_ptr(operation_cancelled());
    else
        self->task->run();
    if (self->locals) destroy_fiber_locals(self);  // before the joiners wake, as thread_local's
    worker::current()->exit_current();  // run() may have migrated us
}

worker* worker::spend_io_budget() noexcept {
    const std::uint64_t sw = n_switches.load(std::memory_order_relaxed);  // relaxed: our own counter (W8)
    if (sw != io_streak_mark_) {
        io_streak_mark_ = sw;
        io_budget_left_ = io_budget;
    }
    if (--io_budget_left_ != 0) return this;
    io_budget_left_ = io_budget;  // kept if nothing else was runnable (no switch)
    return yield_current();
}

}  // namespace weft::detail

namespace weft::this_fiber {

void yield() noexcept {
    // Reading tls_worker directly is safe here: nothing has switched yet in
    // this call (after the switch, only the returned worker is used).
    detail::worker* w = detail::tls_worker;
    if (w && w->running()) w->yield_current();
    else std::this_thread::yield();
}

}  // namespace weft::this_fiber
