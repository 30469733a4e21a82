#include "sched/block_pool.hpp"

#include <sys/mman.h>

#include <cstdint>
#include <mutex>
#include <new>
#include <vector>

#include <weft/config.hpp>

#include "util/check.hpp"

namespace weft::detail {

#if !defined(WEFT_ASAN)  // under ASan every block is operator new/delete (see the header)
namespace {

constexpr std::size_t granule = 16;
constexpr std::size_t max_pooled = 1024;  // larger blocks: operator new
constexpr std::size_t classes = max_pooled / granule;
constexpr std::size_t chunk_size = std::size_t{2} << 20;
constexpr std::size_t slab_size = std::size_t{64} << 10;
constexpr std::size_t cache_cap = 1024;  // per class and thread, then a batch goes central
constexpr std::size_t batch = 512;

struct node {
    node* next;
};

struct central_pool {
    std::mutex mu;
    char* cur = nullptr;  // guarded by mu: the current chunk's unused part
    char* end = nullptr;
    std::vector<node*> batches[classes];  // guarded by mu: lists of `batch` blocks

    // A fresh slab for a thread's bump allocation (P1: never returned).
    char* take_slab() {
        std::lock_guard<std::mutex> lk(mu);
        if (static_cast<std::size_t>(end - cur) < slab_size) {
            // 2 MiB-aligned so the kernel can back it with one huge page.
            void* raw = ::mmap(nullptr, 2 * chunk_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (raw == MAP_FAILED) throw std::bad_alloc();
            auto base = reinterpret_cast<std::uintptr_t>(raw);
            auto aligned = (base + chunk_size - 1) & ~(chunk_size - 1);
            if (aligned > base) WEFT_CHECK(::munmap(raw, aligned - base) == 0);
            const std::uintptr_t tail = base + 2 * chunk_size - (aligned + chunk_size);
            if (tail) WEFT_CHECK(::munmap(reinterpret_cast<void*>(aligned + chunk_size), tail) == 0);
            (void)::madvise(reinterpret_cast<void*>(aligned), chunk_size, MADV_HUGEPAGE);  // a hint: may be off
            cur = reinterpret_cast<char*>(aligned);
            end = cur + chunk_size;
        }
        char* s = cur;
        cur += slab_size;
        return s;
    }
};

central_pool& central() {
    static central_pool* p = new central_pool;  // never destroyed: threads may exit after static destruction
    return *p;
}

// Trivially destructible, so initial-exec TLS needs no guard or wrapper call
// (the shared library's default global-dynamic model cost 9% of skynet's
// instructions in __tls_get_addr). P2 is kept by thread_cache_flusher.
struct thread_cache {
    node* head[classes];
    std::uint32_t count[classes];
    char* bump;
    char* bump_end;
    bool flusher_registered;
};
thread_local thread_cache tls __attribute__((tls_model("initial-exec")));

void give_back(std::size_t c, std::size_t n) noexcept {  // n blocks of class c, from tls to central
    node* h = tls.head[c];
    node* t = h;
    for (std::size_t i = 1; i < n; ++i) t = t->next;
    tls.head[c] = t->next;
    tls.count[c] -= static_cast<std::uint32_t>(n);
    t->next = nullptr;
    auto& cp = central();
    std::lock_guard<std::mutex> lk(cp.mu);
    try {
        cp.batches[c].push_back(h);
    } catch (...) {  // out of memory for the batch vector: keep the blocks here
        t->next = tls.head[c];
        tls.head[c] = h;
        tls.count[c] += static_cast<std::uint32_t>(n);
    }
}

struct thread_cache_flusher {
    ~thread_cache_flusher() {
        for (std::size_t c = 0; c < classes; ++c)
            if (tls.count[c]) give_back(c, tls.count[c]);
    }
};

__attribute__((noinline)) void register_flusher() noexcept {
    thread_local thread_cache_flusher flusher;
    (void)flusher;
    tls.flusher_registered = true;
}

__attribute__((noinline)) void* refill(std::size_t c, std::size_t block_size) {
    if (!tls.flusher_registered) register_flusher();
    auto& cp = central();
    {
        std::lock_guard<std::mutex> lk(cp.mu);
        if (!cp.batches[c].empty()) {
            node* h = cp.batches[c].back();
            cp.batches[c].pop_back();
            std::uint32_t n = 0;
            for (node* p = h; p; p = p->next) ++n;
            tls.head[c] = h->next;
            tls.count[c] = n - 1;
            return h;
        }
    }
    if (static_cast<std::size_t>(tls.bump_end - tls.bump) < block_size) {
        tls.bump = cp.take_slab();
        tls.bump_end = tls.bump + slab_size;
    }
    void* p = tls.bump;
    tls.bump += block_size;
    return p;
}

}  // namespace
#endif

void* block_alloc(std::size_t block_size) {
#if defined(WEFT_ASAN)
    return ::operator new(block_size);
#else
    if (block_size > max_pooled) return ::operator new(block_size);
    const std::size_t c = block_size / granule - 1;
    if (node* n = tls.head[c]) {
        tls.head[c] = n->next;
        --tls.count[c];
        return n;
    }
    return refill(c, block_size);
#endif
}

void block_free(void* p, std::size_t block_size) noexcept {
#if defined(WEFT_ASAN)
    (void)block_size;
    ::operator delete(p);
#else
    if (block_size > max_pooled) {
        ::operator delete(p);
        return;
    }
    if (!tls.flusher_registered) register_flusher();
    const std::size_t c = block_size / granule - 1;
    auto* n = static_cast<node*>(p);
    n->next = tls.head[c];
    tls.head[c] = n;
    if (++tls.count[c] > cache_cap) give_back(c, batch);
#endif
}

}  // namespace weft::detail
