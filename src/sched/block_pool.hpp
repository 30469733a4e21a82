// Memory for fiber blocks (fiber header + task storage, fiber.hpp F5).
//
// Why not malloc: a burst of spawns (spawn_join holds a million join handles)
// touches hundreds of MB of fresh memory; at 4 KiB a page fault with memcg
// charging cost ~180 ns per fiber here, more than everything else a spawn does.
// Blocks up to `max_pooled` bytes therefore come from 2 MiB chunks advised
// MADV_HUGEPAGE (one fault per 2 MiB where transparent huge pages are on),
// carved by a per-thread bump slab, and recycled through per-thread free lists
// by 16-byte size class.
//
// Ownership. A thread's cache (slab + lists) is used only by that thread. The
// central pool (chunk cursor, free batches per class) is shared, under mu_.
// A block may be freed by another thread than the one that allocated it: it
// joins the freeing thread's list; lists over `cache_cap` hand a batch of
// `batch` blocks to the central pool, where any thread's refill can take it.
//
// Invariants.
//  P1 A pooled block belongs to exactly one of: a live fiber, one thread's
//     list, one central batch. Chunk memory is never unmapped: the pool keeps
//     its high-water mark (as Go keeps its G structs), bounded by the peak
//     number of simultaneous fibers times the block size.
//  P2 A thread that exits hands its lists to the central pool.
//
// Synchronisation: the central pool's mutex orders every hand-over of a block
// between threads (a block freed on thread A and reused on thread B passes
// through mu_), so block contents never race. Under AddressSanitizer every
// block is a plain operator new/delete, so use-after-free stays detectable.
//
// Tested by test/api (spawn/join on 1, 2, 4 workers), test/stress (1M fibers),
// and the TSan run.
#pragma once
#include "util/private.hpp"

#include <cstddef>

namespace weft::detail {

/// block_size: a multiple of 16. Throws std::bad_alloc.
void* block_alloc(std::size_t block_size);
void block_free(void* p, std::size_t block_size) noexcept;

}  // namespace weft::detail
