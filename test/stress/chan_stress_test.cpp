// weft::channel<T> under load: many producers and consumers on every kind
// (rendezvous, bounded(1), bounded(64), unbounded), placed on fibers, plain
// threads or both, using every send and receive form (blocking, try_ with
// yields, timed with short timeouts whose deadlines race the hand-offs), then
// closed while consumers wait. Each value is received exactly once (count,
// sum, and a per-value tally), and each consumer sees each producer's values
// in order (FIFO). Also: close racing blocked senders (a send that failed
// keeps its value, one that succeeded is received once), and a pipeline of
// stages alternating fibers and threads. Bounded counts (scaled() under
// sanitizers); upper bounds on time only catch hangs.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <weft/channel.hpp>
#include <weft/weft.hpp>

#include "runtime_fixture.hpp"
#include "sync_fixture.hpp"

// RuntimeTest is instantiated over 1, 2 and 4 workers once for this
// executable, in spawn_storm_test.cpp.

using namespace std::chrono_literals;
using weft::channel;
using weft::channel_op_status;
using weft_test::scaled;

namespace {

using kind = weft_test::channel_kind;
constexpr kind all_kinds[] = {
    {"rendezvous", false, 0},
    {"bounded(1)", false, 1},
    {"bounded(64)", false, 64},
    {"unbounded", true, 0},
};

enum class placement { fibers, threads, mixed };
constexpr placement all_placements[] = {placement::fibers, placement::threads, placement::mixed};
const char* name_of(placement p) {
    switch (p) {
        case placement::fibers: return "fibers only";
        case placement::threads: return "threads only";
        case placement::mixed: return "fibers and threads on both sides";
    }
    return "?";
}
/// Role index i of a side runs on a fiber? Mixed: producers on even, consumers on odd indices.
bool on_fiber(placement p, int i, bool producer) {
    if (p == placement::fibers) return true;
    if (p == placement::threads) return false;
    return (i % 2 == 0) == producer;
}

using weft_test::runner;

constexpr std::uint64_t value_of(int producer, int seq) {
    return (static_cast<std::uint64_t>(producer) << 32) | static_cast<std::uint32_t>(seq);
}

/// Checks what the consumers got against producers x per values
/// value_of(p, 0 .. per-1), each exactly once, in order per producer per consumer.
void check_exactly_once(const std::vector<std::vector<std::uint64_t>>& got, int producers, int per) {
    std::vector<std::uint8_t> tally(static_cast<std::size_t>(producers) * per, 0);
    std::uint64_t count = 0, sum = 0, expected_sum = 0;
    int out_of_order = 0, foreign = 0;
    for (const auto& g : got) {
        std::vector<std::int64_t> last(producers, -1);
        for (std::uint64_t v : g) {
            const auto p = static_cast<int>(v >> 32);
            const auto s = static_cast<std::int64_t>(v & 0xffffffffu);
            if (p >= producers || s >= per) {
                ++foreign;
                continue;
            }
            if (s <= last[p]) ++out_of_order;
            last[p] = s;
            if (tally[static_cast<std::size_t>(p) * per + s] < 255) ++tally[static_cast<std::size_t>(p) * per + s];
            ++count;
            sum += v;
        }
    }
    for (int p = 0; p < producers; ++p)
        for (int s = 0; s < per; ++s) expected_sum += value_of(p, s);
    EXPECT_EQ(foreign, 0) << "values that were never sent";
    EXPECT_EQ(out_of_order, 0) << "a consumer saw a producer's values out of order";
    EXPECT_EQ(count, static_cast<std::uint64_t>(producers) * per);
    EXPECT_EQ(sum, expected_sum);
    const auto once = std::count(tally.begin(), tally.end(), 1);
    EXPECT_EQ(once, static_cast<std::ptrdiff_t>(tally.size())) << "values lost or duplicated";
}

}  // namespace

TEST_P(RuntimeTest, ChanStressMpmcEveryKindEveryForm) {
    // Producer i sends with: 0 send, 1 try_send + yield, 2 send_for (short
    // timeouts, retried), 3 send_until. Consumer j receives with: 0 recv,
    // 1 try_recv + yield, 2 recv_for (short timeouts), 3 range-for. The
    // channel is closed once every producer returned; consumers stop at closed.
    constexpr int producers = 4, consumers = 4;
    for (const kind& k : all_kinds) {
        for (placement pl : all_placements) {
            SCOPED_TRACE(std::string(k.name) + ", " + name_of(pl));
            // Hand-offs to plain threads cost a futex wake each: fewer values there.
            const int per = static_cast<int>(std::max<std::size_t>(scaled(pl == placement::fibers ? 24000 : 10000), 2000));
            auto ch = k.make<std::uint64_t>();
            std::vector<std::vector<std::uint64_t>> got(consumers);
            std::atomic<std::uint64_t> timeouts{0};
            {
                std::vector<std::unique_ptr<runner>> cs;
                for (int j = 0; j < consumers; ++j) {
                    cs.push_back(std::make_unique<runner>(rt, on_fiber(pl, j, false), [&, j] {
                        auto& mine = got[j];
                        std::uint64_t x = 0;
                        std::uint64_t missed = 0;
                        switch (j % 4) {
                            case 0:
                                while (auto v = ch.recv()) mine.push_back(*v);
                                break;
                            case 1:
                                for (;;) {
                                    const auto st = ch.try_recv(x);
                                    if (st == channel_op_status::success) mine.push_back(x);
                                    else if (st == channel_op_status::closed) break;
                                    else weft::this_fiber::yield();
                                }
                                break;
                            case 2:
                                for (;;) {
                                    const auto st = ch.recv_for(x, std::chrono::microseconds(50 + mine.size() % 200));
                                    if (st == channel_op_status::success) mine.push_back(x);
                                    else if (st == channel_op_status::closed) break;
                                    else ++missed;
                                }
                                break;
                            default:
                                for (std::uint64_t v : ch) mine.push_back(v);
                                break;
                        }
                        timeouts.fetch_add(missed, std::memory_order_relaxed);  // relaxed: a statistic
                    }));
                }
                {
                    std::vector<std::unique_ptr<runner>> ps;
                    for (int i = 0; i < producers; ++i) {
                        ps.push_back(std::make_unique<runner>(rt, on_fiber(pl, i, true), [&, i] {
                            std::uint64_t missed = 0;
                            for (int s = 0; s < per; ++s) {
                                const std::uint64_t v = value_of(i, s);
                                switch (i % 4) {
                                    case 0: ch.send(v); break;
                                    case 1:
                                        while (ch.try_send(v) == channel_op_status::full) weft::this_fiber::yield();
                                        break;
                                    case 2:
                                        while (ch.send_for(v, std::chrono::microseconds(20 + s % 100)) ==
                                               channel_op_status::timeout)
                                            ++missed;
                                        break;
                                    default:
                                        while (ch.send_until(v, std::chrono::steady_clock::now() + 30us) ==
                                               channel_op_status::timeout)
                                            ++missed;
                                        break;
                                }
                            }
                            timeouts.fetch_add(missed, std::memory_order_relaxed);  // relaxed: a statistic
                        }));
                    }
                }  // producers joined
                EXPECT_TRUE(ch.close());
            }  // consumers joined
            check_exactly_once(got, producers, per);
            EXPECT_EQ(ch.size(), 0u);
            std::uint64_t x = 0;
            EXPECT_EQ(ch.try_recv(x), channel_op_status::closed);
        }
    }
}

TEST_P(RuntimeTest, ChanStressTimeoutsRacingHandOffs) {
    // Both sides use only very short timeouts (0-20 us), so deadlines fire
    // while a peer is claiming the waiter: a value handed to a waiter whose
    // timeout won would be lost, one taken from a sender that then reports
    // timeout (and retries) would arrive twice.
    constexpr int producers = 3, consumers = 3;
    for (const kind& k : all_kinds) {
        for (placement pl : all_placements) {
            SCOPED_TRACE(std::string(k.name) + ", " + name_of(pl));
            const int per = static_cast<int>(std::max<std::size_t>(scaled(pl == placement::fibers ? 20000 : 8000), 1500));
            auto ch = k.make<std::uint64_t>();
            std::vector<std::vector<std::uint64_t>> got(consumers);
            std::atomic<int> producers_done{0};
            {
                std::vector<std::unique_ptr<runner>> rs;
                for (int j = 0; j < consumers; ++j) {
                    rs.push_back(std::make_unique<runner>(rt, on_fiber(pl, j, false), [&, j] {
                        std::mt19937 rng(static_cast<unsigned>(j));
                        std::uniform_int_distribution<int> us(0, 20);
                        std::uint64_t x = 0;
                        for (;;) {
                            const auto st = (rng() & 1) ? ch.recv_for(x, std::chrono::microseconds(us(rng)))
                                                        : ch.recv_until(x, std::chrono::steady_clock::now() +
                                                                               std::chrono::microseconds(us(rng)));
                            if (st == channel_op_status::success) got[j].push_back(x);
                            else if (st == channel_op_status::closed) break;
                        }
                    }));
                }
                for (int i = 0; i < producers; ++i) {
                    rs.push_back(std::make_unique<runner>(rt, on_fiber(pl, i, true), [&, i] {
                        std::mt19937 rng(1000u + static_cast<unsigned>(i));
                        std::uniform_int_distribution<int> us(0, 20);
                        for (int s = 0; s < per; ++s)
                            while (ch.send_for(value_of(i, s), std::chrono::microseconds(us(rng))) !=
                                   channel_op_status::success) {
                            }
                        if (producers_done.fetch_add(1) + 1 == producers) ch.close();
                    }));
                }
            }
            check_exactly_once(got, producers, per);
        }
    }
}

TEST_P(RuntimeTest, ChanStressCloseRacingSenders) {
    // Producers send move-only values until the channel is closed under them
    // (some blocked, some about to send). A send that threw keeps its value;
    // every send that returned is received exactly once.
    constexpr int producers = 4, consumers = 2;
    const int rounds = static_cast<int>(std::max<std::size_t>(scaled(30), 10));
    for (const kind& k : all_kinds) {
        if (k.unbounded) continue;  // never blocks: nothing to race with
        for (placement pl : all_placements) {
            SCOPED_TRACE(std::string(k.name) + ", " + name_of(pl));
            for (int round = 0; round < rounds; ++round) {
                auto ch = k.make<std::unique_ptr<std::uint64_t>>();
                std::vector<std::uint64_t> sent_count(producers, 0);
                std::atomic<int> kept{0}, lost{0};
                std::vector<std::vector<std::uint64_t>> got(consumers);
                std::atomic<std::uint64_t> received{0};
                {
                    std::vector<std::unique_ptr<runner>> rs;
                    for (int j = 0; j < consumers; ++j) {
                        rs.push_back(std::make_unique<runner>(rt, on_fiber(pl, j, false), [&, j] {
                            for (auto& p : ch) {
                                if (p) got[j].push_back(*p);
                                received.fetch_add(1);
                                if (j == 0 && received.load() % 7 == 0) weft::this_fiber::yield();  // fall behind
                            }
                        }));
                    }
                    for (int i = 0; i < producers; ++i) {
                        rs.push_back(std::make_unique<runner>(rt, on_fiber(pl, i, true), [&, i] {
                            for (int s = 0;; ++s) {
                                auto p = std::make_unique<std::uint64_t>(value_of(i, s));
                                try {
                                    ch.send(std::move(p));
                                } catch (const weft::channel_closed&) {
                                    if (p && *p == value_of(i, s)) kept.fetch_add(1);
                                    else lost.fetch_add(1);
                                    return;
                                }
                                ++sent_count[i];
                            }
                        }));
                    }
                    // Close after a varying amount of traffic.
                    const std::uint64_t after = 20 + static_cast<std::uint64_t>(round % 5) * 40;
                    EXPECT_TRUE(weft_test::eventually([&] { return received.load() >= after; }))
                        << received.load() << " values received";
                    EXPECT_TRUE(ch.close());
                }
                EXPECT_EQ(kept.load(), producers);
                EXPECT_EQ(lost.load(), 0) << "a send that threw channel_closed lost its value";
                // Exactly the prefix each producer saw succeed, each once, in order.
                std::vector<std::uint64_t> per_producer(producers, 0);
                std::vector<std::uint64_t> all;
                for (const auto& g : got) all.insert(all.end(), g.begin(), g.end());
                std::sort(all.begin(), all.end());
                EXPECT_TRUE(std::adjacent_find(all.begin(), all.end()) == all.end()) << "a value arrived twice";
                int foreign = 0;
                for (std::uint64_t v : all) {
                    const auto p = static_cast<std::size_t>(v >> 32);
                    // Only values whose send returned: sequence numbers below the producer's count.
                    if (p >= per_producer.size() || (v & 0xffffffffu) >= sent_count[p]) ++foreign;
                    else ++per_producer[p];
                }
                EXPECT_EQ(foreign, 0) << "a value whose send threw (or never happened) arrived";
                for (int i = 0; i < producers; ++i) EXPECT_EQ(per_producer[i], sent_count[i]) << "producer " << i;
                if (testing::Test::HasFailure()) return;
            }
        }
    }
}

TEST_P(RuntimeTest, ChanStressPipelineAcrossFibersAndThreads) {
    // Values flow through a chain of stages, each adding one, alternating
    // fibers and plain threads and channel kinds; the last stage sums.
    constexpr int stages = 8;
    const int n = static_cast<int>(std::max<std::size_t>(scaled(20000), 2000));
    std::vector<channel<std::uint64_t>> links;
    for (int s = 0; s <= stages; ++s) links.push_back(all_kinds[s % 4].make<std::uint64_t>());
    std::uint64_t sum = 0, count = 0;
    std::vector<std::unique_ptr<runner>> rs;
    for (int s = 0; s < stages; ++s) {
        rs.push_back(std::make_unique<runner>(rt, s % 2 == 0, [&, s] {
            for (std::uint64_t v : links[s]) links[s + 1].send(v + 1);
            links[s + 1].close();
        }));
    }
    rs.push_back(std::make_unique<runner>(rt, true, [&] {
        for (std::uint64_t v : links[stages]) {
            sum += v;
            ++count;
        }
    }));
    for (int i = 0; i < n; ++i) links[0].send(static_cast<std::uint64_t>(i));
    links[0].close();
    rs.clear();  // joins every stage
    EXPECT_EQ(count, static_cast<std::uint64_t>(n));
    EXPECT_EQ(sum, static_cast<std::uint64_t>(n) * (n - 1) / 2 + static_cast<std::uint64_t>(n) * stages);
}
