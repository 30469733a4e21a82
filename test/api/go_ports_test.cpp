// Classic Go channel programs ported to weft, each with one right answer
// whatever the interleaving, checked exactly: the concurrent prime sieve
// (wound down three ways: closing forward, a done channel with select,
// closing backward through channel_closed); the fan-out/fan-in pipeline of
// "Go Concurrency Patterns: Pipelines and cancellation", plain and with early
// cancellation by a done channel; bounded parallelism (a worker pool, and a
// buffered channel used as a semaphore); timeouts with select (on_timeout
// and weft::after against a slow and a fast producer, a deadline for a whole
// conversation, a for-select loop on a ticker with a quit channel). Fibers
// only, plain threads only (the test thread running the consumer) and both.
// Public API only (weft_dep).
//
// Timing: a "slow" producer is slow because it waits on a channel the test
// closes after the select, not because it sleeps, so a timeout test cannot
// flake on an overloaded machine. Lower bounds only; upper bounds are 5 s or
// more and catch hangs, not slowness.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

// RuntimeTest is instantiated over 1, 2 and 4 workers once for this
// executable, in runtime_test.cpp.

using namespace std::chrono_literals;
using weft_test::eventually;
using weft_test::scaled;
using clk = std::chrono::steady_clock;

namespace {

/// Go's struct{}: a signal carries no value.
struct unit {};
using signal_chan = weft::channel<unit>;  // closed to signal, as Go closes a chan struct{}
using fibers = std::vector<weft::join_handle<void>>;

void join_all(fibers& fs) {
    for (auto& f : fs) f.join();
    fs.clear();
}

/// The first 100 primes; the 100th is 541.
constexpr std::array<int, 100> first_primes = {
    2,   3,   5,   7,   11,  13,  17,  19,  23,  29,  31,  37,  41,  43,  47,  53,  59,  61,  67,  71,
    73,  79,  83,  89,  97,  101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167, 173,
    179, 181, 191, 193, 197, 199, 211, 223, 227, 229, 233, 239, 241, 251, 257, 263, 269, 271, 277, 281,
    283, 293, 307, 311, 313, 317, 331, 337, 347, 349, 353, 359, 367, 373, 379, 383, 389, 397, 401, 409,
    419, 421, 431, 433, 439, 443, 449, 457, 461, 463, 467, 479, 487, 491, 499, 503, 509, 521, 523, 541};

std::vector<int> expected_primes(std::size_t count) {
    return std::vector<int>(first_primes.begin(), first_primes.begin() + static_cast<std::ptrdiff_t>(count));
}

// --- the concurrent prime sieve --------------------------------------------------------
// A generator fiber sends 2, 3, 4, ... on a rendezvous channel; the consumer
// takes the first number as a prime and puts a filter fiber for it between
// the generator and itself, so one filter per prime found. 100 primes take
// 101 fibers and about 10,000 rendezvous hand-offs.

/// Go's range idiom: the generator sends 2..limit and closes; each filter
/// ranges over its input and closes its output when the input is closed, so
/// the chain winds down from the front. Returns the primes up to limit.
/// Runs the consumer on the calling fiber or plain thread.
std::vector<int> sieve_closing_forward(weft::runtime& rt, int limit) {
    fibers fs;
    weft::channel<int> ch;  // rendezvous, as Go's make(chan int)
    fs.push_back(rt.spawn([out = ch, limit] {
        for (int i = 2; i <= limit; ++i) out.send(i);
        out.close();
    }));
    std::vector<int> primes;
    while (std::optional<int> p = ch.recv()) {
        primes.push_back(*p);
        weft::channel<int> next;
        fs.push_back(rt.spawn([in = ch, out = next, prime = *p] {
            for (int v : in)
                if (v % prime != 0) out.send(v);
            out.close();
        }));
        ch = next;
    }
    join_all(fs);
    return primes;
}

/// Go's infinite generator stopped by a done channel: every send and receive
/// of the chain is a select that also watches done; the consumer closes done
/// after `count` primes and every stage returns.
std::vector<int> sieve_with_done(weft::runtime& rt, std::size_t count) {
    fibers fs;
    signal_chan done;
    weft::channel<int> ch;
    fs.push_back(rt.spawn([out = ch, done] {
        for (int i = 2;; ++i)
            if (weft::select(weft::on_send(out, i), weft::on_recv(done)) == 1) return;
    }));
    std::vector<int> primes;
    while (primes.size() < count) {
        const int prime = ch.recv().value();  // never closed here
        primes.push_back(prime);
        weft::channel<int> next;
        fs.push_back(rt.spawn([in = ch, out = next, done, prime] {
            for (;;) {
                std::optional<int> v;
                if (weft::select(weft::on_recv(in, [&](std::optional<int> x) { v = x; }), weft::on_recv(done)) == 1)
                    return;
                if (*v % prime != 0 && weft::select(weft::on_send(out, *v), weft::on_recv(done)) == 1) return;
            }
        }));
        ch = next;
    }
    done.close();
    join_all(fs);
    return primes;
}

/// Wound down from the back: the consumer closes the channel it reads; the
/// filter feeding it gets channel_closed from its send and closes its own
/// input, and so on up to the generator (a sender blocked on a channel that
/// gets closed is woken with channel_closed, its value untouched).
std::vector<int> sieve_closing_backward(weft::runtime& rt, std::size_t count) {
    fibers fs;
    weft::channel<int> ch;
    fs.push_back(rt.spawn([out = ch] {
        try {
            for (int i = 2;; ++i) out.send(i);
        } catch (const weft::channel_closed&) {
        }
    }));
    std::vector<int> primes;
    while (primes.size() < count) {
        const int prime = ch.recv().value();
        primes.push_back(prime);
        weft::channel<int> next;
        fs.push_back(rt.spawn([in = ch, out = next, prime] {
            try {
                for (;;) {
                    const int v = in.recv().value();  // only this filter closes `in`
                    if (v % prime != 0) out.send(v);
                }
            } catch (const weft::channel_closed&) {
            }
            in.close();
        }));
        ch = next;
    }
    ch.close();
    join_all(fs);
    return primes;
}

// --- pipelines -------------------------------------------------------------------------

/// Sends v on out, unless done (when given) is closed first: Go's
/// `select { case out <- v: case <-done: }`. True if v was sent.
bool send_unless_done(const weft::channel<long>& out, long v, const signal_chan* done) {
    if (!done) {
        out.send(v);
        return true;
    }
    return weft::select(weft::on_send(out, v), weft::on_recv(*done)) == 0;
}

/// The stages of the Go blog's pipeline, each a fiber that closes its output
/// when it returns (Go's `defer close(out)`). With a done channel every send
/// is a select that gives up when done is closed.
class pipeline {
public:
    pipeline(weft::runtime& rt, const signal_chan* done) : rt_(rt), done_(done) {}

    /// Sends 1..n; counts the values actually sent in *sent.
    weft::channel<long> gen(long n, std::atomic<long>* sent) {
        weft::channel<long> out;
        fs_.push_back(rt_.spawn([out, n, sent, done = done_] {
            for (long i = 1; i <= n; ++i) {
                if (!send_unless_done(out, i, done)) break;
                sent->fetch_add(1);
            }
            out.close();
        }));
        return out;
    }

    /// Squares what comes in.
    weft::channel<long> sq(const weft::channel<long>& in) {
        weft::channel<long> out;
        fs_.push_back(rt_.spawn([in, out, done = done_] {
            for (long v : in)
                if (!send_unless_done(out, v * v, done)) break;
            out.close();
        }));
        return out;
    }

    /// Fan-in: one forwarding fiber per input, and one that closes the output
    /// once a wait_group says every forwarder returned.
    weft::channel<long> merge(const std::vector<weft::channel<long>>& cs) {
        weft::channel<long> out;
        auto wg = std::make_shared<weft::wait_group>();
        wg->add(static_cast<std::ptrdiff_t>(cs.size()));
        for (const auto& c : cs)
            fs_.push_back(rt_.spawn([c, out, wg, done = done_] {
                for (long v : c)
                    if (!send_unless_done(out, v, done)) break;
                wg->done();
            }));
        fs_.push_back(rt_.spawn([out, wg] {
            wg->wait();
            out.close();
        }));
        return out;
    }

    void join() { join_all(fs_); }

private:
    weft::runtime& rt_;
    const signal_chan* done_;
    fibers fs_;
};

constexpr int sq_workers = 4;

/// True when v is the square of a number in 1..n.
bool is_square_in(long v, long n) {
    const long r = std::lround(std::sqrt(static_cast<double>(v)));
    return r >= 1 && r <= n && r * r == v;
}

// --- bounded parallelism ---------------------------------------------------------------

struct job_result {
    int job;
    int worker;
    long value;
};

/// Raises *peak to at least v.
void raise_peak(std::atomic<int>& peak, int v) {
    int p = peak.load();
    while (p < v && !peak.compare_exchange_weak(p, v)) {
    }
}

/// Go by Example's worker pool: `k` workers (the first `k_threads` of them
/// plain threads, the others fibers) range over a buffered jobs channel and
/// send one result per job; the caller (fiber or plain thread) sends every
/// job, closes jobs, then takes njobs results. Checks that each job was done
/// exactly once, by a known worker, with the right result, and that no more
/// than k jobs were in progress at once.
void run_worker_pool(weft::runtime& rt, int njobs, int k, int k_threads) {
    weft::channel<int> jobs(16);                                        // smaller than njobs: the caller blocks
    weft::channel<job_result> results(static_cast<std::size_t>(njobs));  // as Go's example
    std::atomic<int> active{0}, peak{0};
    auto worker = [&](int id) {
        for (int j : jobs) {
            raise_peak(peak, active.fetch_add(1) + 1);
            weft::this_fiber::yield();  // "work": let the others take jobs meanwhile
            active.fetch_sub(1);
            results.send(job_result{j, id, 2L * j});
        }
    };
    fibers fs;
    std::vector<std::thread> ts;
    for (int id = 0; id < k; ++id) {
        if (id < k_threads) ts.emplace_back(worker, id);
        else fs.push_back(rt.spawn(worker, id));
    }
    for (int j = 0; j < njobs; ++j) jobs.send(j);
    jobs.close();
    std::vector<int> times_done(static_cast<std::size_t>(njobs), 0);
    for (int r = 0; r < njobs; ++r) {
        const job_result res = results.recv().value();
        if (res.job < 0 || res.job >= njobs) {
            ADD_FAILURE() << "a result for job " << res.job << ", which was never sent";
            continue;
        }
        EXPECT_GE(res.worker, 0);
        EXPECT_LT(res.worker, k);
        EXPECT_EQ(res.value, 2L * res.job);
        ++times_done[static_cast<std::size_t>(res.job)];
    }
    join_all(fs);
    for (auto& t : ts) t.join();
    for (int j = 0; j < njobs; ++j) EXPECT_EQ(times_done[static_cast<std::size_t>(j)], 1) << "job " << j;
    job_result extra{};
    EXPECT_EQ(results.try_recv(extra), weft::channel_op_status::empty) << "a result with no job";
    EXPECT_LE(peak.load(), k);
    EXPECT_GE(peak.load(), 1);
}

double millis(clk::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

// --- the prime sieve -------------------------------------------------------------------

TEST_P(RuntimeTest, GoPortSieveClosingForward) {
    const std::vector<int> primes = rt.block_on([&] { return sieve_closing_forward(rt, first_primes.back()); });
    EXPECT_EQ(primes, expected_primes(first_primes.size()));
}

TEST_P(RuntimeTest, GoPortSieveConsumerOnPlainThread) {
    // The consumer is the test's own thread; generator and filters are fibers.
    EXPECT_EQ(sieve_closing_forward(rt, first_primes.back()), expected_primes(first_primes.size()));
}

TEST_P(RuntimeTest, GoPortSieveDoneChannel) {
    const std::vector<int> primes = rt.block_on([&] { return sieve_with_done(rt, first_primes.size()); });
    EXPECT_EQ(primes, expected_primes(first_primes.size()));
}

TEST_P(RuntimeTest, GoPortSieveClosingBackward) {
    const std::vector<int> primes = rt.block_on([&] { return sieve_closing_backward(rt, first_primes.size()); });
    EXPECT_EQ(primes, expected_primes(first_primes.size()));
}

// --- pipelines -------------------------------------------------------------------------

TEST_P(RuntimeTest, GoPortPipelineFanOutFanIn) {
    // gen -> 4 sq workers reading one channel (fan-out) -> merge (fan-in) -> sum.
    const long n = static_cast<long>(scaled(20000));
    const long want = n * (n + 1) * (2 * n + 1) / 6;
    auto run = [&] {  // on the calling fiber or plain thread
        pipeline p(rt, nullptr);
        std::atomic<long> sent{0};
        weft::channel<long> in = p.gen(n, &sent);
        std::vector<weft::channel<long>> squares;
        for (int i = 0; i < sq_workers; ++i) squares.push_back(p.sq(in));
        long sum = 0, count = 0;
        for (long v : p.merge(squares)) {
            sum += v;
            ++count;
        }
        p.join();
        EXPECT_EQ(sent.load(), n);
        EXPECT_EQ(count, n);
        EXPECT_EQ(sum, want);
    };
    rt.block_on(run);
    run();
}

TEST_P(RuntimeTest, GoPortPipelineCancelledEarly) {
    // The consumer takes two values of a million, then closes done: every stage
    // returns (the merge's wait_group then closes the output), and the generator
    // sent at most 2 + 4 + 4 values: the two taken, at most one held by each
    // sq worker and one by each forwarder when they saw done (all channels are
    // rendezvous, so nothing else can be in flight).
    constexpr long n = 1000000;
    signal_chan done;
    pipeline p(rt, &done);
    std::atomic<long> sent{0};
    weft::channel<long> in = p.gen(n, &sent);
    std::vector<weft::channel<long>> squares;
    for (int i = 0; i < sq_workers; ++i) squares.push_back(p.sq(in));
    weft::channel<long> out = p.merge(squares);
    rt.block_on([&] {
        for (int k = 0; k < 2; ++k) {
            const long v = out.recv().value();
            EXPECT_TRUE(is_square_in(v, n)) << v;
        }
        done.close();
    });
    p.join();  // every stage returned
    EXPECT_LE(sent.load(), 2 + 2 * sq_workers);
    EXPECT_GE(sent.load(), 2);
    EXPECT_TRUE(out.is_closed());
    EXPECT_FALSE(out.recv().has_value());  // closed and drained: nothing was sent after done
}

// --- bounded parallelism ---------------------------------------------------------------

TEST_P(RuntimeTest, GoPortWorkerPoolFibers) {
    const int njobs = static_cast<int>(scaled(5000));
    rt.block_on([&] { run_worker_pool(rt, njobs, 4, 0); });
}

TEST_P(RuntimeTest, GoPortWorkerPoolFibersAndThreads) {
    // Two plain-thread workers next to four fiber workers; the test thread
    // sends the jobs and takes the results.
    const int njobs = static_cast<int>(scaled(5000));
    run_worker_pool(rt, njobs, 6, 2);
}

TEST_P(RuntimeTest, GoPortSemaphoreChannel) {
    // Go's `sem := make(chan struct{}, k)`: send to acquire, receive to release;
    // at most k holders at once, from fibers and plain threads together.
    constexpr int k = 3;
    const int tasks = static_cast<int>(scaled(600));
    constexpr int threads = 2, rounds_per_thread = 20;
    signal_chan sem(k);
    std::atomic<int> active{0}, peak{0}, finished{0};
    auto task = [&] {
        sem.send(unit{});
        raise_peak(peak, active.fetch_add(1) + 1);
        weft::this_fiber::yield();
        weft::this_fiber::yield();
        active.fetch_sub(1);
        finished.fetch_add(1);
        (void)sem.recv();
    };
    fibers fs;
    for (int i = 0; i < tasks; ++i) fs.push_back(rt.spawn(task));
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
        ts.emplace_back([&] {
            for (int r = 0; r < rounds_per_thread; ++r) task();
        });
    join_all(fs);
    for (auto& t : ts) t.join();
    EXPECT_EQ(finished.load(), tasks + threads * rounds_per_thread);
    EXPECT_LE(peak.load(), k);
    EXPECT_GE(peak.load(), 1);
    EXPECT_EQ(sem.size(), 0u);
}

// --- timeouts --------------------------------------------------------------------------

TEST_P(RuntimeTest, GoPortTimeoutSlowProducer) {
    // Go by Example's timeouts: a result channel of capacity 1 (so the late
    // producer never blocks and leaks), and a select against a timeout. The
    // producer is "slow": it may send only once `slow` is closed, after the select.
    rt.block_on([&] {
        for (int form = 0; form < 2; ++form) {  // 0: on_timeout, 1: weft::after
            weft::channel<std::string> c1(1);
            signal_chan slow;
            auto producer = rt.spawn([c1, slow] {
                (void)slow.recv();
                c1.send("result 1");
            });
            std::string got;
            clk::time_point fired{};
            const auto t0 = clk::now();
            const std::size_t i =
                form == 0 ? weft::select(weft::on_recv(c1, [&](std::optional<std::string> v) { got = v.value(); }),
                                         weft::on_timeout(50ms))
                          : weft::select(weft::on_recv(c1, [&](std::optional<std::string> v) { got = v.value(); }),
                                         weft::on_recv(weft::after(50ms),
                                                       [&](std::optional<clk::time_point> t) { fired = t.value(); }));
            const auto elapsed = clk::now() - t0;
            EXPECT_EQ(i, 1u) << "form " << form;
            EXPECT_TRUE(got.empty());
            EXPECT_GE(elapsed, 50ms) << "form " << form << ": the timeout won after " << millis(elapsed) << " ms";
            if (form == 1) {
                EXPECT_GE(fired - t0, 50ms) << "after() delivered early";
            }
            slow.close();
            producer.join();
            EXPECT_EQ(c1.recv(), "result 1");  // the late result is not lost
        }
    });
}

TEST_P(RuntimeTest, GoPortTimeoutFastProducer) {
    // The result comes well within the timeout: the receive wins, long before it.
    auto run = [&] {  // on the calling fiber or plain thread
        for (int form = 0; form < 2; ++form) {
            weft::channel<std::string> c2(1);
            auto producer = rt.spawn([c2] { c2.send("result 2"); });
            std::string got;
            const auto t0 = clk::now();
            const std::size_t i =
                form == 0 ? weft::select(weft::on_recv(c2, [&](std::optional<std::string> v) { got = *v; }),
                                         weft::on_timeout(10s))
                          : weft::select(weft::on_recv(c2, [&](std::optional<std::string> v) { got = *v; }),
                                         weft::on_recv(weft::after(10s)));
            const auto elapsed = clk::now() - t0;
            EXPECT_EQ(i, 0u) << "form " << form;
            EXPECT_EQ(got, "result 2");
            EXPECT_LT(elapsed, 5s) << "form " << form;  // catches a receive that waited for the timeout
            producer.join();
        }
    };
    rt.block_on(run);
    run();
}

TEST_P(RuntimeTest, GoPortTimeoutOnPlainThread) {
    // Nothing is ever sent: both timeout forms win on a plain thread too.
    weft::channel<int> never;
    const auto t0 = clk::now();
    EXPECT_EQ(weft::select(weft::on_recv(never), weft::on_timeout(30ms)), 1u);
    EXPECT_GE(clk::now() - t0, 30ms);
    const auto t1 = clk::now();
    EXPECT_EQ(weft::select(weft::on_recv(never), weft::on_recv(weft::after(30ms))), 1u);
    EXPECT_GE(clk::now() - t1, 30ms);
}

TEST_P(RuntimeTest, GoPortConversationTimeout) {
    // One time.After for a whole loop: a producer that is always ready, and a
    // consumer that takes values in order until the deadline's channel fires
    // (select picks among ready cases at random, so the timeout is not starved).
    weft::channel<int> c;
    signal_chan done;
    auto producer = rt.spawn([c, done] {
        for (int i = 0;; ++i)
            if (weft::select(weft::on_send(c, i), weft::on_recv(done)) == 1) return;
    });
    rt.block_on([&] {
        const auto t0 = clk::now();
        const auto timeout = weft::after(100ms);
        int got = 0;
        bool in_order = true;
        while (weft::select(weft::on_recv(c,
                                          [&](std::optional<int> v) {
                                              in_order = in_order && v == got;
                                              ++got;
                                          }),
                            weft::on_recv(timeout)) == 0) {
        }
        EXPECT_GE(clk::now() - t0, 100ms);
        EXPECT_GT(got, 0);
        EXPECT_TRUE(in_order) << "a value lost or repeated";
        done.close();
    });
    producer.join();
}

TEST_P(RuntimeTest, GoPortTickerWithQuit) {
    // Go by Example's tickers: a for-select loop on ticker.C and a quit
    // channel; on quit the loop stops the ticker and returns. No tick is sent
    // after stop() (one already in the channel may stay).
    constexpr auto period = 10ms;
    constexpr int want_ticks = 5;
    const auto t0 = clk::now();
    weft::ticker tk(period);
    signal_chan quit;
    std::atomic<int> ticks{0};
    std::vector<clk::time_point> times;
    auto loop = rt.spawn([&] {
        for (;;) {
            bool stop = false;
            weft::select(weft::on_recv(tk.chan(),
                                       [&](std::optional<clk::time_point> t) {
                                           times.push_back(t.value());
                                           ticks.fetch_add(1);
                                       }),
                         weft::on_recv(quit, [&] {
                             tk.stop();
                             stop = true;
                         }));
            if (stop) return;
        }
    });
    EXPECT_TRUE(eventually([&] { return ticks.load() >= want_ticks; }));
    quit.close();
    loop.join();
    ASSERT_EQ(times.size(), static_cast<std::size_t>(ticks.load()));
    ASSERT_FALSE(times.empty());
    EXPECT_GE(times.front() - t0, period) << "first tick early";
    for (std::size_t i = 1; i < times.size(); ++i) EXPECT_LT(times[i - 1], times[i]) << "tick " << i;
    clk::time_point left;
    (void)tk.chan().try_recv(left);  // at most one tick sent before stop()
    std::this_thread::sleep_for(5 * period);
    EXPECT_EQ(tk.chan().try_recv(left), weft::channel_op_status::empty) << "a tick after stop()";
}
