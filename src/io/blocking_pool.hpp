// The blocking pool: the OS threads that run spawn_blocking's jobs
// (include/weft/blocking.hpp has the user-visible rules).
//
// Vocabulary. A *job* is a detail::blocking_job in the frame of a fiber parked
// in spawn_blocking. A *pool thread* is *busy* (running a job, or holding mu_
// between two jobs), or *idle*: waiting on its own condition variable with an
// `idle_record` on its stack, linked on idle_. *Handing* a job to an idle
// thread = unlinking its record and storing the job in it; *retiring* it =
// unlinking it and marking it to exit. *Completing* a job = its run() has
// returned and its `done` word is set, which wakes the parked fiber.
//
// Ownership. Any thread may submit (blocking_execute, from a fiber). All pool
// state (counters, queue, idle list, bound, keep-alive, the records' fields)
// is guarded by mu_. A job belongs to the submitter until it is handed to a
// thread or queued, then to the pool until completed, then to the submitter
// again (see B4).
//
// Invariants.
//  B1 threads_ = busy threads + idle_count_. A thread is counted once it
//     exists (a submitter starts it under mu_) until the moment, under mu_,
//     that it decides to exit or is retired. So every counted thread will
//     look at the queue when its job ends, or exits only while at least
//     max_ others are counted (B3).
//  B2 The queue is non-empty only while idle_ is empty: a job is queued only
//     when no thread is idle, and a thread goes idle only after finding the
//     queue empty, both under mu_. Hence while jobs are queued every pool
//     thread is busy and will look at the queue when its job ends; and there
//     is at least one (jobs are queued only when threads_ >= max_ >= 1, or,
//     after a failed start, when threads_ >= 1). No job is stranded.
//  B3 threads_ <= max_ except right after the bound was lowered; then surplus
//     idle threads are retired at once and surplus busy threads exit when
//     their job ends, so at most max_ jobs run at once from then on, and the
//     pool never again starts a thread above the bound.
//  B4 Completion, in two steps on the job's `done` word (0 running, 1 woken,
//     2 released). (a) After run() returns, the pool thread stores 1 inside
//     unpark_one_on's callback, i.e. under the parking-lot bucket lock of
//     &done. The fiber parks only if done == 0 under that same lock (P2), so
//     it is either woken by that call or never parks: no lost wake-up.
//     (b) When unpark_one_on has returned, the pool thread stores 2 and then
//     touches neither the job nor the fiber's runtime again. The fiber
//     returns (popping the frame that holds the job) only once it sees 2; on
//     seeing 1 it pauses, then yields, then naps (uncancellable timed parks,
//     1 us doubling to 1 ms) until then, which takes microseconds unless the
//     pool thread lost its CPU in between: the naps keep that case from
//     holding the worker in a yield loop for a time slice. Why not return
//     on 1: waking a fiber from a plain thread (schedule_woken -> post ->
//     idle_set::notify_one) still reads the runtime's idle set and workers
//     after the fiber is runnable; a fiber that returned at once could let
//     block_on return and the runtime be destroyed under that read (TSan
//     caught it: a use-after-free). Step (b) keeps the runtime alive across
//     the wake, since the fiber is alive and shutdown waits for it.
//  B5 An idle thread leaves the idle state only by being handed a job, being
//     retired, or (it alone, under mu_) reaching its keep-alive deadline:
//     idle_since + keep_alive_, re-read at each wake-up so the test hook
//     takes effect at once. Its record is unlinked in all three cases before
//     it returns, so a record never outlives its thread's frame.
//
// Memory orders. The pool's own state is ordered by mu_. `done` is the only
// atomic. Its store of 1 (release, under the bucket lock) publishes the
// result and the destroyed copies; its store of 2 (release) also orders the
// pool thread's accesses to the runtime during the wake before whatever the
// fiber does after returning. The fiber's loads are acquire, so seeing 2
// synchronizes with both. The validate() load inside park_if is relaxed: it
// runs under the bucket lock and only decides whether to park; the loop
// re-reads the word with acquire. A fiber that parked and was woken also gets
// the run-queue hand-off edge (wait_queue.hpp Q4).
//
// Lifecycle.
//  1 The pool is a leaked singleton built on first use from a fiber (reading
//    WEFT_BLOCKING_THREADS then; a bad value throws and the next use retries,
//    so it fails the same way every time). It starts with no threads.
//  2 Threads are started on demand by submit() and detached; each runs jobs
//    until it is retired, exceeds the bound after a job, or idles past the
//    keep-alive. An exiting thread touches no pool state after unlocking mu_.
//  3 Never torn down: at process exit, idle threads sleep in their condition
//    variables and busy ones die with the process (the singleton outlives
//    static destruction, so a job that ends during exit still finds it).
//  4 fork(): the child has none of the pool's threads (an idle one lives for
//    the keep-alive after any use), so a pthread_atfork handler holds mu_
//    across the fork (no thread can be inside it then) and, in the child,
//    forgets every thread, idle record and queued job (their fibers are
//    the parent's): the child's first use starts a thread afresh. Found by
//    review: the child handed its job to an idle record of a thread that
//    did not exist there, and waited for ever.
//
// Rejected alternatives.
//  - A shared condition variable with "notify one idle" counters (Tokio's
//    shape): needs reservation counters to stay correct when several jobs
//    arrive before an idle thread wakes; a per-thread record makes the
//    hand-over explicit and B2 a one-line argument.
//  - A job record allocated per call: the caller waits until the job is done
//    (uncancellably), so its frame is as long-lived and costs nothing.
//  - Cancelling the wait on shutdown: f may use the caller's stack (B4).
//  - Running f on a fresh std::thread per call: no reuse and no bound.
//
// Tested by test/api/blocking_test.cpp (values, exceptions, bound, shrinking,
// concurrency, plain threads, shutdown) and its TSan run.
#pragma once
#include "util/private.hpp"

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>

#include <weft/blocking.hpp>

namespace weft::detail {

/// On a pool thread running a job whose fiber belongs to runtime `rt`: true
/// (runtime shutdown() refuses to wait for itself). Never throws.
bool running_job_for(const void* rt) noexcept;

class blocking_pool {
public:
    /// The process-wide pool; built on first call. Throws std::invalid_argument
    /// on a bad WEFT_BLOCKING_THREADS (lifecycle 1).
    static blocking_pool& instance();

    /// Hands the job to an idle thread, starts a thread for it, or queues it.
    /// Does not wait. Throws std::system_error when no thread exists and none
    /// can be started (the job was not taken).
    void submit(blocking_job* job);

    blocking_stats stats();
    /// No job runs or is queued (the deadlock watch, diag/deadlock.hpp).
    bool quiet() noexcept;
    std::size_t set_max_threads(std::size_t n);
    std::chrono::nanoseconds set_keep_alive(std::chrono::nanoseconds d);

private:
    struct idle_record {
        std::condition_variable cv;
        blocking_job* job = nullptr;  // set by the submitter that hands it a job
        bool retired = false;         // set by set_max_threads
        idle_record* prev = nullptr;
        idle_record* next = nullptr;
    };

    explicit blocking_pool(std::size_t max_threads);
    // Lifecycle 4 (fork): pthread_atfork handlers.
    static void before_fork() noexcept;
    static void after_fork_in_parent() noexcept;
    static void after_fork_in_child() noexcept;

    void start_thread(blocking_job* first);  // throws std::system_error, std::bad_alloc
    void start_failed(blocking_job* job, const std::string& why);  // requires mu_; throws std::system_error
    void thread_main(blocking_job* job) noexcept;
    blocking_job* next_job() noexcept;  // nullptr: the calling thread exits
    bool hand_to_idle(blocking_job* job) noexcept;  // requires mu_
    void enqueue(blocking_job* job) noexcept;       // requires mu_
    void unlink_idle(idle_record& r) noexcept;       // requires mu_

    std::mutex mu_;
    std::size_t threads_ = 0;  // B1
    std::size_t idle_count_ = 0;
    std::size_t queued_ = 0;
    std::size_t max_;
    std::chrono::nanoseconds keep_alive_{std::chrono::seconds(10)};
    blocking_job* head_ = nullptr;  // FIFO of queued jobs (B2)
    blocking_job* tail_ = nullptr;
    idle_record* idle_ = nullptr;   // most recently idle first
};

/// The pool, if one was made, is quiet (blocking_pool::quiet).
bool blocking_pool_quiet() noexcept;

/// Completes a job on the calling thread: runs it, then publishes done and
/// wakes its fiber (B4). After this returns the job may be gone.
void run_and_complete(blocking_job* job) noexcept;

}  // namespace weft::detail
