#include "time/timer_queue.hpp"

#include <algorithm>
#include <chrono>
#include <new>

#include "sched/fiber.hpp"
#include "sched/runtime_impl.hpp"
#include "util/check.hpp"
#include "util/min_heap.hpp"

namespace weft::detail {

std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

timer_queue::~timer_queue() {
    for (auto& e : heap_) e.f->unpin();  // T1
}

void timer_queue::publish_locked() noexcept {
    earliest_.store(heap_.empty() ? none : heap_.front().when, std::memory_order_seq_cst);  // seq_cst: T4
}

void timer_queue::push_locked(const entry& e) { heap_push(heap_, e); }

timer_queue::entry timer_queue::pop_locked() noexcept { return heap_pop(heap_); }

void timer_queue::compact_locked() noexcept {
    // Drop stale entries (their park ended: T3) and rebuild. Amortised O(1) per
    // arm: the next compaction waits until the heap has doubled again.
    std::size_t kept = 0;
    for (auto& e : heap_) {
        if (e.f->is_parked_in(e.gen)) heap_[kept++] = e;
        else e.f->unpin();  // T1
    }
    heap_.resize(kept);  // shrinks: no allocation
    heap_make(heap_);
    compact_at_ = std::max<std::size_t>(1024, 2 * heap_.size());
}

void timer_queue::arm(std::int64_t deadline_ns, fiber* f, std::uint64_t gen) noexcept {
    f->pin();  // T1
    lock_.lock();
    if (heap_.size() >= compact_at_) compact_locked();
    try {
        push_locked(entry{deadline_ns, f, gen});
    } catch (const std::bad_alloc&) {
        // The fiber has already left its stack (worker.cpp complete_other):
        // there is nobody to throw to, and an unarmed deadline would leave it
        // parked for ever. Say so and stop, as Go does when out of memory.
        fatal(__func__, "out of memory growing a worker's timer heap");
    }
    publish_locked();
    lock_.unlock();
}

std::size_t timer_queue::run_due(std::int64_t now, bool try_only) noexcept {
    std::size_t fired = 0;
    for (;;) {
        // Fire outside the lock, a batch at a time: a claim schedules the fiber,
        // which may take the idle set's mutex.
        entry due[32];
        std::size_t n = 0;
        if (try_only) {
            if (!lock_.try_lock()) return fired;
        } else {
            lock_.lock();
        }
        while (n < 32 && !heap_.empty() && heap_.front().when <= now) due[n++] = pop_locked();
        const bool more = !heap_.empty() && heap_.front().when <= now;
        publish_locked();
        lock_.unlock();
        for (std::size_t i = 0; i < n; ++i) {
            fiber* f = due[i].f;
            if (f->try_claim_park(due[i].gen, wake_reason::timeout)) {  // T3
                // FIFO, not the LIFO slot: a batch resumes in deadline order (T3).
                f->rt->schedule_woken(f, /*stealable=*/true);
                ++fired;
            }
            f->unpin();  // T1
        }
        if (!more) return fired;
    }
}

}  // namespace weft::detail
