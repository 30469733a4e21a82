/// @file
/// Build-level macros shared by every public header.
///
/// Thread-safety classes used throughout the public headers:
///  - *thread-safe*: may be called concurrently from any fiber or plain OS thread.
///  - *fiber-safe*: may be called from any fiber or plain OS thread, but not
///    concurrently on the same object (like most std types).
///  - *worker-bound*: only from a fiber running on a weft worker.
///
/// "May suspend" means the call can park the calling fiber (the worker runs
/// other fibers meanwhile); on a plain OS thread the same call blocks the thread.
#pragma once

#if defined(_WIN32)
#error "weft supports Linux only"
#endif

#if __cplusplus < 201709L  // GCC 10 gives 201709L under -std=c++20
#error "weft needs C++20: compile with -std=c++20 (meson: default_options : ['cpp_std=c++20'])"
#endif

#define WEFT_API __attribute__((visibility("default")))

#if defined(__SANITIZE_ADDRESS__)
#define WEFT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define WEFT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT_TSAN 1
#endif
#endif
