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

// Regression: the last reference of a detached fiber used to be dropped in the
// exit hook, so its result's destructor ran on the next fiber's stack (here
// ~jthread joined from the wrong fiber: "a fiber cannot join itself"). Result
// destructors now run on the fiber's own stack or the handle owner's thread.
TEST(RuntimeDeathTest, RegressionDetachedResultIsDestroyedOnItsOwnFiber) {
    EXPECT_EXIT(
        {
            weft::runtime rt(weft::runtime_options{.workers = 1});
            rt.block_on([] {
                weft::spawn([] { return weft::jthread([](std::stop_token) {}); }).detach();
                weft::this_fiber::yield();
            });
            rt.shutdown();
            std::exit(0);
        },
        testing::ExitedWithCode(0), "");
}
