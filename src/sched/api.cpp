// The compiled half of the public API: errors, spawn_task, weft::thread,
// weft::jthread and this_fiber. Scheduling itself lives in worker.cpp.
#include <cstdio>
#include <exception>
#include <string>
#include <thread>

#include <weft/detail/park.hpp>
#include <weft/runtime.hpp>
#include <weft/this_fiber.hpp>
#include <weft/thread.hpp>

#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"
#include "util/check.hpp"

namespace weft {

namespace {

class weft_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "weft"; }
    std::string message(int c) const override {
        switch (static_cast<errc>(c)) {
            case errc::operation_cancelled: return "operation cancelled";
            case errc::runtime_shut_down: return "runtime is shutting down";
            case errc::not_in_runtime: return "not called from a weft fiber";
        }
        return "unknown weft error";
    }
};

}  // namespace

const std::error_category& weft_category() noexcept {
    static const weft_category_impl cat;
    return cat;
}

fiber_error::~fiber_error() = default;

operation_cancelled::operation_cancelled()
    : fiber_error(make_error_code(errc::operation_cancelled), "fiber cancelled") {}
operation_cancelled::~operation_cancelled() = default;

// ---------------------------------------------------------------- thread

thread::~thread() {
    if (joinable()) {
        std::fputs("weft: weft::thread::~thread: destroying a joinable thread\n", stderr);
        std::terminate();
    }
}

thread& thread::operator=(thread&& o) noexcept {
    if (joinable()) {
        std::fputs("weft: weft::thread::operator=: assigning over a joinable thread\n", stderr);
        std::terminate();
    }
    ref_ = std::move(o.ref_);
    return *this;
}

void thread::join() {
    if (!ref_) throw fiber_error(std::make_error_code(std::errc::invalid_argument), "thread::join: not joinable");
    // Not a cancellation point, as std::thread::join cannot be interrupted: a join
    // that threw operation_cancelled left the thread joinable, and the unwinding
    // (~thread, or ~jthread's noexcept join) terminated (found by review).
    ref_.join(/*cancellable=*/false);
    ref_.reset();
}

void thread::detach() {
    if (!ref_) throw fiber_error(std::make_error_code(std::errc::invalid_argument), "thread::detach: not joinable");
    ref_.reset();
}

unsigned thread::hardware_concurrency() noexcept { return std::thread::hardware_concurrency(); }

jthread::~jthread() {
    if (joinable()) {
        request_stop();
        join();
    }
}

jthread& jthread::operator=(jthread&& o) noexcept {
    if (this != &o) {
        if (joinable()) {
            request_stop();
            join();
        }
        t_ = std::move(o.t_);
        ss_ = std::move(o.ss_);
    }
    return *this;
}

// ---------------------------------------------------------------- this_fiber

namespace {
// A plain thread's id without touching thread_identity's string (the mutex fast path).
thread_local std::uint64_t tls_thread_token __attribute__((tls_model("initial-exec"))) = 0;
struct thread_identity {
    std::uint64_t id = 0;
    std::string name;
};
thread_identity& this_os_thread() {
    thread_local thread_identity t;
    if (t.id == 0) t.id = tls_thread_token ? tls_thread_token : detail::next_id();
    tls_thread_token = t.id;
    return t;
}
detail::fiber* running_fiber() noexcept {
    detail::worker* w = detail::worker::current();
    return w ? w->running() : nullptr;
}
}  // namespace

namespace this_fiber {

fiber_id get_id() noexcept {
    if (detail::fiber* f = running_fiber()) return fiber_id{f->id};
    return fiber_id{this_os_thread().id};
}

void set_name(std::string_view name) {
    if (detail::fiber* f = running_fiber()) {
        f->set_name(name);
        return;
    }
    this_os_thread().name = name;
}

std::string get_name() {
    if (detail::fiber* f = running_fiber()) return f->name_copy();
    return this_os_thread().name;
}

bool in_fiber() noexcept { return running_fiber() != nullptr; }

}  // namespace this_fiber

}  // namespace weft

namespace weft::detail {

fiber_ref spawn_task(runtime_impl* rt, task_base* t, const spawn_attrs& attrs) {
    if (!rt) {
        worker* w = worker::current();
        try {
            rt = w ? &w->rt() : default_runtime().impl();
        } catch (...) {  // the task is ours either way (see the header)
            t->~task_base();
            free_task_storage(t);
            throw;
        }
    }
    return fiber_ref(rt->spawn(t, attrs));
}

void terminate_uncaught(std::exception_ptr e) noexcept {
    const std::string what = describe(e);
    fiber* f = running_fiber();
    std::fprintf(stderr, "weft: uncaught exception in fiber %llu '%s': %s\n",
                 static_cast<unsigned long long>(f ? f->id : 0), f ? f->name_copy().c_str() : "", what.c_str());
    std::fflush(stderr);
    std::terminate();
}

}  // namespace weft::detail

namespace weft::detail {

std::uint64_t thread_token() noexcept {
    if (tls_thread_token == 0) tls_thread_token = next_id();  // this_os_thread() adopts it
    return tls_thread_token;
}

bool spin_may_help() noexcept {
    worker* w = worker::current();
    return !w || (w->rt().workers.size() > 1 && !w->has_local_work());
}

void throw_cancelled() { throw operation_cancelled(); }

}  // namespace weft::detail
