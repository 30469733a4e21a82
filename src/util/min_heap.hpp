// A 4-ary min-heap on a std::vector, ordered by each entry's `when` (as Go's
// timer heaps: shallower than a binary heap, and a node's children share a
// cache line). Used by the per-worker timer queues (time/timer_queue.hpp)
// and the tick service (time/tick_timer.cpp); the caller's lock guards it.
#pragma once
#include "util/private.hpp"

#include <algorithm>
#include <cstddef>
#include <vector>

namespace weft::detail {

inline constexpr std::size_t heap_arity = 4;

/// Adds e. Throws std::bad_alloc (then the heap is unchanged) only if the
/// vector must grow.
template <class E>
void heap_push(std::vector<E>& h, const E& e) {
    h.push_back(e);
    std::size_t i = h.size() - 1;
    while (i > 0) {
        const std::size_t parent = (i - 1) / heap_arity;
        if (h[parent].when <= e.when) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = e;
}

/// Removes and returns the earliest entry. Precondition: !h.empty().
template <class E>
E heap_pop(std::vector<E>& h) noexcept {
    const E top = h.front();
    const E last = h.back();
    h.pop_back();
    const std::size_t n = h.size();
    if (n > 0) {
        std::size_t i = 0;
        for (;;) {
            const std::size_t first = i * heap_arity + 1;
            if (first >= n) break;
            std::size_t best = first;
            for (std::size_t c = first + 1; c < std::min(first + heap_arity, n); ++c)
                if (h[c].when < h[best].when) best = c;
            if (h[best].when >= last.when) break;
            h[i] = h[best];
            i = best;
        }
        h[i] = last;
    }
    return top;
}

}  // namespace weft::detail
