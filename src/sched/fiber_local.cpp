// weft::fiber_local (include/weft/fiber_local.hpp is the spec).
//
// Ownership. A fiber's table (fiber::locals) is touched only by the fiber
// itself: created at its first insert, destroyed by it after its task
// returned (worker::fiber_main calls destroy_fiber_locals, on the fiber's
// stack, before the fiber finishes and its joiners wake). A plain thread's
// table is a thread_local, destroyed at thread exit. No atomics: nothing is
// shared, except the key counter (relaxed: a key only needs to be unique).
//
// Invariants.
//  L1 Keys are never reused (64-bit counter), so a value left by a destroyed
//     fiber_local can never be found by a later one; it is still freed with
//     its table, through the destroy function stored beside it.
//  L2 Destruction runs in rounds: the table's entries are moved out, then
//     destroyed in reverse order of creation; a destructor that touches a
//     fiber_local makes a new entry, destroyed in the next round. After four
//     rounds what remains is left (logged), as POSIX leaves thread keys after
//     PTHREAD_DESTRUCTOR_ITERATIONS.
//
// Tested by test/api/fiber_local_test.cpp.
#include <weft/fiber_local.hpp>

#include <atomic>
#include <vector>

#include "sched/fiber.hpp"
#include "sched/worker.hpp"
#include "util/log.hpp"

namespace weft::detail {

struct local_table {
    struct entry {
        std::uint64_t key;
        void* p;
        void (*destroy)(void*);
    };
    std::vector<entry> entries;
};

namespace {
std::atomic<std::uint64_t> next_key{1};

void destroy_rounds(local_table& t) noexcept {
    for (int round = 0; round < 4 && !t.entries.empty(); ++round) {
        std::vector<local_table::entry> batch = std::move(t.entries);  // L2
        t.entries.clear();
        for (auto it = batch.rbegin(); it != batch.rend(); ++it) it->destroy(it->p);
    }
    if (!t.entries.empty())
        log().warn("fiber_local: {} values still made by destructors after 4 rounds are not destroyed",
                   t.entries.size());
}

struct thread_table {
    local_table t;
    ~thread_table() { destroy_rounds(t); }
};
thread_local thread_table tl_table;

local_table* table(bool create) {
    worker* w = worker::current();
    fiber* f = w ? w->running() : nullptr;
    if (!f) return &tl_table.t;
    if (!f->locals && create) f->locals = new local_table;
    return f->locals;
}
}  // namespace

std::uint64_t local_new_key() noexcept { return next_key.fetch_add(1, std::memory_order_relaxed); }

void* local_find(std::uint64_t key) noexcept {
    local_table* t = table(false);
    if (!t) return nullptr;
    for (const auto& e : t->entries)
        if (e.key == key) return e.p;
    return nullptr;
}

void local_insert(std::uint64_t key, void* p, void (*destroy)(void*)) {
    try {
        table(true)->entries.push_back({key, p, destroy});
    } catch (...) {
        destroy(p);
        throw;
    }
}

void destroy_fiber_locals(fiber* f) noexcept {
    // Rounds may re-create f->locals' entries (L2), and a destructor may park
    // and migrate: f stays the running fiber throughout.
    destroy_rounds(*f->locals);
    delete std::exchange(f->locals, nullptr);
}

}  // namespace weft::detail
