// weft::shared_mutex misuse that std leaves undefined aborts with a message.
#include <csignal>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

TEST(SharedMutexDeathTest, UnlockSharedWithoutReaderAborts) {
    EXPECT_EXIT(
        {
            weft::shared_mutex m;
            m.unlock_shared();
        },
        testing::KilledBySignal(SIGABRT), "unlock_shared\\(\\) with no reader inside");
}

TEST(SharedMutexDeathTest, UnlockByNonWriterAborts) {
    EXPECT_EXIT(
        {
            weft::shared_mutex m;
            m.lock_shared();
            m.unlock();
        },
        testing::KilledBySignal(SIGABRT), "does not hold it exclusively");
}
