// WEFT_CHECK (always on: impossible syscall failures, broken invariants that
// would otherwise corrupt memory) and WEFT_ASSERT (debug only, side-effect free,
// never for API contracts). Fatal messages start with the function name.
#pragma once
#include "util/private.hpp"

#include <cerrno>

namespace weft::detail {
[[noreturn]] void check_failed(const char* func, const char* expr, const char* file, int line, int err) noexcept;
[[noreturn]] void fatal(const char* func, const char* msg) noexcept;
}  // namespace weft::detail

#define WEFT_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (__builtin_expect(!(cond), 0))                                                  \
            ::weft::detail::check_failed(__func__, #cond, __FILE__, __LINE__, errno);      \
    } while (0)

#ifdef NDEBUG
#define WEFT_ASSERT(cond) ((void)0)
#else
#define WEFT_ASSERT(cond) WEFT_CHECK(cond)
#endif
