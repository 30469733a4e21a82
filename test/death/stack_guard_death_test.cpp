// Guard pages: a fiber that overflows its stack is reported by name and stack
// size; any other segfault on a fiber is not mistaken for an overflow.
#include <sys/wait.h>

#include <climits>
#include <csignal>
#include <ostream>
#include <string>
#include <utility>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif

// Read through a volatile so the compiler can prove neither that the
// recursion is infinite (-Winfinite-recursion) nor that it ends.
volatile int depth_limit = INT_MAX;

/// 1 KiB of stack per frame; the addition after the call defeats tail calls.
[[gnu::noinline]] int recurse(int depth) {
    volatile char buf[1024];
    buf[0] = static_cast<char>(depth);
    buf[sizeof buf - 1] = buf[0];
    if (depth >= depth_limit) return buf[0];
    return recurse(depth + 1) + buf[sizeof buf - 1];
}

int overflow_as(const char* name) {
    weft::this_fiber::set_name(name);
    return recurse(0);
}

/// Matches death-test output that does not contain `needle`.
class not_containing : public testing::MatcherInterface<const std::string&> {
public:
    explicit not_containing(std::string needle) : needle_(std::move(needle)) {}
    bool MatchAndExplain(const std::string& out, testing::MatchResultListener*) const override {
        return out.find(needle_) == std::string::npos;
    }
    void DescribeTo(std::ostream* os) const override { *os << "does not contain \"" << needle_ << '"'; }
    void DescribeNegationTo(std::ostream* os) const override { *os << "contains \"" << needle_ << '"'; }

private:
    std::string needle_;
};

testing::Matcher<const std::string&> not_contains(std::string needle) {
    return testing::MakeMatcher(new not_containing(std::move(needle)));
}

/// Killed by SIGSEGV. Under a sanitizer, the library chains an unrelated
/// fault to the sanitizer's handler, which reports it and then exits or
/// aborts (meson sets abort_on_error=1), so any abnormal end is accepted.
bool died_of_segv(int status) {
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) return true;
    if (sanitized) return WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
    return false;
}

}  // namespace

TEST(StackGuardDeathTest, OverflowReportsFiberNameAndStackSize) {
    EXPECT_DEATH(
        {
            weft::runtime rt(weft::runtime_options{.workers = 1, .stack_size = 64 * 1024});
            rt.block_on(overflow_as, "deep");
        },
        "weft: fiber [0-9]+ 'deep' overflowed its 64 KiB stack");
}

TEST(StackGuardDeathTest, OverflowIsReportedOnAnyWorker) {
    // Spawned from a plain thread onto four workers: whichever worker runs it
    // must have the alternate signal stack the handler needs.
    EXPECT_DEATH(
        {
            weft::runtime rt(weft::runtime_options{.workers = 4, .stack_size = 128 * 1024, .guard_pages = 4});
            rt.spawn(overflow_as, "deep").join();
        },
        "weft: fiber [0-9]+ 'deep' overflowed its 128 KiB stack");
}

TEST(StackGuardDeathTest, OverflowOfADefaultRuntimeThreadIsReported) {
    EXPECT_DEATH(
        {
            weft::thread t(overflow_as, "deepthread");
            t.join();
        },
        "weft: fiber [0-9]+ 'deepthread' overflowed its [0-9]+ KiB stack");
}

TEST(StackGuardDeathTest, NullWriteDiesOfSegvWithoutAnOverflowReport) {
    EXPECT_EXIT(
        {
            weft::runtime rt(weft::runtime_options{.workers = 1, .stack_size = 64 * 1024});
            rt.block_on([] {
                weft::this_fiber::set_name("nullwriter");
                // Both volatile: the pointer so the compiler cannot see the null
                // (no __builtin_trap), the store so it cannot drop it as dead.
                volatile int* volatile p = nullptr;
                *p = 42;
            });
        },
        died_of_segv, not_contains("overflowed"));
}
