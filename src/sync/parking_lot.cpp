#include "sync/parking_lot.hpp"

#include "sync/wait_queue.hpp"
#include "time/timer_queue.hpp"

namespace weft::detail {

namespace {

struct alignas(64) bucket {
    spinlock lock;
    waiter_list waiters;  // P1
};

bucket buckets[bucket_count];

bucket& bucket_of(const void* key) noexcept {
    // Fibonacci hashing of the address; the low bits of aligned addresses are zero.
    const auto h = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(key)) * 0x9E3779B97F4A7C15ull;
    return buckets[h >> (64 - 12)];
}
static_assert(bucket_count == 1u << 12);

}  // namespace

park_outcome park_on(const void* key, bool (*validate)(void*), void* ctx, std::int64_t deadline_ns, const char* why,
                     bool cancellable, void (*after_unlock)(void*), void* after_arg, std::int64_t since_ns) noexcept {
    bucket& b = bucket_of(key);
    waiter w = make_waiter();
    w.key = key;
    b.lock.lock();
    if (validate && !validate(ctx)) {  // P2
        b.lock.unlock();
        return {park_result::invalid, 0};
    }
    if (since_ns > 0) {  // parking again: keeps its age and its place (mutex.cpp M4)
        w.since_ns = since_ns;
        b.waiters.push_front(w);
    } else {
        w.since_ns = since_ns == 0 ? now_ns() : 0;
        b.waiters.push_back(w);
    }
    const wake_reason r = park_waiter(w, b.lock, why, deadline_ns, cancellable, after_unlock, after_arg);
    if (r == wake_reason::notified) return {park_result::unparked, w.token};
    b.lock.lock();  // Q3: leave the list if no waker took us off it
    if (w.linked) b.waiters.remove(w);
    b.lock.unlock();
    return {r == wake_reason::timeout ? park_result::timeout : park_result::cancelled, 0};
}

namespace {
/// The first waiter on `key` at or after `from`, under the bucket lock.
waiter* find(const void* key, waiter* from) noexcept {
    for (waiter* w = from; w; w = w->next)
        if (w->key == key) return w;
    return nullptr;
}
}  // namespace

void unpark_one_on(const void* key, std::uintptr_t (*callback)(void*, unpark_info), void* ctx,
                   bool run_here) noexcept {
    bucket& b = bucket_of(key);
    b.lock.lock();
    waiter* w = find(key, b.waiters.front());
    while (w) {
        waiter* next = find(key, w->next);
        b.waiters.remove(*w);
        if (claim_waiter(*w)) {  // P3
            const unpark_info info{true, next != nullptr, w->since_ns ? now_ns() - w->since_ns : 0};
            w->token = callback(ctx, info);
            complete_unpark(*w, !run_here);
            b.lock.unlock();
            return;
        }
        w = next;  // lost to its deadline or canceller: it leaves on its own (P3)
    }
    (void)callback(ctx, unpark_info{false, false, 0});
    b.lock.unlock();
}

std::size_t unpark_on(const void* key, std::size_t n) noexcept {
    bucket& b = bucket_of(key);
    std::size_t woken = 0;
    b.lock.lock();
    waiter* w = find(key, b.waiters.front());
    while (w && woken < n) {
        waiter* next = find(key, w->next);
        b.waiters.remove(*w);
        if (unpark_waiter(*w)) ++woken;
        w = next;
    }
    b.lock.unlock();
    return woken;
}

}  // namespace weft::detail
