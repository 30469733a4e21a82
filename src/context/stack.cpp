#include "context/stack.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include <weft/error.hpp>

#include "util/check.hpp"
#include "util/log.hpp"

#if defined(WEFT_ASAN)
#include <sanitizer/asan_interface.h>
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102  // Linux 6.13 uapi; Debian 12's headers predate it
#endif

namespace weft::detail {

std::size_t page_size() noexcept {
    static const std::size_t ps = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    return ps;
}

namespace {

guard_mode probe_guard_mode() noexcept {
    const std::size_t ps = page_size();
    void* p = ::mmap(nullptr, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    WEFT_CHECK(p != MAP_FAILED);
    guard_mode m = ::madvise(p, ps, MADV_GUARD_INSTALL) == 0 ? guard_mode::madvise : guard_mode::mprotect;
    WEFT_CHECK(::munmap(p, 2 * ps) == 0);
    log().info("fiber stack guard pages use {}", m == guard_mode::madvise ? "madvise(MADV_GUARD_INSTALL)"
                                                                            : "mprotect (one extra VMA per stack)");
    return m;
}

[[noreturn]] void throw_no_stack(int err, const char* what) {
    throw fiber_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                      std::string("cannot map a fiber stack: ") + what + ": " +
                          std::generic_category().message(err));
}

}  // namespace

guard_mode process_guard_mode() noexcept {
    static const guard_mode m = probe_guard_mode();
    return m;
}

const char* guard_mode_name(guard_mode m) noexcept { return m == guard_mode::madvise ? "madvise" : "mprotect"; }

stack map_stack(std::size_t size, std::size_t guard_pages) {
    const std::size_t guard = guard_pages * page_size();
    stack s;
    s.size = static_cast<std::uint32_t>(size);
    s.map_size = static_cast<std::uint32_t>(size + guard);
    // MAP_NORESERVE: a million 256 KiB stacks must not be charged to the commit limit
    // up front; pages are committed as the fiber touches them.
    void* p = ::mmap(nullptr, s.map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw_no_stack(errno, "mmap");
    s.map_base = p;
    if (process_guard_mode() == guard_mode::madvise) {
        // Installing a guard on fresh private anonymous memory cannot fail but for
        // memory exhaustion; a stack without its guard must never run (I1).
        if (::madvise(p, guard, MADV_GUARD_INSTALL) != 0) {
            int err = errno;
            WEFT_CHECK(::munmap(p, s.map_size) == 0);
            throw_no_stack(err, "madvise(MADV_GUARD_INSTALL)");
        }
    } else if (::mprotect(p, guard, PROT_NONE) != 0) {
        int err = errno;  // ENOMEM: vm.max_map_count reached
        WEFT_CHECK(::munmap(p, s.map_size) == 0);
        throw_no_stack(err, "mprotect guard (vm.max_map_count?)");
    }
    return s;
}

void unmap_stack(stack& s) noexcept {
    if (!s.map_base) return;
#if defined(WEFT_ASAN)
    ASAN_UNPOISON_MEMORY_REGION(s.lo(), s.size);
#endif
    WEFT_CHECK(::munmap(s.map_base, s.map_size) == 0);
    s = stack{};
}

stack stack_cache::get() {
    stack s;
    if (!hot_.empty()) {
        s = hot_.back();
        hot_.pop_back();
    } else if (!cold_.empty()) {
        s = cold_.back();
        cold_.pop_back();
    } else {
        stack fresh = map_stack(size_, guard_pages_);
        mapped_.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistics counter
        return fresh;
    }
#if defined(WEFT_ASAN)
    ASAN_UNPOISON_MEMORY_REGION(s.lo(), s.size);  // I3
#endif
    return s;
}

void stack_cache::put(stack s) noexcept {
    if (hot_.size() < burst_max) {
        hot_.push_back(s);  // I2: no syscall here
        return;
    }
    retire(s);
}

void stack_cache::retire(stack s) noexcept {
    if (cold_.size() < cold_max) {
        // Return the pages, keep the address range and its guard (I1, I2).
        WEFT_CHECK(::madvise(s.lo(), s.size, MADV_DONTNEED) == 0);
        cold_.push_back(s);
        return;
    }
    unmap_stack(s);
    mapped_.fetch_sub(1, std::memory_order_relaxed);  // relaxed: statistics counter
}

void stack_cache::trim() noexcept {
    while (hot_.size() > hot_max) {
        stack s = hot_.back();
        hot_.pop_back();
        retire(s);
    }
}

void stack_cache::clear() noexcept {
    for (auto& s : hot_) unmap_stack(s);
    for (auto& s : cold_) unmap_stack(s);
    mapped_.fetch_sub(static_cast<std::int64_t>(hot_.size() + cold_.size()), std::memory_order_relaxed);  // relaxed: stats
    hot_.clear();
    cold_.clear();
}

}  // namespace weft::detail
