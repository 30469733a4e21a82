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

/// Moves the entry at i down to its place among its descendants.
template <class E>
void heap_sift_down(std::vector<E>& h, std::size_t i) noexcept {
    const std::size_t n = h.size();
    const E e = h[i];
    for (;;) {
        const std::size_t first = i * heap_arity + 1;
        if (first >= n) break;
        std::size_t best = first;
        for (std::size_t c = first + 1; c < std::min(first + heap_arity, n); ++c)
            if (h[c].when < h[best].when) best = c;
        if (h[best].when >= e.when) break;
        h[i] = h[best];
        i = best;
    }
    h[i] = e;
}

/// Makes a heap of h's entries in place (O(n), no allocation).
template <class E>
void heap_make(std::vector<E>& h) noexcept {
    for (std::size_t i = h.size() / heap_arity + 1; i-- > 0;)
        if (i < h.size()) heap_sift_down(h, i);
}

/// Removes and returns the earliest entry. Precondition: !h.empty().
template <class E>
E heap_pop(std::vector<E>& h) noexcept {
    const E top = h.front();
    h.front() = h.back();
    h.pop_back();
    if (!h.empty()) heap_sift_down(h, 0);
    return top;
}

}  // namespace weft::detail
