// weft::select under load, fibers and plain threads at once; every check is
// "each value delivered exactly once":
//  - an exchange: participants select over send and recv cases of a
//    rendezvous, a buffered and an unbounded channel, sending their own
//    values and receiving everyone's;
//  - closes racing selects: producers select-send on two channels while a
//    closer closes them; a value counts as sent only when its case ran, and
//    exactly the sent ones arrive (closed channels are turned off by
//    dropping the handle, Go's nil-channel idiom);
//  - timeouts racing hand-offs: selects and send_for/recv_for with deadlines
//    of microseconds on rendezvous channels (a timed-out send keeps its
//    value, a committed one is received once);
//  - a storm of one-shot selects parked on random subsets of 20 channels,
//    fed by a select over all 20 (more than 16 cases; queues full of stale
//    registrations).
// Bounded counts (scaled() under sanitizers); time bounds only catch hangs.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"

// RuntimeTest is instantiated over 1, 2 and 4 workers once for this
// executable, in spawn_storm_test.cpp.

using namespace std::chrono_literals;
using weft::channel;
using weft_test::eventually;
using weft_test::scaled;

namespace {

/// scaled(n), but no fewer than `floor` under sanitizers: these counts are
/// of values, not fibers, and a hundredth would hardly race at all.
constexpr std::size_t scaled_at_least(std::size_t n, std::size_t floor) { return std::max(scaled(n), floor); }

using value = std::uint32_t;

/// Per-value delivery counts, checked against what was sent.
struct ledger {
    explicit ledger(std::size_t n) : sent(n), got(n) {}

    void mark_sent(value v) { sent[v].fetch_add(1); }
    void mark_got(std::optional<value> v) {
        if (!v || *v >= got.size()) {
            bad.fetch_add(1);
            return;
        }
        got[*v].fetch_add(1);
        received.fetch_add(1);
    }

    /// Every value sent once was received once; nothing else arrived.
    void check(bool all_sent) const {
        std::size_t dup_sent = 0, dup_got = 0, lost = 0, ghost = 0, unsent = 0;
        for (std::size_t v = 0; v < sent.size(); ++v) {
            const int s = sent[v].load(), g = got[v].load();
            dup_sent += s > 1 ? 1 : 0;
            dup_got += g > 1 ? 1 : 0;
            lost += s == 1 && g == 0 ? 1 : 0;
            ghost += s == 0 && g > 0 ? 1 : 0;
            unsent += s == 0 ? 1 : 0;
        }
        EXPECT_EQ(bad.load(), 0u) << "nullopt or unknown values received";
        EXPECT_EQ(dup_sent, 0u) << "values whose send case ran twice";
        EXPECT_EQ(dup_got, 0u) << "values received twice";
        EXPECT_EQ(lost, 0u) << "values sent but never received";
        EXPECT_EQ(ghost, 0u) << "values received although their send never ran";
        if (all_sent) { EXPECT_EQ(unsent, 0u); }
    }

    std::vector<std::atomic<int>> sent, got;
    std::atomic<std::size_t> received{0}, bad{0};
};

/// Runs body(i) for i in [0, fibers + threads): the first `fibers` on rt.
template <class Body>
void run_mixed(weft::runtime& rt, std::size_t fibers, std::size_t threads, Body body) {
    std::vector<weft::join_handle<void>> hs;
    std::vector<std::thread> ts;
    for (std::size_t i = 0; i < fibers; ++i) hs.push_back(rt.spawn([&body, i] { body(i); }));
    for (std::size_t i = fibers; i < fibers + threads; ++i) ts.emplace_back([&body, i] { body(i); });
    for (auto& h : hs) h.join();
    for (auto& t : ts) t.join();
}

}  // namespace

TEST_P(RuntimeTest, SelectExchangeAmongManyFibersAndThreads) {
    constexpr std::size_t fibers = 32, threads = 4, n = fibers + threads;
    const std::size_t per = scaled_at_least(3000, 400);
    ledger lg(n * per);
    channel<value> rv, buf(8), unb = channel<value>::unbounded();
    run_mixed(rt, fibers, threads, [&](std::size_t p) {
        value next = static_cast<value>(p * per);
        const value end = static_cast<value>((p + 1) * per);
        auto got = [&](std::optional<value> v) { lg.mark_got(v); };
        auto sent = [&] { lg.mark_sent(next++); };
        while (lg.received.load() < n * per) {
            if (next < end) {
                weft::select(weft::on_recv(rv, got), weft::on_send(rv, next, sent), weft::on_recv(buf, got),
                             weft::on_send(buf, next, sent), weft::on_send(unb, next, sent), weft::on_recv(unb, got),
                             weft::on_timeout(1ms));
            } else {
                weft::select(weft::on_recv(rv, got), weft::on_recv(buf, got), weft::on_recv(unb, got),
                             weft::on_timeout(1ms));
            }
        }
    });
    lg.check(true);
    EXPECT_EQ(buf.size(), 0u);
    EXPECT_EQ(unb.size(), 0u);
}

TEST_P(RuntimeTest, SelectsRacingClosesDeliverExactlyTheSentValues) {
    const int rounds = static_cast<int>(scaled_at_least(10, 3));
    constexpr std::size_t producers_f = 8, producers_t = 2, consumers_f = 6, consumers_t = 2;
    const std::size_t per = scaled_at_least(2000, 300);
    const std::size_t producers = producers_f + producers_t;
    for (int round = 0; round < rounds; ++round) {
        ledger lg(producers * per);
        channel<value> a, b(8);  // a rendezvous, b buffered
        std::atomic<std::size_t> producers_done{0};
        auto producer = [&](std::size_t p) {
            channel<value> ca = a, cb = b;  // dropped (moved from) once seen closed
            value v = static_cast<value>(p * per);
            const value end = static_cast<value>((p + 1) * per);
            while (v < end && (ca.native_handle() || cb.native_handle())) {
                try {
                    weft::select(weft::on_send(ca, v, [&] { lg.mark_sent(v++); }),
                                 weft::on_send(cb, v, [&] { lg.mark_sent(v++); }));
                } catch (const weft::channel_closed&) {
                    // v was not sent; turn the closed channel(s) off and retry it.
                    if (ca.is_closed()) { auto off = std::move(ca); }
                    if (cb.is_closed()) { auto off = std::move(cb); }
                }
            }
            producers_done.fetch_add(1);
        };
        auto consumer = [&](std::size_t) {
            channel<value> ca = a, cb = b;
            while (ca.native_handle() || cb.native_handle()) {
                bool a_done = false, b_done = false;
                weft::select(weft::on_recv(ca, [&](std::optional<value> x) { x ? lg.mark_got(x) : void(a_done = true); }),
                             weft::on_recv(cb, [&](std::optional<value> x) { x ? lg.mark_got(x) : void(b_done = true); }));
                if (a_done) { auto off = std::move(ca); }
                if (b_done) { auto off = std::move(cb); }
            }
        };
        // The closer: a after a third of the values went through (or the
        // producers are done), b after two thirds.
        std::thread closer([&] {
            const std::size_t total = producers * per;
            EXPECT_TRUE(eventually([&] { return lg.received.load() >= total / 3 || producers_done.load() == producers; },
                                   30s));
            a.close();
            EXPECT_TRUE(eventually(
                [&] { return lg.received.load() >= 2 * total / 3 || producers_done.load() == producers; }, 30s));
            b.close();
        });
        std::thread consumers([&] { run_mixed(rt, consumers_f, consumers_t, consumer); });
        run_mixed(rt, producers_f, producers_t, producer);
        closer.join();
        consumers.join();
        lg.check(false);
        EXPECT_EQ(b.size(), 0u) << "values left in the closed channel";
        if (HasFailure()) break;
    }
}

TEST_P(RuntimeTest, TimeoutsRacingHandOffsNeverLoseOrDuplicateAValue) {
    // Senders retry each value until a send case runs (or send_for succeeds);
    // receivers select with timeouts of microseconds too. Deadlines and
    // claims race all the time.
    constexpr std::size_t senders_f = 6, senders_t = 2, receivers_f = 6, receivers_t = 2;
    const std::size_t per = scaled_at_least(3000, 300);
    const std::size_t senders = senders_f + senders_t;
    ledger lg(senders * per);
    channel<value> a, b;
    auto sender = [&](std::size_t p) {
        std::minstd_rand rng(static_cast<unsigned>(p) + 1);
        for (value v = static_cast<value>(p * per); v < (p + 1) * per;) {
            const auto d = std::chrono::microseconds(rng() % 50);
            if (rng() % 4 == 0) {
                if ((rng() % 2 ? a : b).send_for(v, d) == weft::channel_op_status::success) lg.mark_sent(v++);
            } else {
                weft::select(weft::on_send(a, v, [&] { lg.mark_sent(v++); }),
                             weft::on_send(b, v, [&] { lg.mark_sent(v++); }), weft::on_timeout(d));
            }
        }
    };
    auto receiver = [&](std::size_t p) {
        std::minstd_rand rng(static_cast<unsigned>(p) + 1000);
        auto got = [&](std::optional<value> x) { lg.mark_got(x); };
        while (lg.received.load() < senders * per) {
            const auto d = std::chrono::microseconds(rng() % 50);
            if (rng() % 4 == 0) {
                value x = 0;
                if ((rng() % 2 ? a : b).recv_for(x, d) == weft::channel_op_status::success) lg.mark_got(x);
            } else {
                weft::select(weft::on_recv(a, got), weft::on_recv(b, got), weft::on_timeout(d));
            }
        }
    };
    std::thread receivers([&] { run_mixed(rt, receivers_f, receivers_t, receiver); });
    run_mixed(rt, senders_f, senders_t, sender);
    receivers.join();
    lg.check(true);
}

TEST_P(RuntimeTest, StormOfOneShotSelectsOnTwentyChannels) {
    // Consumers each park once in a select over 4 random channels of 20 (a
    // channel may come twice); one producer fiber feeds them through a
    // select over all 20 send cases, then the same number again from a
    // plain thread. Each consumer gets exactly one value.
    constexpr std::size_t nch = 20;
    std::array<channel<value>, nch> chs;
    const std::size_t consumers = scaled_at_least(4000, 500);  // fibers: twice that, within TSan's 8128 threads
    ledger lg(2 * consumers);
    std::vector<weft::join_handle<void>> hs;
    std::atomic<std::size_t> twice{0};
    for (std::size_t c = 0; c < 2 * consumers; ++c) {
        hs.push_back(rt.spawn([&, c] {
            std::minstd_rand rng(static_cast<unsigned>(c) + 1);
            int runs = 0;
            auto got = [&](std::optional<value> v) {
                ++runs;
                lg.mark_got(v);
            };
            weft::select(weft::on_recv(chs[rng() % nch], got), weft::on_recv(chs[rng() % nch], got),
                         weft::on_recv(chs[rng() % nch], got), weft::on_recv(chs[rng() % nch], got));
            if (runs != 1) twice.fetch_add(1);
        }));
    }
    auto feed = [&](value from) {
        for (value v = from; v < from + consumers; ++v) {
            [&]<std::size_t... I>(std::index_sequence<I...>) {
                weft::select(weft::on_send(chs[I], v, [&] { lg.mark_sent(v); })...);
            }(std::make_index_sequence<nch>{});
        }
    };
    auto producer = rt.spawn([&] { feed(0); });
    std::thread plain([&] { feed(static_cast<value>(consumers)); });
    producer.join();
    plain.join();
    for (auto& h : hs) h.join();
    EXPECT_EQ(twice.load(), 0u);
    lg.check(true);
    for (auto& ch : chs) EXPECT_EQ(ch.try_send(0), weft::channel_op_status::full) << "a registration was left behind";
}
