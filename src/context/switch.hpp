// Context switching: Boost.Context's fcontext, annotated for ASan and TSan.
//
// Vocabulary. An exec_context is a place execution can be suspended and
// resumed: a fiber (on its mmap'd stack) or a worker's scheduler loop (on the
// worker thread's own stack). switch_to(from, to, data) saves `from` and
// resumes `to`; `data` arrives on the other side in the returned transfer.
//
// Protocol (the "unlock after switch" rule lives on top of this, in
// sched/worker.hpp): jump_fcontext hands the *resumed* side the saved context
// of the side that left (transfer.fctx). Only the resumed side may store it
// into the leaver's exec_context, and only after that may anything publish
// the leaver (requeue it, release a lock that guards its waiter entry).
// Until then no other thread can resume it, because nobody has its fctx.
//
// Ownership. An exec_context is touched only by the thread currently
// switching into or out of it; hand-over between threads happens through the
// run queues, whose release/acquire pairs publish fctx (sched/deque.hpp I2).
//
// Sanitizers. ASan: __sanitizer_start_switch_fiber before every jump (with a
// null fake-stack slot when the leaver is exiting, so its fake stack is freed),
// __sanitizer_finish_switch_fiber right after every resumption, including a
// fiber's first entry. TSan: every fiber gets __tsan_create_fiber at creation,
// __tsan_switch_to_fiber before every jump (flags 0: the switch is a
// synchronisation point, as it is for us), __tsan_destroy_fiber after exit.
// Without sanitizers every hook compiles to nothing.
//
// Entering jump_fcontext. Boost's jump_fcontext leaves by `pop %r8; jmp *%r8`
// instead of `ret`, so a plain `call` to it pushes a return-stack-buffer entry
// that is never popped: every later `ret` in the resumed fiber is then predicted
// from a stale entry and mispredicts (measured here: 14.5 ns per switch instead
// of 4.9 ns). enter_jump() pushes the return address itself and enters with
// `jmp`, which keeps the RSB balanced; jump_fcontext pops that address exactly
// as it would pop a call's. It stays Boost.Context's own switch routine, with
// its register and FPU-control-word saving; only the way we enter it differs.
// x86-64 System V only (the platform weft supports); the 128-byte step over the
// red zone protects a leaf caller's locals from the push.
//
// Exception state. The C++ runtime keeps, per thread, the stack of exceptions
// being handled and the count of those in flight (Itanium C++ ABI 2.2.2:
// __cxa_eh_globals, returned by __cxa_get_globals). A fiber that blocks inside
// a catch handler, or in a destructor run by unwinding, and resumes on another
// thread - or lets another fiber catch on this one meanwhile - would find
// another context's state: `throw;` terminated with "no active exception" and
// std::uncaught_exceptions() lied (found when scope::join() rethrew from a
// catch block after waiting in it). So the state belongs to the exec_context: switch_to
// saves the thread's into `from` and installs `to`'s before the jump, on the
// thread `to` then runs on (X1). A fresh context starts with none. The worker
// passes its thread's record (cached at start: its address is fixed per
// thread). Cost: two 16-byte copies per switch.
//
// Rejected: boost::context::fiber (allocates its control block on the stack
// and hides the transfer, so the unlock-after-switch hook needs ontop_fcontext:
// one more indirect call per switch); ucontext (a syscall per switch).
//
// Tested by test/api/* under -Db_sanitize=address,undefined and thread.
#pragma once
#include "util/private.hpp"

#include <cstddef>

#include <boost/context/detail/fcontext.hpp>

#include <weft/config.hpp>

#if defined(WEFT_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(WEFT_TSAN)
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_set_fiber_name(void* fiber, const char* name);
}
#endif

namespace weft::detail {

namespace bctx = boost::context::detail;
using transfer = bctx::transfer_t;

#if defined(WEFT_ASAN) || defined(WEFT_TSAN)
#define WEFT_SANITIZED_SWITCH 1
#endif

/// The Itanium C++ ABI's __cxa_eh_globals (2.2.2), which <cxxabi.h> leaves
/// opaque: the caught-exception stack and the uncaught count. (ARM EHABI adds
/// a field; weft is x86-64 only, below.)
struct eh_state {
    void* caught = nullptr;
    unsigned int uncaught = 0;
};

/// This thread's record (a fixed address per thread).
eh_state* thread_eh_state() noexcept;

struct exec_context {
    bctx::fcontext_t fctx = nullptr;  // valid while suspended
    eh_state eh;                      // X1: the context's exception state while suspended
#if WEFT_SANITIZED_SWITCH  // 8 bytes otherwise: it lives in every fiber object
    const void* stack_lo = nullptr;   // usable stack range, for ASan
    std::size_t stack_size = 0;
    void* asan_fake_stack = nullptr;  // ASan's fake-stack handle saved while suspended
    void* tsan_fiber = nullptr;       // TSan's fiber handle
#endif
};

/// Records the calling thread's own stack as `ctx` (a worker's scheduler context).
void init_thread_context(exec_context& ctx) noexcept;

/// Makes `ctx` start `entry` on the stack [lo, lo + size) at its first resumption.
void make_context(exec_context& ctx, void* lo, std::size_t size, void (*entry)(transfer)) noexcept;

/// Releases sanitizer state of a context that exited (call from another context).
void destroy_context(exec_context& ctx) noexcept;

/// First thing a fiber's entry function does.
inline void enter_first_time() noexcept {
#if defined(WEFT_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
}

#if !defined(__x86_64__)
#error "weft's context switch (enter_jump) is written for x86-64 System V"
#endif

/// jump_fcontext(to, data), entered by jmp with a pushed return address (see above).
/// Clobbers what a call would: every caller-saved register; callee-saved ones
/// come back as they were when this context left, restored by jump_fcontext.
inline __attribute__((always_inline)) transfer enter_jump(bctx::fcontext_t to, void* data) noexcept {
    register void* rdi asm("rdi") = to;
    register void* rsi asm("rsi") = data;
    register void* rax asm("rax");
    register void* rdx asm("rdx");
    asm volatile(
        "sub $128, %%rsp\n\t"
        "lea 1f(%%rip), %%rax\n\t"
        "push %%rax\n\t"
        "jmp jump_fcontext@PLT\n"
        "1:\n\t"
        "add $128, %%rsp\n\t"
        : "=r"(rax), "=r"(rdx), "+r"(rdi), "+r"(rsi)
        :
        : "rcx", "r8", "r9", "r10", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
          "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st", "st(1)", "st(2)",
          "st(3)", "st(4)", "st(5)", "st(6)", "st(7)"
#if defined(__AVX512F__)  // caller-saved as well where the compiler may use them
          ,
          "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27",
          "xmm28", "xmm29", "xmm30", "xmm31", "k1", "k2", "k3", "k4", "k5", "k6", "k7"
#endif
    );
    return transfer{rax, rdx};
}

/// Saves `from`, resumes `to`. Returns when something switches back to `from`.
/// `from_exiting`: `from` will never be resumed (its sanitizer state is dropped).
inline transfer switch_to(exec_context& from, exec_context& to, void* data, eh_state* thread_eh,
                          bool from_exiting = false) noexcept {
    from.eh = *thread_eh;  // X1
    *thread_eh = to.eh;
#if defined(WEFT_ASAN)
    __sanitizer_start_switch_fiber(from_exiting ? nullptr : &from.asan_fake_stack, to.stack_lo, to.stack_size);
#endif
#if defined(WEFT_TSAN)
    __tsan_switch_to_fiber(to.tsan_fiber, 0);
#endif
    (void)from_exiting;
    transfer t = enter_jump(to.fctx, data);
#if defined(WEFT_ASAN)
    __sanitizer_finish_switch_fiber(from.asan_fake_stack, nullptr, nullptr);
#endif
    (void)from;
    return t;
}

}  // namespace weft::detail
