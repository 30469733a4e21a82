// Misuse of a runtime that cannot be reported by an exception.
#include <csignal>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

// shutdown() from one of the runtime's own fibers would wait for itself; the
// header promises an abort with a message. The style guide makes fatal
// messages start with the function name.
TEST(RuntimeDeathTest, ShutdownFromItsOwnFiberAborts) {
    EXPECT_EXIT(
        {
            weft::runtime rt(weft::runtime_options{.workers = 1});
            rt.block_on([&rt] { rt.shutdown(); });
        },
        testing::KilledBySignal(SIGABRT), "shutdown");
}
