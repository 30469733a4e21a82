#include "context/switch.hpp"

#include <cxxabi.h>
#include <pthread.h>

#include "util/check.hpp"

namespace weft::detail {

void init_thread_context(exec_context& ctx) noexcept {
#if !WEFT_SANITIZED_SWITCH
    (void)ctx;
#else
    pthread_attr_t attr;
    WEFT_CHECK(::pthread_getattr_np(::pthread_self(), &attr) == 0);
    void* lo = nullptr;
    std::size_t size = 0;
    WEFT_CHECK(::pthread_attr_getstack(&attr, &lo, &size) == 0);
    ::pthread_attr_destroy(&attr);
    ctx.stack_lo = lo;
    ctx.stack_size = size;
#if defined(WEFT_TSAN)
    ctx.tsan_fiber = __tsan_get_current_fiber();
#endif
#endif
}

eh_state* thread_eh_state() noexcept { return reinterpret_cast<eh_state*>(abi::__cxa_get_globals()); }

void make_context(exec_context& ctx, void* lo, std::size_t size, void (*entry)(transfer)) noexcept {
    ctx.fctx = bctx::make_fcontext(static_cast<char*>(lo) + size, size, entry);
    ctx.eh = eh_state{};  // X1: a fresh context handles no exception
#if WEFT_SANITIZED_SWITCH
    ctx.stack_lo = lo;
    ctx.stack_size = size;
    ctx.asan_fake_stack = nullptr;
#endif
#if defined(WEFT_TSAN)
    if (!ctx.tsan_fiber) ctx.tsan_fiber = __tsan_create_fiber(0);
#endif
}

void destroy_context(exec_context& ctx) noexcept {
#if defined(WEFT_TSAN)
    if (ctx.tsan_fiber) __tsan_destroy_fiber(ctx.tsan_fiber);
#endif
    ctx = exec_context{};
}

}  // namespace weft::detail
