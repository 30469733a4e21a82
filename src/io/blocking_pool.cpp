// The blocking pool (design, invariants B1-B5: io/blocking_pool.hpp) and
// spawn_blocking's compiled half, blocking_execute.
#include "io/blocking_pool.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include <weft/detail/deadline.hpp>
#include <weft/detail/park.hpp>
#include <weft/this_fiber.hpp>

#include "diag/deadlock.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"
#include "util/log.hpp"

namespace weft::detail {

namespace {

constexpr std::size_t default_max_threads = 512;  // Tokio's default
constexpr std::size_t limit_max_threads = 65536;

/// WEFT_BLOCKING_THREADS, or the default. Throws std::invalid_argument.
std::size_t max_threads_from_env() {
    const char* v = std::getenv("WEFT_BLOCKING_THREADS");
    if (!v || !*v) return default_max_threads;
    const std::string_view s(v);
    std::size_t n = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc{} || p != s.data() + s.size() || n == 0 || n > limit_max_threads)
        throw std::invalid_argument(std::string("weft: WEFT_BLOCKING_THREADS='") + v +
                                    "' is not an integer in [1, " + std::to_string(limit_max_threads) + "]");
    return n;
}

}  // namespace

blocking_pool& blocking_pool::instance() {
    // Leaked on purpose (lifecycle 3). A throwing initializer leaves the
    // static unset, so the next call reads the variable again (lifecycle 1).
    static blocking_pool* const pool = new blocking_pool(max_threads_from_env());
    return *pool;
}

namespace {
// Set once, by the constructor, before its fork handlers exist (lifecycle 4); also
// read by the deadlock watch, which must not make a pool.
std::atomic<blocking_pool*> existing_pool{nullptr};
}  // namespace

bool blocking_pool::quiet() noexcept {
    try {
        std::lock_guard<std::mutex> g(mu_);
        return threads_ == idle_count_ && queued_ == 0;  // B1, B2: no job runs or waits
    } catch (...) {
        return false;
    }
}

bool blocking_pool_quiet() noexcept {
    blocking_pool* p = existing_pool.load(std::memory_order_acquire);  // acquire: pairs with the constructor
    return !p || p->quiet();
}

blocking_pool::blocking_pool(std::size_t max_threads) : max_(max_threads) {
    existing_pool.store(this, std::memory_order_release);  // release: the pool is built
    (void)::pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child);  // ENOMEM only: then unprotected
}

// relaxed: the handlers are installed after the store, by the same thread.
void blocking_pool::before_fork() noexcept { existing_pool.load(std::memory_order_relaxed)->mu_.lock(); }

void blocking_pool::after_fork_in_parent() noexcept { existing_pool.load(std::memory_order_relaxed)->mu_.unlock(); }

void blocking_pool::after_fork_in_child() noexcept {
    blocking_pool& p = *existing_pool.load(std::memory_order_relaxed);  // relaxed: as before_fork
    // The child is single-threaded and we hold mu_ (locked before the fork): leave
    // it unlocked, with no thread, record or job of the parent's.
    p.threads_ = 0;
    p.idle_count_ = 0;
    p.queued_ = 0;
    p.head_ = p.tail_ = nullptr;
    p.idle_ = nullptr;
    p.mu_.unlock();
}

// ---------------------------------------------------------------- submitting

void blocking_pool::submit(blocking_job* job) {
    std::lock_guard<std::mutex> lk(mu_);
    if (hand_to_idle(job)) return;
    if (threads_ >= max_) {
        enqueue(job);  // B2: nobody is idle; threads_ >= max_ >= 1 threads are busy
        return;
    }
    // B1: started under mu_, so threads_ counts threads that exist. (It used to be
    // counted before the start and the start made unlocked: two starts failing at
    // once could then queue a job behind a thread that never came; found by review.)
    // Starting is rare (a thread then lives for the keep-alive), so the pause it puts
    // on other submitters and finishing threads does not matter.
    try {
        start_thread(job);
        ++threads_;
        return;
    } catch (const std::system_error& e) {
        start_failed(job, e.code().message());
    } catch (const std::bad_alloc&) {
        start_failed(job, "out of memory");
    }
}

void blocking_pool::start_failed(blocking_job* job, const std::string& why) {
    if (threads_ == 0) {
        throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                                "weft::spawn_blocking: cannot start a pool thread (" + why + ")");
    }
    log().warn("spawn_blocking: cannot start a pool thread ({}); the job waits for one of the {} busy ones", why,
               threads_);
    enqueue(job);  // B2: nobody idle (hand_to_idle failed under this same lock), threads_ >= 1 busy
}

bool blocking_pool::hand_to_idle(blocking_job* job) noexcept {
    idle_record* r = idle_;
    if (!r) return false;
    unlink_idle(*r);  // B5
    r->job = job;
    // Notified under mu_: once we unlock, the record's thread may run the job
    // and leave its frame, so the record must not be touched after that.
    r->cv.notify_one();
    return true;
}

void blocking_pool::enqueue(blocking_job* job) noexcept {
    job->next = nullptr;
    if (tail_) tail_->next = job;
    else head_ = job;
    tail_ = job;
    ++queued_;
}

void blocking_pool::unlink_idle(idle_record& r) noexcept {
    if (r.prev) r.prev->next = r.next;
    else idle_ = r.next;
    if (r.next) r.next->prev = r.prev;
    r.prev = r.next = nullptr;
    --idle_count_;
}

// ---------------------------------------------------------------- pool threads

namespace {
std::atomic<bool> fail_thread_starts{false};  // the test hook; relaxed: a flag, read under the pool's mu_
}  // namespace

void blocking_pool::start_thread(blocking_job* first) {
    if (fail_thread_starts.load(std::memory_order_relaxed))  // relaxed: a test flag
        throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again), "test hook");
    std::thread([this, first] { thread_main(first); }).detach();
}

bool blocking_pool_fail_thread_starts(bool on) noexcept {
    return fail_thread_starts.exchange(on, std::memory_order_relaxed);  // relaxed: a test flag
}

void blocking_pool::thread_main(blocking_job* job) noexcept {
    const deadlock::own_thread own;  // diag/deadlock.hpp Z1
    ::pthread_setname_np(::pthread_self(), "weft-blocking");
    do {
        run_and_complete(job);
    } while ((job = next_job()));
}

blocking_job* blocking_pool::next_job() noexcept {
    std::unique_lock<std::mutex> lk(mu_);
    if (threads_ > max_) {  // B3: the bound was lowered while we were busy
        --threads_;
        return nullptr;
    }
    if (blocking_job* j = head_) {  // B2: look at the queue before going idle
        head_ = j->next;
        if (!head_) tail_ = nullptr;
        --queued_;
        return j;
    }
    idle_record r;
    r.next = idle_;
    if (idle_) idle_->prev = &r;
    idle_ = &r;
    ++idle_count_;
    const auto since = std::chrono::steady_clock::now();
    for (;;) {  // B5
        if (r.job) return r.job;      // handed over (already unlinked and still counted in threads_)
        if (r.retired) return nullptr;  // unlinked and uncounted by set_max_threads
        const auto deadline = since + keep_alive_;
        if (std::chrono::steady_clock::now() >= deadline) {
            unlink_idle(r);
            --threads_;  // B1
            return nullptr;
        }
        r.cv.wait_until(lk, deadline);
    }
}

namespace {
thread_local const void* tls_job_origin = nullptr;  // the runtime whose fiber waits for the job this thread runs
}  // namespace

bool running_job_for(const void* rt) noexcept { return rt && tls_job_origin == rt; }

void run_and_complete(blocking_job* job) noexcept {
    tls_job_origin = job->origin;
    job->run(job);
    tls_job_origin = nullptr;
    unpark_one_on(  // B4 (a)
        &job->done,
        [](void* p, unpark_info) -> std::uintptr_t {
            // release: publishes the result and the destroyed copies to the
            // fiber's acquire loads in blocking_execute (B4).
            static_cast<blocking_job*>(p)->done.store(blocking_job::woken, std::memory_order_release);
            return 0;
        },
        job, /*run_here=*/false);  // a pool thread is no worker: the fiber goes where an idle worker takes it
#if WEFT_CHAOS
    // chaos: stand in for losing the CPU between the two stores (B4 (b)), so that
    // the fiber's naps run in the TSan build.
    thread_local unsigned chaos_count = 0;
    if (++chaos_count % 16 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
#endif
    // release: orders the wake's accesses to the fiber's runtime before the
    // fiber returns (B4 (b)). The last touch of the job.
    job->done.store(blocking_job::released, std::memory_order_release);
}

// ---------------------------------------------------------------- hooks and stats

blocking_stats blocking_pool::stats() {
    std::lock_guard<std::mutex> lk(mu_);
    return {threads_, idle_count_, queued_, max_};
}

std::size_t blocking_pool::set_max_threads(std::size_t n) {
    if (n == 0 || n > limit_max_threads)
        throw std::invalid_argument("weft: blocking pool bound " + std::to_string(n) + " is outside [1, " +
                                    std::to_string(limit_max_threads) + "]");
    std::lock_guard<std::mutex> lk(mu_);
    const std::size_t old = max_;
    max_ = n;
    while (threads_ > max_ && idle_) {  // B3: surplus idle threads go now
        idle_record* r = idle_;
        unlink_idle(*r);
        r->retired = true;
        --threads_;
        r->cv.notify_one();  // under mu_, as in hand_to_idle
    }
    return old;
}

std::chrono::nanoseconds blocking_pool::set_keep_alive(std::chrono::nanoseconds d) {
    if (d < std::chrono::milliseconds(1) || d > std::chrono::hours(24))
        throw std::invalid_argument("weft: blocking pool keep-alive of " + std::to_string(d.count()) +
                                    " ns is outside [1 ms, 24 h]");
    std::lock_guard<std::mutex> lk(mu_);
    const std::chrono::nanoseconds old = keep_alive_;
    keep_alive_ = d;
    for (idle_record* r = idle_; r; r = r->next) r->cv.notify_one();  // B5: re-read the deadline
    return old;
}

// ---------------------------------------------------------------- the compiled half of spawn_blocking

void blocking_execute(blocking_job* job) {
    if (!this_fiber::in_fiber()) {  // a plain thread may block: run inline (blocking.hpp)
        job->run(job);
        return;
    }
    job->origin = &worker::current()->rt();
    blocking_pool::instance().submit(job);
    for (int spins = 0;;) {
        // acquire: pairs with both release stores in run_and_complete (B4).
        const std::uint32_t d = job->done.load(std::memory_order_acquire);
        if (d == blocking_job::released) return;
        if (d == blocking_job::woken) {  // B4 (b): the pool thread is finishing the wake
            // A few stores away, unless its thread lost the CPU there: then yielding in
            // a loop would hold this worker for the time slice. Pause, yield, then
            // sleep, 1 us doubling to 1 ms, in a park nobody ends early and that
            // shutdown cannot cancel (the job lives in this frame until `released`).
            ++spins;
            if (spins < 64) {
                __builtin_ia32_pause();
            } else if (spins < 80) {
                this_fiber::yield();
            } else {
                const std::int64_t nap_ns = std::int64_t{1000} << std::min(spins - 80, 10);
                // relaxed: as below; the loop re-reads with acquire.
                (void)park_if(
                    &job->done, [job] { return job->done.load(std::memory_order_relaxed) == blocking_job::woken; },
                    deadline_after_ns(nap_ns), "spawn_blocking", /*cancellable=*/false);
            }
            continue;
        }
        (void)park_if(
            &job->done,
            // relaxed: under the bucket lock, only decides whether to park (B4 (a)); the loop re-reads with acquire.
            [job] { return job->done.load(std::memory_order_relaxed) == blocking_job::running; }, no_deadline,
            "spawn_blocking", /*cancellable=*/false);
    }
}

blocking_stats blocking_pool_stats() { return blocking_pool::instance().stats(); }

std::size_t blocking_pool_set_max_threads(std::size_t n) { return blocking_pool::instance().set_max_threads(n); }

std::chrono::nanoseconds blocking_pool_set_keep_alive(std::chrono::nanoseconds d) {
    return blocking_pool::instance().set_keep_alive(d);
}

}  // namespace weft::detail
