// weft::fiber_local (include/weft/fiber_local.hpp): each fiber has its own
// value, at the same address across yields, sleeps and migrations; values
// are destroyed when their fiber ends, before join() returns, and a plain
// thread's at its exit; the initialiser runs on the accessing fiber and a
// throwing one stores nothing; destructors may block and touch other
// fiber_locals (newest first, older ones alive), also on a cancelled fiber;
// a scope's, with_timeout's and async's waiters see the values gone; a
// thread_local destructor may touch one after the thread's table is gone; a
// fiber_local destroyed first leaves the values to their fibers. Public API
// only (weft_dep).
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

// RuntimeTest is instantiated over 1, 2 and 4 workers once for this
// executable, in runtime_test.cpp.

using namespace std::chrono_literals;
using weft_test::scaled;

namespace {
struct counted {
    std::atomic<int>* destroyed;
    int value = 0;
    explicit counted(std::atomic<int>* d) : destroyed(d) {}
    ~counted() { destroyed->fetch_add(1); }
};
}  // namespace

TEST_P(RuntimeTest, FiberLocalIsPerFiberAndStableAcrossMigrations) {
    const int fibers = static_cast<int>(scaled(200));
    weft::fiber_local<int> n;
    std::atomic<int> wrong{0};
    rt.block_on([&] {
        std::vector<weft::join_handle<void>> hs;
        for (int i = 0; i < fibers; ++i)
            hs.push_back(weft::spawn([&, i] {
                int* first = &n.get();
                if (*first != 0) wrong.fetch_add(1);  // value-initialised
                for (int k = 0; k < 20; ++k) {
                    ++*n;
                    if (k % 2) weft::this_fiber::yield();
                    else weft::this_fiber::sleep_for(20us);
                    if (&n.get() != first) wrong.fetch_add(1);
                }
                if (n.get() != 20) wrong.fetch_add(1);
                (void)i;
            }));
        for (auto& h : hs) h.join();
        EXPECT_EQ(n.get(), 0) << "the parent fiber has its own value";
    });
    EXPECT_EQ(wrong.load(), 0);
}

TEST_P(RuntimeTest, FiberLocalValuesDieWithTheirFiberBeforeJoinReturns) {
    std::atomic<int> destroyed{0};
    weft::fiber_local<counted> c([&] { return counted(&destroyed); });
    rt.block_on([&] {
        auto h = weft::spawn([&] {
            c->value = 7;
            weft::this_fiber::sleep_for(1ms);
            return c->value;
        });
        EXPECT_EQ(h.join(), 7);
        // The initialiser's temporary was destroyed too: one per make, one per fiber.
        EXPECT_EQ(destroyed.load(), 2);
        auto untouched = weft::spawn([] {});
        untouched.join();
        EXPECT_EQ(destroyed.load(), 2) << "a fiber that never touched it makes none";
    });
}

TEST_P(RuntimeTest, FiberLocalInitialiserRunsOnTheFiberAndAThrowStoresNothing) {
    std::atomic<int> calls{0};
    weft::fiber_local<std::string> who([&]() -> std::string {
        if (calls.fetch_add(1) == 0) throw std::runtime_error("first init fails");
        return "fiber " + std::to_string(weft::this_fiber::get_id() == weft::fiber_id{} ? 0 : 1);
    });
    rt.block_on([&] {
        EXPECT_THROW((void)who.get(), std::runtime_error);
        EXPECT_EQ(who.get(), "fiber 1") << "retried, on the fiber";
        EXPECT_EQ(calls.load(), 2);
    });
}

TEST_P(RuntimeTest, FiberLocalOnAPlainThreadDiesAtThreadExit) {
    std::atomic<int> destroyed{0};
    weft::fiber_local<counted> c([&] { return counted(&destroyed); });
    std::thread t([&] {
        c->value = 3;
        EXPECT_EQ(c->value, 3);
    });
    t.join();
    EXPECT_EQ(destroyed.load(), 2);  // the initialiser's temporary and the thread's value
    rt.block_on([&] { EXPECT_EQ(c->value, 0) << "a fiber does not see a thread's value"; });
}

TEST_P(RuntimeTest, FiberLocalDestructorsMayBlockAndTouchOtherFiberLocals) {
    std::atomic<int> destroyed{0};
    weft::fiber_local<counted> inner([&] { return counted(&destroyed); });
    struct blocks {
        weft::fiber_local<counted>* inner;
        bool armed = false;  // the initialiser's temporary does nothing
        ~blocks() {
            if (!armed) return;
            weft::this_fiber::sleep_for(200us);  // parks, may migrate
            (*inner)->value = 1;                  // a new value: destroyed in the next round
        }
    };
    weft::fiber_local<blocks> outer([&] { return blocks{&inner}; });
    rt.block_on([&] {
        weft::spawn([&] { outer->armed = true; }).join();
        EXPECT_EQ(destroyed.load(), 2);  // inner's temporary and its value, made in round 1
    });
}

TEST_P(RuntimeTest, FiberLocalDestroyedFirstLeavesTheValuesToTheirFibers) {
    std::atomic<int> destroyed{0};
    std::atomic<bool> go{false};
    weft::join_handle<void> h;
    {
        weft::fiber_local<counted> c([&] { return counted(&destroyed); });
        h = rt.spawn([&c, &go] {
            c->value = 1;
            while (!go.load()) weft::this_fiber::sleep_for(100us);
        });
        ASSERT_TRUE(weft_test::eventually([&] { return destroyed.load() == 1; }));  // the temporary
    }
    go = true;
    h.join();
    EXPECT_EQ(destroyed.load(), 2);
}

// From a review: a scope child's and an async's values are gone when the
// parent sees the child end (as std::async destroys thread_locals first).
TEST_P(RuntimeTest, FiberLocalValuesDieBeforeAScopeOrAnAsyncSeesTheEnd) {
    std::atomic<int> destroyed{0};
    weft::fiber_local<counted> c([&] { return counted(&destroyed); });
    rt.block_on([&] {
        const int base = destroyed.load();
        {
            weft::scope s;
            s.spawn([&] { c->value = 1; });
            s.join();
            EXPECT_EQ(destroyed.load() - base, 2) << "scope::join";
        }
        EXPECT_EQ(weft::with_timeout(5s, [&] { return c->value = 2; }), 2);
        EXPECT_EQ(destroyed.load() - base, 4) << "with_timeout";
        auto f = weft::async([&] { return c->value = 3; });
        EXPECT_EQ(f.get(), 3);
        EXPECT_EQ(destroyed.load() - base, 6) << "async's future";
    });
}

// From a review: a destructor sees the older values alive (newest first, one
// at a time), and may block although the fiber was cancelled.
TEST_P(RuntimeTest, FiberLocalDestructorsSeeOlderValuesAndBlockWhenCancelled) {
    std::atomic<int> seen{-1};
    std::atomic<bool> slept{false};
    weft::fiber_local<int> older;
    struct reads_older {
        weft::fiber_local<int>* older;
        std::atomic<int>* seen;
        std::atomic<bool>* slept;
        bool armed = false;
        ~reads_older() {
            if (!armed) return;
            weft::this_fiber::sleep_for(200us);  // the fiber is cancelled: must not throw
            {
                weft::scope cleanup;  // nor may its scopes stop their children
                cleanup.spawn([this] {
                    weft::this_fiber::sleep_for(100us);
                    slept->store(true);
                });
            }
            seen->store(older->get());
        }
    };
    weft::fiber_local<reads_older> newer([&] { return reads_older{&older, &seen, &slept}; });
    rt.block_on([&] {
        weft::scope s;
        s.spawn([&] {
            older.get() = 42;
            newer->armed = true;
            weft::channel<int>(0).recv();  // parked until the stop
        });
        weft::this_fiber::sleep_for(1ms);
        s.request_stop();
        s.join();
    });
    EXPECT_TRUE(slept.load());
    EXPECT_EQ(seen.load(), 42);
}

// From a review: a thread_local destructor that touches a fiber_local after
// the thread's table is gone still gets its value destroyed (L4).
TEST_P(RuntimeTest, FiberLocalTouchedByAThreadLocalDestructorIsStillDestroyed) {
    static std::atomic<int> destroyed{0};
    static weft::fiber_local<counted>* fl = nullptr;
    destroyed = 0;
    weft::fiber_local<counted> c([] { return counted(&destroyed); });
    fl = &c;
    struct late_user {
        bool armed = false;
        ~late_user() {
            if (armed) (*fl)->value = 5;
        }
    };
    std::thread t([] {
        (void)fl->get();           // the table's thread_local is made first...
        thread_local late_user u;  // ...so u's destructor runs while the table lives
        u.armed = true;
    });
    t.join();
    EXPECT_EQ(destroyed.load(), 2) << "the one value (and its initialiser's temporary)";
    std::thread t2([] {
        thread_local late_user u;  // made before the table: destroyed after it (L4)
        u.armed = true;
        (void)fl->get();
    });
    t2.join();
    EXPECT_EQ(destroyed.load(), 6) << "both values of t2, each with its temporary";
}

// From a review: the destructor of a detached fiber's result runs on the
// fiber after its values, with its waits uncancellable (fiber.hpp F8), also
// when the fiber ends during shutdown. Before, its sleep threw out of the
// destructor and terminated the process.
TEST(FiberLocalShutdown, AResultsDestructorMayBlockWhileTheRuntimeShutsDown) {
    static std::atomic<bool> slept{false};
    struct blocks_on_destruction {
        bool armed = true;
        blocks_on_destruction() = default;
        blocks_on_destruction(blocks_on_destruction&& o) noexcept { o.armed = false; }
        ~blocks_on_destruction() {
            if (!armed) return;
            weft::this_fiber::sleep_for(1ms);
            slept = true;
        }
    };
    std::atomic<bool> go{false};
    std::atomic<bool> running{false};
    {
        weft::runtime other(weft::runtime_options{.workers = 1});
        other.spawn([&] {
            running = true;
            while (!go.load()) {
            }  // no cancellation point: it returns its value during shutdown
            return blocks_on_destruction{};
        }).detach();
        ASSERT_TRUE(weft_test::eventually([&] { return running.load(); }));
        std::thread releaser([&] {
            std::this_thread::sleep_for(20ms);  // shutdown() has begun
            go = true;
        });
        other.shutdown();
        releaser.join();
    }
    EXPECT_TRUE(slept.load());
}
