// The waiter record and its intrusive list; see sync/wait_queue.hpp for the
// protocol. Split out so that fiber.hpp can hold a waiter list (its joiners).
#pragma once
#include "util/private.hpp"

#include <atomic>
#include <cstdint>

namespace weft::detail {

struct fiber;

struct waiter {
    fiber* f = nullptr;                // null: a plain thread
    std::atomic<std::uint32_t> word{0};  // thread waiters: see wait_queue.hpp "Thread words"
    waiter* next = nullptr;
    waiter* prev = nullptr;
    bool linked = false;
    // The parking lot's (sync/parking_lot.hpp) key, guarded by its bucket lock; on a
    // reactor queue (io/reactor.hpp E10, pd lock), what the fiber reads first when
    // resumed: a prefetch hint. A waiter is on one kind of queue or the other.
    const void* key = nullptr;
    std::uintptr_t token = 0;     // from the waker's callback, read after the wake (Q4)
    std::int64_t since_ns = 0;    // when it parked: the mutex starvation guard
};

/// An intrusive FIFO of waiters; the owner's lock guards it.
class waiter_list {
public:
    bool empty() const noexcept { return head_ == nullptr; }
    void push_back(waiter& w) noexcept;
    void push_front(waiter& w) noexcept;
    waiter* pop_front() noexcept;
    waiter* front() const noexcept { return head_; }
    void remove(waiter& w) noexcept;

private:
    waiter* head_ = nullptr;
    waiter* tail_ = nullptr;
};

static_assert(sizeof(waiter) <= 64, "waiter: one cache line (it lives on a parked fiber's stack)");

}  // namespace weft::detail
