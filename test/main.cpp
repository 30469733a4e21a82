// GoogleTest entry point shared by every weft test executable.
#include <gtest/gtest.h>

int main(int argc, char** argv) {
    // Runtimes start worker threads, so a death test must not fork() a copy
    // of a multi-threaded process: "threadsafe" re-executes the binary and
    // runs only the dying statement in the child. Set before
    // InitGoogleTest so that --gtest_death_test_style can still override it.
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
