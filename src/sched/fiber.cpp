#include "sched/fiber.hpp"

#include <algorithm>
#include <limits>
#include <cstdio>
#include <exception>
#include <ostream>

#include <weft/error.hpp>
#include <weft/fiber_id.hpp>

#include "sched/block_pool.hpp"
#include "sched/worker.hpp"
#include "sync/wait_queue.hpp"
#include "util/log.hpp"

namespace weft {

std::ostream& operator<<(std::ostream& os, fiber_id id) {
    if (id == fiber_id{}) return os << "none";
    return os << id.value();
}

}  // namespace weft

namespace weft::detail {

namespace {
std::atomic<std::uint64_t> g_next_id_block{1};
constexpr std::uint64_t id_block = 256;

void report_unobserved(fiber* f, std::exception_ptr e) noexcept {
    try {
        std::rethrow_exception(e);
    } catch (const operation_cancelled&) {
        // Cancelled (runtime::shutdown(), a scope): the unwinding was asked
        // for, not an error; a server's shutdown would log once per connection.
        log().debug("fiber {} '{}' ended cancelled; nobody joined it", f->id, f->name_copy());
        return;
    } catch (...) {
    }
    log().error("fiber {} '{}' exited with an exception nobody joined: {}", f->id, f->name_copy(), describe(e));
}
}  // namespace

std::string describe(std::exception_ptr e) noexcept {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        return ex.what();
    } catch (...) {
    }
    return "unknown exception";
}

std::uint64_t next_id() noexcept {
    // Blocks of ids per thread: one shared RMW per 256 spawns instead of per spawn.
    static thread_local std::uint64_t next __attribute__((tls_model("initial-exec"))) = 0;
    static thread_local std::uint64_t end __attribute__((tls_model("initial-exec"))) = 0;
    if (next == end) {
        next = g_next_id_block.fetch_add(id_block, std::memory_order_relaxed);  // relaxed: uniqueness only needs atomicity
        end = next + id_block;
    }
    return next++;
}

static_assert(alignof(fiber) <= alignof(std::max_align_t));

std::string fiber::name_copy() noexcept {
    meta_lock.lock();
    std::string copy;
    try {
        if (name) copy = *name;
    } catch (...) {  // out of memory while copying a name for a report: report it unnamed
    }
    meta_lock.unlock();
    return copy;
}

void fiber::set_name(std::string_view n) {
    auto* fresh = new std::string(n);  // allocate outside the lock
    meta_lock.lock();
    std::swap(fresh, name);
    meta_lock.unlock();
    delete fresh;
}

namespace {

}  // namespace

void* alloc_task_storage(std::size_t size, std::size_t align) {
    (void)align;  // <= alignof(max_align_t): static_assert in make_and_spawn
    size = std::max<std::size_t>(size, 1);
    constexpr std::size_t align16 = alignof(std::max_align_t);
    const std::size_t block_size = fiber_header_size + (size + align16 - 1) / align16 * align16;
    void* p = block_alloc(block_size);  // F5
    auto* f = ::new (p) fiber;
    f->block_size = static_cast<std::uint32_t>(block_size);
    return reinterpret_cast<char*>(p) + fiber_header_size;
}

void free_task_storage(void* storage) noexcept {
    fiber* f = fiber_of_task(storage);
    std::size_t bs = f->block_size;
    f->~fiber();
    block_free(f, bs);
}

void fiber::release() noexcept {
    // acq_rel: the last releaser must see every write made through other references (F1).
    if (refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if (auto e = task->unobserved_exception()) report_unobserved(this, e);
    task->~task_base();  // user destructors: on the fiber's own stack or a handle owner's thread (F1)
    unpin();
}

void fiber::unpin() noexcept {
    // acq_rel: the last unpin must see every write made under the other pins (F1).
    if (pins.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    std::size_t bs = block_size;
    this->~fiber();
    block_free(this, bs);
}

task_base::~task_base() = default;

void fiber_ref::reset() noexcept {
    if (f_) std::exchange(f_, nullptr)->release();
}

fiber_id fiber_ref::id() const noexcept { return fiber_id{f_->id}; }

bool fiber_ref::is_finished() const noexcept {
    return f_->finished.load(std::memory_order_acquire);  // acquire: pairs with the release in finish_and_wake_joiners (F2)
}

void fiber_ref::join(bool cancellable) const {
    fiber* f = f_;
    if (f->finished.load(std::memory_order_acquire)) return;  // acquire: F2
    waiter me = make_waiter();
    if (me.f == f)
        throw fiber_error(std::make_error_code(std::errc::resource_deadlock_would_occur), "a fiber cannot join itself");
    f->join_lock.lock();
    if (f->finished.load(std::memory_order_relaxed)) {  // relaxed: read under join_lock, which orders it (F2)
        f->join_lock.unlock();
        return;
    }
    f->joiners.push_back(me);
    if (park_waiter(me, f->join_lock, "join", std::numeric_limits<std::int64_t>::max(), cancellable) ==
        wake_reason::cancelled) {
        f->join_lock.lock();
        if (me.linked) f->joiners.remove(me);  // Q3
        f->join_lock.unlock();
        throw operation_cancelled();
    }
}

}  // namespace weft::detail
