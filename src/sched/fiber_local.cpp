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
//  L2 Destruction is newest first, one value at a time: the value is taken
//     off the table, then destroyed, so its destructor still finds every
//     older value alive (thread_local's reverse order), and a value it makes
//     anew (touching a fiber_local already destroyed) goes on the table and is
//     destroyed next. Past 4 x the values there were at the start (+16), what
//     remains is left and logged, as POSIX leaves thread keys after
//     PTHREAD_DESTRUCTOR_ITERATIONS.
//  L3 A fiber destroys its values with its cancellation deferred (fiber.hpp
//     F8): a destructor may block, and a blocking call that threw out of it
//     would terminate. Completion that others wait for - a scope child's end,
//     an async's future becoming ready - comes after (destroy_current_fiber_locals
//     from their task's run(); as std::async does for thread_locals), join()
//     and block_on() after fiber_main's call.
//  L4 A plain thread's table is a thread_local destroyed at thread exit. A
//     value made after that (another thread_local's destructor touching a
//     fiber_local) goes to a second table owned by a pthread key, whose
//     destructor runs after the thread_locals'; at the exit of the main
//     thread, which runs no key destructors, that one is left.
//
// Tested by test/api/fiber_local_test.cpp.
#include <weft/fiber_local.hpp>

#include <pthread.h>

#include <atomic>
#include <new>
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

void destroy_all(local_table& t) noexcept {
    std::size_t budget = 4 * t.entries.size() + 16;  // L2
    while (!t.entries.empty() && budget-- != 0) {
        const local_table::entry e = t.entries.back();
        t.entries.pop_back();
        e.destroy(e.p);
    }
    if (!t.entries.empty())
        log().warn("fiber_local: {} values made by destructors while the others were destroyed are left",
                   t.entries.size());
}

// L4.
pthread_key_t late_key;
void destroy_late(void* p) {
    auto* t = static_cast<local_table*>(p);
    // glibc cleared the slot before calling us: put the table back while its values
    // die, so that their destructors still find the older ones (L2).
    (void)::pthread_setspecific(late_key, t);
    destroy_all(*t);
    (void)::pthread_setspecific(late_key, nullptr);
    delete t;
}
bool late_key_ok() noexcept {
    static const bool ok = ::pthread_key_create(&late_key, &destroy_late) == 0;  // thread-safe, at first use
    return ok;
}

thread_local bool tl_table_gone = false;  // trivially destructible: valid during every TLS destructor
struct thread_table {
    local_table t;
    ~thread_table() {
        destroy_all(t);
        tl_table_gone = true;
    }
};
thread_local thread_table tl_table;

local_table* thread_table_for(bool create) {
    if (!tl_table_gone) return &tl_table.t;
    const bool ok = late_key_ok();
    auto* late = ok ? static_cast<local_table*>(::pthread_getspecific(late_key)) : nullptr;
    if (!late && create) {
        late = new local_table;
        if (!ok || ::pthread_setspecific(late_key, late) != 0) {
            delete late;
            throw std::bad_alloc();
        }
    }
    return late;
}

local_table* table(bool create) {
    worker* w = worker::current();
    fiber* f = w ? w->running() : nullptr;
    if (!f) return thread_table_for(create);
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
    // L3: a destructor may park (and migrate); f stays the running fiber.
    f->cancel_deferred.store(true, std::memory_order_relaxed);  // F8; relaxed: read by f itself
    destroy_all(*f->locals);
    delete std::exchange(f->locals, nullptr);
}

void destroy_current_fiber_locals() noexcept {
    worker* w = worker::current();
    fiber* f = w ? w->running() : nullptr;
    if (f && f->locals) destroy_fiber_locals(f);
}

}  // namespace weft::detail
