#include "diag/overflow.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "context/stack.hpp"
#include "sched/fiber.hpp"
#include "sched/worker.hpp"
#include "util/check.hpp"

namespace weft::detail {

namespace {

constexpr std::size_t altstack_size = 64 * 1024;
thread_local void* tls_altstack __attribute__((tls_model("initial-exec"))) = nullptr;
struct sigaction g_previous;  // written once before the handler is installed

// Async-signal-safe formatting.
std::size_t put(char* buf, std::size_t at, std::size_t cap, const char* s, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n && at + 1 < cap; ++i) buf[at++] = s[i];
    return at;
}
std::size_t put_str(char* buf, std::size_t at, std::size_t cap, const char* s) noexcept {
    return put(buf, at, cap, s, std::strlen(s));
}
std::size_t put_u64(char* buf, std::size_t at, std::size_t cap, std::uint64_t v) noexcept {
    char tmp[24];
    std::size_t n = 0;
    do {
        tmp[n++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v);
    while (n && at + 1 < cap) buf[at++] = tmp[--n];
    return at;
}

enum class overflow_sign {
    none,
    guard,     // the fault address is in the guard
    no_room,   // the kernel could not push a signal frame (SI_KERNEL) with sp near the bottom
    sp_below,  // the stack pointer is below the usable range: a frame larger than the guard
};

constexpr std::uintptr_t signal_frame_room = 16 * 1024;  // x86-64 frames: ~3.5 KiB with AVX-512 state, ~11 KiB with AMX

constexpr long trap_stack_segment = 12;        // #SS: a non-canonical stack address
constexpr long trap_general_protection = 13;  // #GP: a non-canonical address, a misaligned SSE access

/// O1/O2 (overflow.hpp): the precise signs first (the fault in f's guard, or no
/// room for a signal frame at f's bottom); `sp_below` only when `precise` is false.
overflow_sign sign_of(const fiber* f, std::uintptr_t addr, std::uintptr_t sp, int code, long trapno,
                      bool precise) noexcept {
    if (!f || !f->stk.map_base) return overflow_sign::none;
    const auto map_lo = reinterpret_cast<std::uintptr_t>(f->stk.map_base);
    const auto lo = reinterpret_cast<std::uintptr_t>(f->stk.lo());
    if (precise) {
        if (addr >= map_lo && addr < lo) return overflow_sign::guard;
        if (code == SI_KERNEL && trapno != trap_general_protection && trapno != trap_stack_segment && sp >= map_lo &&
            sp < lo + signal_frame_room)
            return overflow_sign::no_room;
        return overflow_sign::none;
    }
    constexpr std::uintptr_t slack = 1u << 20;
    return sp < lo && sp + slack >= map_lo ? overflow_sign::sp_below : overflow_sign::none;
}

[[noreturn]] void report(const fiber* f, overflow_sign sign) noexcept {
    char buf[512];
    std::size_t n = 0;
    n = put_str(buf, n, sizeof buf, "weft: fiber ");
    n = put_u64(buf, n, sizeof buf, f->id);
    n = put_str(buf, n, sizeof buf, " '");
    if (const std::string* name = f->name) n = put(buf, n, sizeof buf, name->data(), name->size());
    n = put_str(buf, n, sizeof buf, "' overflowed its ");
    n = put_u64(buf, n, sizeof buf, f->stk.size / 1024);
    n = put_str(buf, n, sizeof buf,
                sign == overflow_sign::guard   ? " KiB stack (fault at guard page; raise runtime_options::stack_size)\n"
                : sign == overflow_sign::no_room ? " KiB stack (no room left for a signal frame; raise "
                                                   "runtime_options::stack_size)\n"
                                                 : " KiB stack (a frame larger than the guard; raise "
                                                   "runtime_options::stack_size)\n");
    (void)!::write(2, buf, n);
    std::signal(SIGABRT, SIG_DFL);
    std::abort();
}

// O3: SA_RESETHAND on the earlier handler: the first forward uses it up.
std::atomic<bool> g_previous_used{false};

/// Is `addr` in the guard page below this thread's signal stack?
bool in_altstack_guard(std::uintptr_t addr) noexcept {
    const auto base = reinterpret_cast<std::uintptr_t>(tls_altstack);
    return base != 0 && addr >= base && addr < base + page_size();
}

void forward(int sig, siginfo_t* info, void* uctx) noexcept {
    const bool siginfo = (g_previous.sa_flags & SA_SIGINFO) != 0;
    // sa_handler shares its storage with sa_sigaction: SIG_DFL and SIG_IGN are
    // no handler whatever the flags say (SIG_IGN with SA_SIGINFO was called).
    const bool has_handler = g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN;
    // relaxed: one flag, and exchange makes exactly one fault its last user
    const bool reset = (g_previous.sa_flags & SA_RESETHAND) != 0;
    if (has_handler && !(reset && g_previous_used.exchange(true, std::memory_order_relaxed))) {
        // As the kernel would have run it: its sa_mask blocked as well, and
        // SIGSEGV itself unblocked under SA_NODEFER. Our mask comes back as we
        // return (the kernel restores uc_sigmask), but the handler may return to
        // us, so restore it here too. pthread_sigmask is async-signal-safe.
        sigset_t old;
        ::pthread_sigmask(SIG_BLOCK, &g_previous.sa_mask, &old);
        if (g_previous.sa_flags & SA_NODEFER) {
            sigset_t self;
            sigemptyset(&self);
            sigaddset(&self, sig);
            ::pthread_sigmask(SIG_UNBLOCK, &self, nullptr);
        }
        if (siginfo) g_previous.sa_sigaction(sig, info, uctx);
        else g_previous.sa_handler(sig);
        ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
        return;
    }
    // Here: no earlier handler, or an SA_RESETHAND one used up (its disposition
    // is now the default, so an ignored SIGSEGV is not what it was).
    // O3: a SIGSEGV sent by kill/tgkill (si_code <= 0) to a process that ignores it
    // stays ignored, as without weft, and our handler stays.
    const bool sent = info->si_code <= 0;
    if (!has_handler && g_previous.sa_handler == SIG_IGN && sent) return;
    // O3: the default action. A fault re-runs its instruction and faults again
    // once we return; a signal that was sent, or forced by the kernel (SI_KERNEL:
    // no room for a signal frame, a general protection fault), would not come
    // again: raise it anew. SIGSEGV is blocked while we run, so it is delivered as
    // we return, with its normal effect (a core dump).
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(SIGSEGV, &dfl, nullptr);
    if (sent || info->si_code == SI_KERNEL) ::raise(sig);
}

}  // namespace
}  // namespace weft::detail

extern "C" void weft_fiber_stack_overflow_detected(int sig, siginfo_t* info, void* uctx) {
    using namespace weft::detail;
    // A handler ran past the bottom of this thread's signal stack (an earlier
    // handler we forwarded to, with SA_NODEFER as ASan's has): the kernel puts
    // this frame at the top of that stack, over the frames still in use. Never
    // return into them: the default action, as the guard promises.
    if (info->si_code > 0 && in_altstack_guard(reinterpret_cast<std::uintptr_t>(info->si_addr))) {
        static const char msg[] = "weft: a signal handler overran its thread's signal stack\n";
        (void)!::write(2, msg, sizeof msg - 1);
        struct sigaction dfl;
        std::memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        ::sigaction(SIGSEGV, &dfl, nullptr);
        ::raise(SIGSEGV);  // delivered as we return (or at once under SA_NODEFER): the process dies
        return;
    }
    // A signal sent by another process or thread is never an overflow.
    if (info->si_code > 0) {
        if (worker* w = current_worker_for_signal()) {
            auto* uc = static_cast<ucontext_t*>(uctx);
            const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
            const auto sp = static_cast<std::uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
            const long trapno = static_cast<long>(uc->uc_mcontext.gregs[REG_TRAPNO]);
            // O2: the fiber being left owns the stack while its registers are saved,
            // though running() already names the next one.
            const fiber* const candidates[2] = {w->running(), w->switching_from()};
            for (const bool precise : {true, false})
                for (const fiber* f : candidates)
                    if (const overflow_sign s = sign_of(f, addr, sp, info->si_code, trapno, precise);
                        s != overflow_sign::none)
                        report(f, s);
        }
    }
    forward(sig, info, uctx);
}

namespace weft::detail {

void install_overflow_handler() noexcept {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa;
        std::memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = &weft_fiber_stack_overflow_detected;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        WEFT_CHECK(::sigaction(SIGSEGV, &sa, &g_previous) == 0);
    });
}

// The signal stack has its own guard page below it, as every fiber stack has:
// a handler that runs past its bottom (ours, or an earlier handler forward()
// calls on it) faults there instead of writing over whatever is mapped below.
// With SIGSEGV blocked, the kernel kills the process at once; with it
// unblocked (an earlier handler's SA_NODEFER) our handler runs again, sees the
// fault in the guard (in_altstack_guard) and takes the default action: a loud
// end either way, rather than a silent corruption.
void install_thread_altstack() noexcept {
    const std::size_t guard = page_size();
    void* p = ::mmap(nullptr, guard + altstack_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    WEFT_CHECK(p != MAP_FAILED);
    char* usable = static_cast<char*>(p) + guard;
    WEFT_CHECK(::mprotect(usable, altstack_size, PROT_READ | PROT_WRITE) == 0);
    stack_t ss;
    ss.ss_sp = usable;
    ss.ss_size = altstack_size;
    ss.ss_flags = 0;
    WEFT_CHECK(::sigaltstack(&ss, nullptr) == 0);
    tls_altstack = p;
}

void remove_thread_altstack() noexcept {
    if (!tls_altstack) return;
    stack_t ss;
    std::memset(&ss, 0, sizeof ss);
    ss.ss_flags = SS_DISABLE;
    WEFT_CHECK(::sigaltstack(&ss, nullptr) == 0);
    WEFT_CHECK(::munmap(tls_altstack, page_size() + altstack_size) == 0);
    tls_altstack = nullptr;
}

}  // namespace weft::detail
