// Stack-overflow reports.
//
// A fiber that runs off its stack touches the guard page (context/stack.hpp)
// and takes SIGSEGV. The handler (weft_fiber_stack_overflow_detected) runs on
// a per-worker alternate signal stack (the fiber's own stack is exhausted),
// recognises a fault in — or a stack pointer below — the running fiber's
// usable range, writes
//   weft: fiber <id> '<name>' overflowed its <N> KiB stack
// with write(2), and aborts. Any other fault is handed to the handler that
// was installed before ours (or the default action), unchanged.
//
// Ownership: the handler reads only the faulting thread's own worker state
// (tls_worker, initial-exec TLS) and the running fiber's immutable stack
// geometry and name (the name is written only by that fiber, which is the one
// that faulted). No locks, no allocation: async-signal-safe.
//
// Lifecycle: install_overflow_handler() once per process (first runtime);
// install_thread_altstack()/remove_thread_altstack() per worker thread.
//
// Tested by test/death/overflow_test.cpp.
#pragma once
#include "util/private.hpp"

namespace weft::detail {

class worker;
worker* current_worker_for_signal() noexcept;

void install_overflow_handler() noexcept;
void install_thread_altstack() noexcept;
void remove_thread_altstack() noexcept;

}  // namespace weft::detail
