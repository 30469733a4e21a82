// weft::promise / future / shared_future / packaged_task / async: results of
// every kind (value, void, reference, move-only), exceptions, broken_promise,
// every future_errc misuse, timed waits, many waiters (fibers and plain
// threads at once), async from fibers and plain threads and its waiting
// destructor, launch::deferred, and cancellation by runtime shutdown.
// Public API only (weft_dep).
#include <atomic>
#include <chrono>
#include <cstddef>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <weft/future.hpp>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

using namespace std::chrono_literals;
using weft_test::eventually;
using weft_test::scaled;
using weft_test::yield_until;
using clk = std::chrono::steady_clock;

namespace {

class FutureTest : public RuntimeTest {};

INSTANTIATE_TEST_SUITE_P(Workers, FutureTest, testing::Values(1, 2, 4), worker_count_name);

/// Runs `f` and returns the future_errc of the std::future_error it throws
/// (a test failure if it throws nothing or something else).
template <class F>
std::error_code errc_of(F&& f) {
    try {
        f();
    } catch (const std::future_error& e) {
        return e.code();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "threw something else: " << e.what();
        return {};
    }
    ADD_FAILURE() << "did not throw";
    return {};
}

std::error_code code(std::future_errc e) { return std::make_error_code(e); }

// ------------------------------------------------------------ result kinds

TEST_P(FutureTest, ValueSetByAnotherFiberReachesGet) {
    rt.block_on([] {
        weft::promise<int> p;
        weft::future<int> f = p.get_future();
        EXPECT_TRUE(f.valid());
        auto setter = weft::spawn([&p] {
            weft::this_fiber::sleep_for(5ms);  // the getter is most likely parked by now
            p.set_value(42);
        });
        EXPECT_EQ(f.get(), 42);
        EXPECT_FALSE(f.valid());
        setter.join();
    });
}

TEST_P(FutureTest, VoidReferenceAndMoveOnlyResults) {
    rt.block_on([] {
        weft::promise<void> pv;
        weft::future<void> fv = pv.get_future();
        weft::promise<int&> pr;
        weft::future<int&> fr = pr.get_future();
        weft::promise<std::unique_ptr<int>> pm;
        weft::future<std::unique_ptr<int>> fm = pm.get_future();
        int target = 1;
        auto setter = weft::spawn([&] {
            weft::this_fiber::yield();
            pv.set_value();
            pr.set_value(target);
            pm.set_value(std::make_unique<int>(9));
        });
        fv.get();
        int& ref = fr.get();
        EXPECT_EQ(&ref, &target);
        ref = 5;
        EXPECT_EQ(target, 5);
        std::unique_ptr<int> up = fm.get();
        ASSERT_NE(up, nullptr);
        EXPECT_EQ(*up, 9);
        setter.join();
    });
}

TEST_P(FutureTest, LvalueSetValueCopies) {
    rt.block_on([] {
        weft::promise<std::string> p;
        auto f = p.get_future();
        const std::string s = "copied";
        p.set_value(s);
        EXPECT_EQ(s, "copied");
        EXPECT_EQ(f.get(), "copied");
    });
}

TEST_P(FutureTest, PlainThreadSetsWhileFiberWaits) {
    weft::promise<int> p;
    weft::future<int> f = p.get_future();
    std::atomic<bool> waiting{false};
    auto getter = rt.spawn([&] {
        waiting = true;
        return f.get();
    });
    ASSERT_TRUE(eventually([&] { return waiting.load(); }));
    std::this_thread::sleep_for(5ms);
    std::thread setter([&] { p.set_value(7); });
    EXPECT_EQ(getter.join(), 7);
    setter.join();
}

TEST_P(FutureTest, FiberSetsWhilePlainThreadWaits) {
    weft::promise<std::unique_ptr<int>> p;
    weft::future<std::unique_ptr<int>> f = p.get_future();
    auto setter = rt.spawn([&] {
        weft::this_fiber::sleep_for(5ms);
        p.set_value(std::make_unique<int>(3));
    });
    std::unique_ptr<int> v = f.get();  // this plain thread sleeps on the futex
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(*v, 3);
    setter.join();
}

TEST_P(FutureTest, ManyPairsAcrossFibersAndThreads) {
    const std::size_t n = scaled(2000);
    std::vector<weft::promise<std::size_t>> ps(n);
    std::vector<weft::future<std::size_t>> fs;
    for (auto& p : ps) fs.push_back(p.get_future());
    std::atomic<std::size_t> sum{0};
    // Even indices: fiber getters; odd: a plain thread gets them. Setters: half
    // from fibers, half from a plain thread, so every combination meets.
    std::vector<weft::join_handle<void>> getters;
    for (std::size_t i = 0; i < n; i += 2)
        getters.push_back(rt.spawn([&, i] { sum += fs[i].get(); }));
    std::thread thread_getter([&] {
        for (std::size_t i = 1; i < n; i += 2) sum += fs[i].get();
    });
    std::thread thread_setter([&] {
        for (std::size_t i = 0; i < n; i += 4) ps[i].set_value(i);
        for (std::size_t i = 1; i < n; i += 4) ps[i].set_value(i);
    });
    std::vector<weft::join_handle<void>> setters;
    for (std::size_t i = 2; i < n; i += 4) setters.push_back(rt.spawn([&, i] { ps[i].set_value(i); }));
    for (std::size_t i = 3; i < n; i += 4) setters.push_back(rt.spawn([&, i] { ps[i].set_value(i); }));
    for (auto& h : getters) h.join();
    for (auto& h : setters) h.join();
    thread_getter.join();
    thread_setter.join();
    EXPECT_EQ(sum.load(), n * (n - 1) / 2);
}

// ------------------------------------------------------------ exceptions and broken promises

TEST_P(FutureTest, ExceptionPropagatesThroughGet) {
    rt.block_on([] {
        weft::promise<int> p;
        auto f = p.get_future();
        auto setter = weft::spawn([&] { p.set_exception(std::make_exception_ptr(std::runtime_error("boom"))); });
        try {
            (void)f.get();
            ADD_FAILURE() << "get() did not throw";
        } catch (const std::runtime_error& e) {
            EXPECT_STREQ(e.what(), "boom");
        }
        EXPECT_FALSE(f.valid());  // get() consumed the state, as std
        setter.join();

        weft::promise<void> pv;
        auto fv = pv.get_future().share();
        pv.set_exception(std::make_exception_ptr(std::logic_error("again")));
        for (int i = 0; i < 2; ++i) EXPECT_THROW(fv.get(), std::logic_error);  // every get() rethrows
        EXPECT_TRUE(fv.valid());
    });
}

TEST_P(FutureTest, PromiseDestroyedWithoutValueBreaksIt) {
    // A waiter parked in get() is woken by the destruction.
    weft::future<int> f;
    {
        auto p = std::make_unique<weft::promise<int>>();
        f = p->get_future();
        auto getter = rt.spawn([&] { return errc_of([&] { (void)f.get(); }); });
        ASSERT_TRUE(eventually([&] { return rt.stats().fibers_parked >= 1; })) << rt.dump_json();
        p.reset();
        EXPECT_EQ(getter.join(), code(std::future_errc::broken_promise));
    }
    // A promise that already has a value is not broken by its destruction.
    weft::future<int> g;
    {
        weft::promise<int> p;
        g = p.get_future();
        p.set_value(1);
    }
    EXPECT_EQ(g.get(), 1);
    // Nor is a promise moved from: the state moves with it.
    weft::promise<int> q;
    auto h = q.get_future();
    weft::promise<int> r = std::move(q);
    r.set_value(2);
    EXPECT_EQ(h.get(), 2);
}

// ------------------------------------------------------------ misuse

TEST_P(FutureTest, EveryFutureErrcMisuseThrows) {
    rt.block_on([] {
        // no_state: every call on an invalid future / shared_future (std: undefined).
        weft::future<int> none;
        EXPECT_FALSE(none.valid());
        EXPECT_EQ(errc_of([&] { (void)none.get(); }), code(std::future_errc::no_state));
        EXPECT_EQ(errc_of([&] { none.wait(); }), code(std::future_errc::no_state));
        EXPECT_EQ(errc_of([&] { (void)none.wait_for(1ms); }), code(std::future_errc::no_state));
        EXPECT_EQ(errc_of([&] { (void)none.wait_until(clk::now()); }), code(std::future_errc::no_state));
        weft::shared_future<void> snone;
        EXPECT_EQ(errc_of([&] { snone.get(); }), code(std::future_errc::no_state));
        EXPECT_EQ(errc_of([&] { snone.wait(); }), code(std::future_errc::no_state));
        EXPECT_FALSE(none.share().valid());  // share() of an invalid future is defined by std

        // A second get() (std: undefined) fails loudly.
        weft::promise<int> p;
        auto f = p.get_future();
        p.set_value(1);
        EXPECT_EQ(f.get(), 1);
        EXPECT_EQ(errc_of([&] { (void)f.get(); }), code(std::future_errc::no_state));

        // future_already_retrieved, promise_already_satisfied.
        EXPECT_EQ(errc_of([&] { (void)p.get_future(); }), code(std::future_errc::future_already_retrieved));
        EXPECT_EQ(errc_of([&] { p.set_value(2); }), code(std::future_errc::promise_already_satisfied));
        EXPECT_EQ(errc_of([&] { p.set_exception(std::make_exception_ptr(1)); }),
                  code(std::future_errc::promise_already_satisfied));
        weft::promise<void> pe;
        pe.set_exception(std::make_exception_ptr(std::runtime_error("x")));
        EXPECT_EQ(errc_of([&] { pe.set_value(); }), code(std::future_errc::promise_already_satisfied));
        EXPECT_THROW(pe.set_exception(nullptr), std::invalid_argument);

        // no_state on a moved-from promise.
        weft::promise<int&> from;
        weft::promise<int&> to = std::move(from);
        int x = 0;
        EXPECT_EQ(errc_of([&] { from.set_value(x); }), code(std::future_errc::no_state));
        EXPECT_EQ(errc_of([&] { (void)from.get_future(); }), code(std::future_errc::no_state));
        EXPECT_EQ(errc_of([&] { from.set_exception(std::make_exception_ptr(1)); }), code(std::future_errc::no_state));

        // packaged_task: already retrieved, already satisfied, no_state.
        weft::packaged_task<int()> task([] { return 3; });
        auto tf = task.get_future();
        EXPECT_EQ(errc_of([&] { (void)task.get_future(); }), code(std::future_errc::future_already_retrieved));
        task();
        EXPECT_EQ(errc_of([&] { task(); }), code(std::future_errc::promise_already_satisfied));
        EXPECT_EQ(tf.get(), 3);
        weft::packaged_task<void(int)> empty;
        EXPECT_FALSE(empty.valid());
        EXPECT_EQ(errc_of([&] { empty(1); }), code(std::future_errc::no_state));
        EXPECT_EQ(errc_of([&] { (void)empty.get_future(); }), code(std::future_errc::no_state));
        EXPECT_EQ(errc_of([&] { empty.reset(); }), code(std::future_errc::no_state));

        // A launch policy with neither bit (std: undefined).
        EXPECT_THROW((void)weft::async(static_cast<std::launch>(0), [] {}), std::invalid_argument);
    });
}

TEST_P(FutureTest, ThrowingValueConstructorLeavesPromiseUnsatisfied) {
    struct fussy {
        bool fail;
        explicit fussy(bool f) : fail(f) {}
        fussy(const fussy& o) : fail(o.fail) {
            if (fail) throw std::runtime_error("copy failed");
        }
    };
    weft::promise<fussy> p;
    auto f = p.get_future();
    const fussy bad(true);
    EXPECT_THROW(p.set_value(bad), std::runtime_error);
    p.set_value(fussy(false));  // the failed attempt did not satisfy it
    EXPECT_FALSE(f.get().fail);
}

// ------------------------------------------------------------ timed waits

TEST_P(FutureTest, WaitForTimesOutNotBeforeDeadlineThenReady) {
    rt.block_on([] {
        weft::promise<int> p;
        auto f = p.get_future();
        const auto start = clk::now();
        EXPECT_EQ(f.wait_for(30ms), std::future_status::timeout);
        EXPECT_GE(clk::now() - start, 30ms);
        const auto start2 = clk::now();
        EXPECT_EQ(f.wait_until(start2 + 20ms), std::future_status::timeout);
        EXPECT_GE(clk::now(), start2 + 20ms);
        EXPECT_EQ(f.wait_for(0ms), std::future_status::timeout);
        EXPECT_EQ(f.wait_for(-5ms), std::future_status::timeout);
        EXPECT_TRUE(f.valid());

        auto setter = weft::spawn([&] {
            weft::this_fiber::sleep_for(10ms);
            p.set_value(8);
        });
        EXPECT_EQ(f.wait_for(std::chrono::hours(1)), std::future_status::ready);  // generous: catches a lost wake
        EXPECT_EQ(f.wait_for(0ms), std::future_status::ready);
        EXPECT_EQ(f.wait_until(clk::now() - 1s), std::future_status::ready);
        EXPECT_EQ(f.get(), 8);
        setter.join();
    });
}

TEST_P(FutureTest, PlainThreadWaitForTimesOutThenReady) {
    weft::promise<void> p;
    auto f = p.get_future();
    const auto start = clk::now();
    EXPECT_EQ(f.wait_for(30ms), std::future_status::timeout);
    EXPECT_GE(clk::now() - start, 30ms);
    // A system_clock deadline works too (converted through "now").
    EXPECT_EQ(f.wait_until(std::chrono::system_clock::now() + 10ms), std::future_status::timeout);
    auto setter = rt.spawn([&] { p.set_value(); });
    EXPECT_EQ(f.wait_for(std::chrono::hours(1)), std::future_status::ready);
    f.get();
    setter.join();
}

// ------------------------------------------------------------ shared_future

TEST_P(FutureTest, SharedFutureWakesFiberAndThreadWaiters) {
    const std::size_t fibers = 100;
    const std::size_t threads = 4;
    weft::promise<std::string> p;
    weft::shared_future<std::string> sf = p.get_future().share();
    std::atomic<std::size_t> waiting{0};
    std::atomic<std::size_t> right{0};
    std::atomic<const std::string*> where{nullptr};
    auto check = [&](const weft::shared_future<std::string>& mine) {
        ++waiting;
        const std::string& v = mine.get();
        if (v == "all of you") ++right;
        const std::string* expected = nullptr;
        // Every copy refers to the one stored value.
        if (!where.compare_exchange_strong(expected, &v) && expected != &v) ADD_FAILURE() << "distinct values";
    };
    std::vector<weft::join_handle<void>> hs;
    for (std::size_t i = 0; i < fibers; ++i) hs.push_back(rt.spawn([&, mine = sf] { check(mine); }));
    std::vector<std::thread> ts;
    for (std::size_t i = 0; i < threads; ++i) ts.emplace_back([&, mine = sf] { check(mine); });
    ASSERT_TRUE(eventually([&] { return waiting.load() == fibers + threads; }));
    std::this_thread::sleep_for(5ms);  // let most of them park
    EXPECT_EQ(right.load(), 0u);
    p.set_value("all of you");
    for (auto& h : hs) h.join();
    for (auto& t : ts) t.join();
    EXPECT_EQ(right.load(), fibers + threads);
    EXPECT_TRUE(sf.valid());
    EXPECT_EQ(sf.get(), "all of you");
}

TEST_P(FutureTest, SharedFutureCopiesReferenceAndVoid) {
    rt.block_on([] {
        int target = 0;
        weft::promise<int&> pr;
        weft::shared_future<int&> a = pr.get_future();  // from future&&
        weft::shared_future<int&> b = a;
        weft::shared_future<int&> c;
        c = b;
        const weft::shared_future<int&>& same = c;
        c = same;  // self-assignment keeps the state
        EXPECT_TRUE(c.valid());
        pr.set_value(target);
        a.get() = 4;
        EXPECT_EQ(&b.get(), &target);
        EXPECT_EQ(c.get(), 4);

        weft::promise<void> pv;
        weft::shared_future<void> v1 = pv.get_future().share();
        weft::shared_future<void> v2 = std::move(v1);
        EXPECT_FALSE(v1.valid());
        EXPECT_EQ(v2.wait_for(0ms), std::future_status::timeout);
        pv.set_value();
        v2.get();
        v2.get();
    });
}

// ------------------------------------------------------------ async

TEST_P(FutureTest, AsyncFromFiberRunsOnAnotherFiber) {
    rt.block_on([] {
        const weft::fiber_id me = weft::this_fiber::get_id();
        auto f = weft::async(
            [](int a, std::string b) { return std::pair(weft::this_fiber::get_id(), b + std::to_string(a)); }, 4,
            std::string("x"));
        auto [who, what] = f.get();
        EXPECT_NE(who, me);
        EXPECT_EQ(what, "x4");

        auto e = weft::async(std::launch::async, []() -> int { throw std::runtime_error("async boom"); });
        EXPECT_THROW((void)e.get(), std::runtime_error);

        // Both bits: async behaviour (a new fiber at once).
        std::atomic<bool> ran{false};
        auto both = weft::async(std::launch::async | std::launch::deferred, [&] {
            ran = true;
            return weft::this_fiber::get_id();
        });
        EXPECT_TRUE(yield_until([&] { return ran.load(); }));  // runs without anyone waiting
        EXPECT_NE(both.get(), me);

        int target = 0;
        auto r = weft::async([&]() -> int& { return target; });
        EXPECT_EQ(&r.get(), &target);
    });
}

TEST_P(FutureTest, AsyncFromPlainThreadUsesDefaultRuntime) {
    auto f = weft::async([] { return weft::this_fiber::in_fiber(); });
    EXPECT_TRUE(f.get());
    auto up = weft::async([](std::unique_ptr<int> p) { return *p + 1; }, std::make_unique<int>(1));
    EXPECT_EQ(up.get(), 2);
}

TEST_P(FutureTest, AsyncFutureDestructorWaitsForTheCall) {
    auto from_here = [] {
        std::atomic<bool> flag{false};
        {
            auto f = weft::async([&flag] {
                weft::this_fiber::sleep_for(30ms);
                flag = true;
            });
        }
        EXPECT_TRUE(flag.load());
        // The last of several shared_future copies waits, not the first.
        std::atomic<bool> flag2{false};
        std::atomic<bool> gate_timed_out{false};
        {
            weft::promise<void> gate;
            weft::shared_future<void> gate_f = gate.get_future().share();
            weft::shared_future<void> a = weft::async([&flag2, &gate_timed_out, gate_f] {
                if (gate_f.wait_for(weft_test::patience) != std::future_status::ready) gate_timed_out = true;
                weft::this_fiber::sleep_for(10ms);
                flag2 = true;
            });
            { weft::shared_future<void> b = a; }  // not the last: must not wait (the call waits for the gate)
            gate.set_value();
        }  // `a`, the last reference, waits here
        EXPECT_FALSE(gate_timed_out.load());
        EXPECT_TRUE(flag2.load());
        // A moved-from future and a consumed one do not wait again.
        auto g = weft::async([] { return 1; });
        auto h = std::move(g);
        EXPECT_EQ(h.get(), 1);
    };
    rt.block_on(from_here);  // on a fiber (the async fibers go to rt)
    from_here();             // on a plain thread (the default runtime)
}

TEST_P(FutureTest, AsyncCallbackCapturesDieBeforeTheDestructorReturns) {
    struct witness {
        std::atomic<int>* alive;
        explicit witness(std::atomic<int>* a) : alive(a) { ++*alive; }
        witness(const witness& o) : alive(o.alive) { ++*alive; }
        ~witness() { --*alive; }
    };
    std::atomic<int> alive{0};
    rt.block_on([&] {
        {
            auto f = weft::async([w = witness(&alive)] { weft::this_fiber::sleep_for(5ms); });
        }
        EXPECT_EQ(alive.load(), 0);
    });
}

TEST_P(FutureTest, DeferredRunsInTheGetterFiber) {
    rt.block_on([] {
        std::atomic<int> runs{0};
        auto f = weft::async(std::launch::deferred, [&runs] {
            ++runs;
            return weft::this_fiber::get_id();
        });
        EXPECT_EQ(f.wait_for(10ms), std::future_status::deferred);  // at once, and it does not run
        EXPECT_EQ(f.wait_until(clk::now() + 1h), std::future_status::deferred);
        weft::this_fiber::sleep_for(5ms);
        EXPECT_EQ(runs.load(), 0);
        auto getter = weft::spawn([&f] { return std::pair(weft::this_fiber::get_id(), f.get()); });
        auto [getter_id, ran_on] = getter.join();
        EXPECT_EQ(ran_on, getter_id);
        EXPECT_EQ(runs.load(), 1);

        // wait() runs it too; a shared_future runs it once for all getters.
        auto s = weft::async(std::launch::deferred, [&runs] {
                     ++runs;
                     return 5;
                 }).share();
        std::vector<weft::join_handle<int>> gs;
        for (int i = 0; i < 8; ++i) gs.push_back(weft::spawn([s] { return s.get(); }));
        s.wait();
        for (auto& g : gs) EXPECT_EQ(g.join(), 5);
        EXPECT_EQ(runs.load(), 2);
        EXPECT_EQ(s.wait_for(0ms), std::future_status::ready);

        // An exception of the deferred function reaches the getter.
        auto e = weft::async(std::launch::deferred, [] { throw std::runtime_error("lazy"); });
        EXPECT_THROW(e.get(), std::runtime_error);

        // Never waited for: never runs.
        { auto never = weft::async(std::launch::deferred, [&runs] { ++runs; }); }
        EXPECT_EQ(runs.load(), 2);
    });
}

TEST_P(FutureTest, DeferredRunsOnAPlainThreadGetter) {
    auto f = weft::async(std::launch::deferred, [](int a) { return std::pair(weft::this_fiber::in_fiber(), a); }, 6);
    auto [in_fiber, a] = f.get();
    EXPECT_FALSE(in_fiber);
    EXPECT_EQ(a, 6);
}

// ------------------------------------------------------------ packaged_task

TEST_P(FutureTest, PackagedTaskDeliversResultsAcrossFibersAndThreads) {
    weft::packaged_task<int(int, int)> add([](int a, int b) { return a + b; });
    EXPECT_TRUE(add.valid());
    auto f = add.get_future();
    auto runner = rt.spawn([&] { add(2, 3); });
    EXPECT_EQ(f.get(), 5);  // a plain thread waits for a fiber
    runner.join();

    // reset(): a new state, the same callable.
    add.reset();
    auto g = add.get_future();
    std::thread t([&] { add(10, 1); });
    EXPECT_EQ(rt.block_on([&] { return g.get(); }), 11);  // a fiber waits for a thread
    t.join();

    // Exceptions, move-only callables and results, references, void.
    weft::packaged_task<std::unique_ptr<int>()> mk([p = std::make_unique<int>(7)]() mutable { return std::move(p); });
    auto mf = mk.get_future();
    weft::packaged_task<std::unique_ptr<int>()> moved = std::move(mk);
    EXPECT_FALSE(mk.valid());
    moved();
    EXPECT_EQ(*mf.get(), 7);

    weft::packaged_task<void()> thrower([] { throw std::runtime_error("task boom"); });
    auto tf = thrower.get_future();
    rt.block_on([&] { thrower(); });  // the exception goes to the future, not out of operator()
    EXPECT_THROW(tf.get(), std::runtime_error);

    int target = 0;
    weft::packaged_task<int&(int)> ref([&target](int v) -> int& {
        target = v;
        return target;
    });
    auto rf = ref.get_future();
    ref(3);
    EXPECT_EQ(&rf.get(), &target);
    EXPECT_EQ(target, 3);
}

TEST_P(FutureTest, PackagedTaskDestroyedOrResetUnrunBreaksItsFuture) {
    weft::future<int> f;
    {
        weft::packaged_task<int()> t([] { return 1; });
        f = t.get_future();
    }
    EXPECT_EQ(errc_of([&] { (void)f.get(); }), code(std::future_errc::broken_promise));

    weft::packaged_task<int()> t([] { return 2; });
    auto old = t.get_future();
    t.reset();
    EXPECT_EQ(errc_of([&] { (void)old.get(); }), code(std::future_errc::broken_promise));
    auto fresh = t.get_future();
    t();
    EXPECT_EQ(fresh.get(), 2);
}

// ------------------------------------------------------------ cancellation

TEST_P(FutureTest, GetBlockedFiberIsCancelledByItsRuntimeShutdown) {
    weft::promise<int> p;
    weft::future<int> f = p.get_future();
    weft::promise<void> pw;
    weft::shared_future<void> sw = pw.get_future().share();
    std::atomic<int> cancelled{0};
    std::atomic<bool> still_valid{false};
    {
        weft::runtime own(weft::runtime_options{.workers = workers()});
        auto h = own.spawn([&] {
            try {
                (void)f.get();
            } catch (const weft::operation_cancelled&) {
                ++cancelled;
                still_valid = f.valid();
            }
        });
        auto h2 = own.spawn([&] {
            try {
                sw.wait();
            } catch (const weft::operation_cancelled&) {
                ++cancelled;
            }
        });
        ASSERT_TRUE(eventually([&] { return own.stats().fibers_parked >= 2; })) << own.dump_json();
        own.shutdown();
        EXPECT_TRUE(h.is_finished());
        EXPECT_TRUE(h2.is_finished());
    }
    EXPECT_EQ(cancelled.load(), 2);
    EXPECT_TRUE(still_valid.load());  // the cancelled get() did not consume the state
    p.set_value(1);  // the state still works for others
    EXPECT_EQ(f.get(), 1);
}

TEST_P(FutureTest, AsyncCallCancelledByShutdownStoresTheError) {
    weft::future<void> f;
    {
        weft::runtime own(weft::runtime_options{.workers = workers()});
        f = own.block_on([] {
            return weft::async([] {
                weft::promise<void> never;
                auto nf = never.get_future();
                nf.get();  // parks until the runtime shuts down
            });
        });
        ASSERT_TRUE(eventually([&] { return own.stats().fibers_parked >= 1; })) << own.dump_json();
    }
    EXPECT_THROW(f.get(), weft::operation_cancelled);
}

}  // namespace
