// Fiber stacks: mmap'd, lazily committed, with guard pages below, and a
// per-worker cache.
//
// Vocabulary. A *stack* is one anonymous private mapping [map_base, map_base +
// map_size): `guard` inaccessible bytes at the bottom, then `size` usable bytes
// (lo .. lo + size). Stacks grow down, so running off the usable range hits the
// guard first. The *guard mode* is how the guard is made inaccessible:
//  - "madvise": madvise(MADV_GUARD_INSTALL) (Linux 6.13+). The guard is a
//    page-table marker, adds no VMA, and adjacent stacks with the same flags
//    merge into one VMA, so vm.max_map_count (65530 by default) does not cap
//    the number of stacks.
//  - "mprotect": PROT_NONE on the guard. Each stack then costs two VMAs, which
//    caps a stock machine at about 32k simultaneously mapped stacks.
// The mode is probed once per process and reported by runtime::stats().
//
// Ownership. A stack_cache belongs to one worker and is used only by that
// worker's thread (no locking). A stack freed by a fiber that exited on worker
// W goes to W's cache.
//
// Invariants.
//  I1 The guard of every mapped stack is inaccessible from mapping until
//     munmap (MADV_DONTNEED keeps guard markers; mprotect'd pages stay PROT_NONE).
//  I2 A cached stack is either hot (pages kept) or cold (pages returned with
//     MADV_DONTNEED). put() only appends to the hot list (no syscall on the
//     exit path, up to `burst_max`); trim(), run when the worker goes idle,
//     brings the cache back to at most `hot_max` hot and `cold_max` cold
//     stacks and unmaps the rest. (A burst of 10,000 exits that each did
//     madvise/munmap delayed that worker's timers by ~40 ms.)
//  I3 Under ASan the whole usable range is unpoisoned before a stack is reused,
//     because a fiber that exited by switching away leaves stale poison behind.
//
// No atomics here: a cache is single-threaded, and the process-wide guard-mode
// probe is a function-local static (thread-safe initialisation).
//
// Rejected: malloc'd stacks (no guard page; Boost.Fiber's default); one big
// slab per worker (a stack could not be returned to the kernel by itself).
//
// Tested by test/api/runtime_test.cpp (park 1M fibers), test/death/* (overflow).
#pragma once
#include "util/private.hpp"

#include <cstddef>
#include <atomic>
#include <cstdint>
#include <vector>

namespace weft::detail {

enum class guard_mode { madvise, mprotect };

struct stack {  // 16 bytes: it lives in every fiber object
    void* map_base = nullptr;
    std::uint32_t map_size = 0;  // <= 1 GiB + 256 guard pages (runtime_options limits)
    std::uint32_t size = 0;      // usable bytes

    void* lo() const noexcept { return static_cast<char*>(map_base) + (map_size - size); }  // lowest usable byte
    void* top() const noexcept { return static_cast<char*>(map_base) + map_size; }
};

std::size_t page_size() noexcept;
guard_mode process_guard_mode() noexcept;
const char* guard_mode_name(guard_mode m) noexcept;

/// Maps a new stack. Throws fiber_error(resource_unavailable_try_again) when
/// the kernel refuses the mapping or the guard (out of memory or map count).
stack map_stack(std::size_t size, std::size_t guard_pages);
void unmap_stack(stack& s) noexcept;

class stack_cache {
public:
    static constexpr std::size_t hot_max = 16;
    static constexpr std::size_t cold_max = 256;
    static constexpr std::size_t burst_max = 4096;

    stack_cache(std::size_t size, std::size_t guard_pages, std::atomic<std::int64_t>& mapped)
        : size_(size), guard_pages_(guard_pages), mapped_(mapped) {
        hot_.reserve(burst_max);  // put() is noexcept: never allocates
        cold_.reserve(cold_max);
    }
    ~stack_cache() { clear(); }
    stack_cache(const stack_cache&) = delete;
    stack_cache& operator=(const stack_cache&) = delete;

    stack get();                  // throws like map_stack
    void put(stack s) noexcept;   // s must come from a cache of the same geometry
    void trim() noexcept;         // back to the watermarks (I2); idle time only
    void clear() noexcept;

private:
    void retire(stack s) noexcept;

    std::size_t size_;
    std::size_t guard_pages_;
    std::atomic<std::int64_t>& mapped_;  // the runtime's count of mapped stacks (stats only)
    std::vector<stack> hot_;
    std::vector<stack> cold_;
};

}  // namespace weft::detail
