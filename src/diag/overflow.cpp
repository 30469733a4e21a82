#include "diag/overflow.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

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

bool is_overflow(const fiber* f, std::uintptr_t addr, std::uintptr_t sp) noexcept {
    const auto map_lo = reinterpret_cast<std::uintptr_t>(f->stk.map_base);
    const auto lo = reinterpret_cast<std::uintptr_t>(f->stk.lo());
    if (addr >= map_lo && addr < lo) return true;  // in the guard
    // A frame larger than the guard can jump past it; the stack pointer tells.
    constexpr std::uintptr_t slack = 1u << 20;
    return sp < lo && sp + slack >= map_lo;
}

void forward(int sig, siginfo_t* info, void* uctx) noexcept {
    if (g_previous.sa_flags & SA_SIGINFO) {
        if (g_previous.sa_sigaction) {
            g_previous.sa_sigaction(sig, info, uctx);
            return;
        }
    } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
        g_previous.sa_handler(sig);
        return;
    }
    // Default action: restore it and return; the faulting instruction runs again
    // and the kernel delivers the signal with its normal effect (core dump).
    ::sigaction(SIGSEGV, &g_previous, nullptr);
}

}  // namespace
}  // namespace weft::detail

extern "C" void weft_fiber_stack_overflow_detected(int sig, siginfo_t* info, void* uctx) {
    using namespace weft::detail;
    worker* w = current_worker_for_signal();
    fiber* f = w ? w->running() : nullptr;
    if (f && f->stk.map_base) {
        auto* uc = static_cast<ucontext_t*>(uctx);
        const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
        const auto sp = static_cast<std::uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
        if (is_overflow(f, addr, sp)) {
            char buf[512];
            std::size_t n = 0;
            n = put_str(buf, n, sizeof buf, "weft: fiber ");
            n = put_u64(buf, n, sizeof buf, f->id);
            n = put_str(buf, n, sizeof buf, " '");
            if (const std::string* name = f->name) n = put(buf, n, sizeof buf, name->data(), name->size());
            n = put_str(buf, n, sizeof buf, "' overflowed its ");
            n = put_u64(buf, n, sizeof buf, f->stk.size / 1024);
            n = put_str(buf, n, sizeof buf, " KiB stack (fault at guard page; raise runtime_options::stack_size)\n");
            (void)!::write(2, buf, n);
            std::signal(SIGABRT, SIG_DFL);
            std::abort();
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

void install_thread_altstack() noexcept {
    void* p = ::mmap(nullptr, altstack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WEFT_CHECK(p != MAP_FAILED);
    stack_t ss;
    ss.ss_sp = p;
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
    WEFT_CHECK(::munmap(tls_altstack, altstack_size) == 0);
    tls_altstack = nullptr;
}

}  // namespace weft::detail
