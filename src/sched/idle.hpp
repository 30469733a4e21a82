// Which workers are awake, which are searching for work, and how a worker
// goes to sleep and is woken without losing a wake-up.
//
// Vocabulary. A worker is *unparked* (awake) or *parked* (asleep on its futex
// word, in the sleepers list). An unparked worker with empty local queues may
// become *searching*: it scans the injector and steals from other workers.
// Only a limited number search at once (at most half the workers, at least
// one), so an idle runtime does not burn cores in a thundering herd.
//
// Ownership. state_ is read by anyone who posted work (notify_one); it is
// modified by workers changing their own state and by notifiers waking a
// sleeper, the latter under mu_. The sleepers list is guarded by mu_.
//
// Invariants.
//  D1 state_ = (unparked << 32) | searching; searching <= unparked <= workers.
//  D2 A worker that parks re-scans every queue after its seq_cst update of
//     state_ (worker::sleep: any_work_visible, then notify_one, which may
//     wake itself); the last searcher that finds work wakes another
//     (worker::stop_searching), as more may be waiting. A notifier that sees
//     searching > 0 therefore relies on the searchers instead of waking
//     anyone.
//  D3 A woken worker starts out searching (notify_one counts it as searching
//     before it runs), so at most one wake-up is in flight per burst of work.
//  D5 A sleeper may leave the sleepers list on its own (its earliest timer is
//     due): under mu_ it removes itself and counts itself unparked, not
//     searching. If a notifier removed it first, the notifier's accounting
//     (unparked + searching, word = 0) stands and the sleeper just waits for
//     its word to turn 0.
//  D4 A push onto a deque owes notify_one only when the deque was empty: work
//     already visible there was covered when it appeared — by a wake-up, by a
//     searcher (whose last member wakes another when it finds work, D2), or by
//     every worker being awake (a worker re-scans every queue before it
//     sleeps, D2). A burst of spawns thus costs one fence, not one per spawn.
//     "Was empty" is also owed when the pushed item is alone just after the
//     push (the owner's relaxed look): a thief that took the last item
//     between the owner's look and its push may have finished its hand-over
//     before the push, and nobody would look again until the owner's next
//     pick (found by review, with a delay standing in for a preemption).
//
// Memory-ordering argument (the submission / parking pair, after Go's
// proc.go "Worker thread parking/unparking"):
//   notifier: push work (release) ; fence(seq_cst) ; load state_
//   worker:   RMW state_ (seq_cst) ; fence(seq_cst) ; scan all queues
// Both sides store then load: StoreLoad, which only seq_cst fences provide.
// Either the notifier sees the worker's decrement (and wakes someone), or the
// worker's scan sees the pushed work. A worker's futex sleep is guarded by
// its own word (set to 1 under mu_ before sleeping, set to 0 under mu_ by the
// waker, futex_wait re-checks it), so a wake between the decision and the
// sleep is not lost.
//
// Lifecycle. Workers start unparked and not searching. At shutdown, wake_all
// sets every word to 0 after the stop flag is set.
//
// Rejected: a global mutex+condvar for idle workers (a lock per post);
// waking on every push without counting searchers (herds).
//
// Tested by test/api/runtime_test.cpp (IdleRuntimeUsesNoCpu, WorkIsStolen,
// spawns from many threads) and the TSan run.
#pragma once
#include "util/private.hpp"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace weft::detail {

class worker;

class idle_set {
public:
    explicit idle_set(std::uint32_t workers) : workers_(workers), state_(std::uint64_t{workers} << 32) {
        sleepers_.reserve(workers);
    }

    /// Call after publishing work. Wakes one sleeper if nobody is searching.
    void notify_one() noexcept;

    /// A worker with nothing local asks to search. False: too many search already.
    [[nodiscard]] bool transition_to_searching() noexcept;
    /// A searching worker found work. True: it was the last searcher (it must
    /// then notify_one, as more work may be waiting; D2).
    [[nodiscard]] bool transition_from_searching() noexcept;
    /// A worker goes to sleep (it is added to the sleepers). True: it was the
    /// last searcher (it must re-scan every queue before sleeping; D2).
    [[nodiscard]] bool transition_to_parked(worker* w, bool was_searching) noexcept;
    /// A sleeping worker whose earliest timer is due leaves the sleepers by
    /// itself (D5). False: a notifier took it out first (it is then counted as
    /// unparked and searching, and its word is, or is about to be, 0).
    [[nodiscard]] bool cancel_park(worker* w) noexcept;

    void wake_all() noexcept;

    /// Is every worker asleep (none unparked, D1)? For the deadlock watch
    /// (diag/deadlock.hpp): seq_cst, beside its other seq_cst reads.
    bool all_parked() const noexcept { return (state_.load(std::memory_order_seq_cst) >> 32) == 0; }

    /// Hint: is some worker asleep? (relaxed; used to share a yield ring, W5)
    bool someone_sleeps() const noexcept {
        return (state_.load(std::memory_order_relaxed) >> 32) < workers_;  // relaxed: heuristic only
    }


private:
    static constexpr std::uint64_t one_searching = 1;
    static constexpr std::uint64_t one_unparked = std::uint64_t{1} << 32;

    const std::uint32_t workers_;
    std::atomic<std::uint64_t> state_;  // D1
    std::mutex mu_;
    std::vector<worker*> sleepers_;  // guarded by mu_
};

}  // namespace weft::detail
