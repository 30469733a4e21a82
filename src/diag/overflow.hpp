// Stack-overflow reports.
//
// A fiber that runs off its stack touches the guard page (context/stack.hpp)
// and takes SIGSEGV. The handler (weft_fiber_stack_overflow_detected) runs on
// a per-worker alternate signal stack (the fiber's own stack is exhausted),
// recognises an overflow of a fiber of this worker, writes
//   weft: fiber <id> '<name>' overflowed its <N> KiB stack (<how it showed>)
// with write(2), and aborts. Any other SIGSEGV is handed on unchanged (O3).
//
// Invariants.
//  O1 An overflow shows as one of: the fault address in the fiber's guard; a
//     fault the kernel forced (SI_KERNEL) because it found no room for a signal
//     frame, with the stack pointer inside the guard or in the bottom 16 KiB;
//     or, failing both for every candidate, a stack pointer below the usable
//     range by less than 1 MiB (a frame larger than the guard that faulted past
//     it). A signal another thread or process sent (si_code <= 0) is never one.
//     The kernel reports a general protection or stack-segment fault (a
//     misaligned SSE access, a non-canonical address) as SI_KERNEL too; its
//     trap number (13, 12; the no-room case carries the thread's last, usually
//     0) keeps it from being called an overflow, which a stale 13 could only
//     make a missed report. 16 KiB: a signal frame with AMX state is ~11 KiB.
//  O2 The candidates are the fiber running() names and, during a switch, the one
//     switching_from() names: between `current_ = next` and the jump the leaving
//     fiber's registers are still pushed onto its own stack (worker.hpp).
//  O3 Not an overflow: the earlier handler runs if there was one, as the
//     kernel would have run it: with its sa_mask blocked as well, SIGSEGV
//     unblocked under SA_NODEFER, only once under SA_RESETHAND (the first
//     fault to get there uses it up; later ones take the default action).
//     On our signal stack, whatever its SA_ONSTACK said. Otherwise the
//     default action is restored (the handler stays for an ignored, sent
//     SIGSEGV), and a signal that would not come again by returning (sent, or
//     SI_KERNEL) is raised anew, delivered as the handler returns: the process
//     dies as it would have without weft.
//  Frames larger than the guard that touch nothing in it can land in another
//  stack without a fault; the guard's default size and -fstack-clash-protection
//  (meson.build) are the defence (context/stack.hpp).
//
// Ownership: the handler reads only the faulting thread's own worker state
// (tls_worker, initial-exec TLS) and the candidates' immutable stack geometry
// and names (a name is written only by its fiber, here the one that faulted or
// the one whose registers were being saved). The plain fields current_ and
// pending_fiber_ are read on the thread that wrote them: a signal sees that
// thread's program order, and the "memory" clobber of the switch's asm keeps
// the stores ahead of the register pushes. pending_fiber_ is cleared after the
// switch, before the fiber it names can be unlocked, resumed elsewhere or
// freed, so it never names a fiber that is gone. No locks, no allocation:
// async-signal-safe.
//
// Lifecycle: install_overflow_handler() once per process (first runtime);
// install_thread_altstack()/remove_thread_altstack() per worker thread; each
// signal stack (64 KiB) has a guard page below it (overflow.cpp).
//
// Tested by test/death/stack_guard_death_test.cpp.
#pragma once
#include "util/private.hpp"

namespace weft::detail {

class worker;
worker* current_worker_for_signal() noexcept;

void install_overflow_handler() noexcept;
void install_thread_altstack() noexcept;
void remove_thread_altstack() noexcept;

}  // namespace weft::detail
