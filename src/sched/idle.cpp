#include "sched/idle.hpp"

#include "sched/worker.hpp"

namespace weft::detail {

namespace {
constexpr std::uint32_t searching_of(std::uint64_t s) noexcept { return static_cast<std::uint32_t>(s); }
constexpr std::uint32_t unparked_of(std::uint64_t s) noexcept { return static_cast<std::uint32_t>(s >> 32); }
}  // namespace

void idle_set::notify_one() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);  // StoreLoad: the published work before the state_ load (D2)
    std::uint64_t s = state_.load(std::memory_order_relaxed);  // relaxed: ordered by the fence above
    if (searching_of(s) != 0 || unparked_of(s) >= workers_) return;
    worker* w = nullptr;
    {
        std::lock_guard<std::mutex> lk(mu_);
        s = state_.load(std::memory_order_relaxed);  // relaxed: unparked only changes under mu_; searching is a hint
        if (searching_of(s) != 0 || sleepers_.empty()) return;
        w = sleepers_.back();
        sleepers_.pop_back();
        // seq_cst: part of the state_ total order that D2 relies on; counts w as searching (D3).
        state_.fetch_add(one_unparked + one_searching, std::memory_order_seq_cst);
        w->sleep_word.store(0, std::memory_order_release);  // release: pairs with the acquire in worker::sleep()
    }
    w->wake_thread();
}

bool idle_set::transition_to_searching() noexcept {
    std::uint64_t s = state_.load(std::memory_order_relaxed);  // relaxed: the limit is a heuristic, not a guarantee
    if (2 * searching_of(s) >= workers_ && searching_of(s) > 0) return false;
    state_.fetch_add(one_searching, std::memory_order_seq_cst);  // seq_cst: notifiers read it after their fence (D2)
    return true;
}

bool idle_set::transition_from_searching() noexcept {
    std::uint64_t prev = state_.fetch_sub(one_searching, std::memory_order_seq_cst);  // seq_cst: D2 total order
    return searching_of(prev) == 1;
}

bool idle_set::transition_to_parked(worker* w, bool was_searching) noexcept {
    std::lock_guard<std::mutex> lk(mu_);
    std::uint64_t dec = one_unparked + (was_searching ? one_searching : 0);
    std::uint64_t prev = state_.fetch_sub(dec, std::memory_order_seq_cst);  // seq_cst: D2 total order
    w->sleep_word.store(1, std::memory_order_relaxed);  // relaxed: read by our own thread; writers hold mu_
    sleepers_.push_back(w);
    return was_searching && searching_of(prev) == 1;
}

bool idle_set::cancel_park(worker* w) noexcept {
    std::lock_guard<std::mutex> lk(mu_);
    for (std::size_t i = 0; i < sleepers_.size(); ++i) {
        if (sleepers_[i] != w) continue;
        sleepers_[i] = sleepers_.back();
        sleepers_.pop_back();
        state_.fetch_add(one_unparked, std::memory_order_seq_cst);  // seq_cst: D2 total order (D5)
        w->sleep_word.store(0, std::memory_order_relaxed);  // relaxed: our own word, written under mu_
        return true;
    }
    return false;
}

void idle_set::wake_all() noexcept {
    std::vector<worker*> all;
    {
        std::lock_guard<std::mutex> lk(mu_);
        all = sleepers_;  // copy: sleepers_ keeps its reserved capacity
        sleepers_.clear();
        for (worker* w : all) {
            // seq_cst: D2 total order. Counted as searching, as every woken worker is (D3).
            state_.fetch_add(one_unparked + one_searching, std::memory_order_seq_cst);
            w->sleep_word.store(0, std::memory_order_release);  // release: pairs with worker::sleep()
        }
    }
    for (worker* w : all) w->wake_thread();
}

}  // namespace weft::detail
