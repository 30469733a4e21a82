// The epoll reactor and the poll-descriptor table; invariants E1-E10 in
// io/reactor.hpp.
#include "io/reactor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <new>
#include <string>
#include <system_error>

#include <weft/detail/park.hpp>
#include <weft/error.hpp>
#include <weft/io.hpp>

#include "sched/fiber.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"
#include "sync/wait_queue.hpp"
#include "util/log.hpp"
#include "util/spinlock.hpp"

namespace weft::detail {

namespace {

constexpr std::uint64_t interrupt_tag = ~std::uint64_t{0};  // data of the eventfd (no fd has gen ~0 and fd -1)
constexpr std::uintptr_t closed_token = 1;                  // io_close woke the waiter

struct alignas(64) poll_desc {
    spinlock lk;
    waiter_list rq, wq;          // fibers waiting to read / write; guarded by lk
    bool rready = false;         // E2: an edge found no reader; guarded by lk
    bool wready = false;
    bool rsticky = false;        // E6: hang-up, error or urgent data seen; guarded by lk
    std::atomic<bool> evicted{false};  // E11: close() began with calls in flight; written under lk, loaded by thread waiters
    std::atomic<std::uint64_t> rseq{0};  // E6/E7: read-side events harvested; written under lk, loaded without it
    std::atomic<std::uint64_t> wseq{0};  // E7: write-side events harvested; as rseq
    reactor* owner = nullptr;    // owned registration (E2); guarded by lk
    int oneshot_ep = -1;         // the epoll set a one-shot arm went to last (E3); guarded by lk
    std::atomic<std::uint32_t> gen{0};  // E1: written under lk; read by thread waiters
};
static_assert(sizeof(poll_desc) == 128, "poll_desc: two cache lines per descriptor (E1's table)");

// E1's table: fd -> poll_desc, in chunks installed once and never freed.
constexpr int chunk_bits = 10;
constexpr int chunk_size = 1 << chunk_bits;
constexpr int max_chunks = 4096;  // 4M descriptors
std::array<std::atomic<poll_desc*>, max_chunks> chunks{};

poll_desc& desc_of(int fd) {
    if (fd < 0) throw std::system_error(EBADF, std::generic_category(), "weft io: negative descriptor");
    const int c = fd >> chunk_bits;
    if (c >= max_chunks) {
        // Beyond the table: a number no open descriptor has is EBADF, as poll(2)
        // would say; an open one (RLIMIT_NOFILE raised past 4M) is refused.
        if (::fcntl(fd, F_GETFD) < 0) throw std::system_error(EBADF, std::generic_category(), "weft io: bad descriptor");
        throw std::system_error(EMFILE, std::generic_category(),
                                "weft io: descriptor " + std::to_string(fd) + " is above weft's limit of " +
                                    std::to_string(max_chunks * chunk_size - 1));
    }
    poll_desc* chunk = chunks[c].load(std::memory_order_acquire);  // acquire: pairs with the installing CAS
    if (!chunk) {
        auto* fresh = new poll_desc[chunk_size];
        // acq_rel: publish our chunk (release) or read the winner's (acquire).
        if (chunks[c].compare_exchange_strong(chunk, fresh, std::memory_order_acq_rel, std::memory_order_acquire)) {
            chunk = fresh;
        } else {
            delete[] fresh;
        }
    }
    return chunk[fd & (chunk_size - 1)];
}

poll_desc* find_desc(int fd) noexcept {
    if (fd < 0 || (fd >> chunk_bits) >= max_chunks) return nullptr;
    poll_desc* chunk = chunks[fd >> chunk_bits].load(std::memory_order_acquire);  // acquire: as in desc_of
    return chunk ? &chunk[fd & (chunk_size - 1)] : nullptr;
}

std::uint64_t event_data(int fd, std::uint32_t gen) noexcept {
    return static_cast<std::uint32_t>(fd) | (std::uint64_t{gen} << 32);
}

[[noreturn]] void throw_errno(int e, const char* what) { throw std::system_error(e, std::generic_category(), what); }
[[noreturn]] void throw_errno(int e, const std::string& what) {
    throw std::system_error(e, std::generic_category(), what);
}

/// Waiters claimed under a pd lock, woken after it is released (as channels
/// do, C-style): the wake may take the idle set's mutex and a futex syscall,
/// which should not run while other workers spin on the descriptor.
class claimed_waiters {
public:
    /// Claims every waiter of `q` (pd lock held); `token` tells them why
    /// (0: readiness, closed_token: io_close). Returns how many it claimed.
    std::size_t claim_all(waiter_list& q, std::uintptr_t token) noexcept {
        std::size_t n = 0;
        while (waiter* w = q.pop_front()) {  // Q1: unlinked before the wake
            if (!claim_waiter(*w)) continue;  // its deadline or the canceller came first (Q2)
            prefetch_stack(*w);
            w->token = token;
            w->next = head_;  // the list links are free once unlinked
            head_ = w;
            ++n;
        }
        return n;
    }
    /// After the pd lock is released. E5: onto this worker (LIFO slot, then its woken queue).
    void wake() noexcept {
        while (waiter* w = head_) {
            head_ = w->next;  // read before the wake: the record lives on the woken fiber's stack
            complete_unpark(*w);
        }
    }
    ~claimed_waiters() { wake(); }

private:
    /// E10. always_inline: GCC deems a function made only of prefetches pure and, at
    /// -O2, drops the call (found by review: no prefetch left in a debugoptimized build).
    [[gnu::always_inline]] static void prefetch_stack(const waiter& w) noexcept {
        if (!w.f) return;
        const char* sp = static_cast<const char*>(w.f->ctx.fctx);
        for (int i = 0; i < prefetch_stack_lines; ++i) __builtin_prefetch(sp + 64 * i, 1, 3);
        if (w.key) __builtin_prefetch(w.key, 1, 3);  // a reactor waiter's key is its hint (waiter.hpp)
    }
    static constexpr int prefetch_stack_lines = 16;  // 1 KiB (E10)
    waiter* head_ = nullptr;
};

/// The events a one-shot arm asks for: the directions somebody waits for.
std::uint32_t oneshot_mask(const poll_desc& p) noexcept {
    std::uint32_t m = EPOLLONESHOT;
    if (!p.rq.empty()) m |= EPOLLIN | EPOLLRDHUP;
    if (!p.wq.empty()) m |= EPOLLOUT;
    return m;
}

/// E3: (re-)arms fd one-shot in `ep` for the current waiters. errno on failure.
int arm_oneshot(poll_desc& p, int ep, int fd) noexcept {
    epoll_event ev{};
    ev.events = oneshot_mask(p);
    ev.data.u64 = event_data(fd, p.gen.load(std::memory_order_relaxed));  // relaxed: we hold lk, its writer's lock
    int op = p.oneshot_ep == ep ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (::epoll_ctl(ep, op, fd, &ev) == 0) {
        p.oneshot_ep = ep;
        return 0;
    }
    if (errno == EEXIST || errno == ENOENT) {  // registered by an earlier arm / closed and reused since: the other op
        op = op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (::epoll_ctl(ep, op, fd, &ev) == 0) {
            p.oneshot_ep = ep;
            return 0;
        }
    }
    return errno;
}

const char* wait_name(bool write) noexcept { return write ? "wait_writable" : "wait_readable"; }

bool expired(std::int64_t deadline_ns) noexcept {
    return deadline_ns != no_deadline && deadline_ns <= steady_now_ns();
}

/// One poll(2) of fd, not waiting: > 0 ready, 0 not, < 0 failed (errno).
int poll_now(int fd, bool write, short& revents) noexcept {
    pollfd pfd{fd, static_cast<short>(write ? POLLOUT : (POLLIN | POLLRDHUP)), 0};
    int n;
    do n = ::poll(&pfd, 1, 0);
    while (n < 0 && errno == EINTR);
    revents = pfd.revents;
    return n;
}

/// A wait whose deadline has already passed still reports readiness that is
/// there (as std::future::wait_until does, and as a data call that need not
/// wait succeeds past its deadline): returns if fd is ready now, else throws
/// timed_out. One poll(2), no parking; fibers and plain threads alike.
void expired_wait(int fd, bool write) {
    if (fd < 0) throw_errno(EBADF, wait_name(write));  // poll(2) would skip it: 0, "not ready"
    short revents = 0;
    const int n = poll_now(fd, write, revents);
    if (n < 0) throw_errno(errno, "poll");
    if (n > 0 && (revents & POLLNVAL)) throw_errno(EBADF, wait_name(write));
    if (n == 0) throw_errno(ETIMEDOUT, std::string(wait_name(write)) + ": deadline exceeded");
}

/// A plain thread's wait: poll(2) in slices, so that io_close (a gen change)
/// and the deadline are noticed.
void thread_wait(int fd, bool write, std::int64_t deadline_ns) {
    poll_desc& p = desc_of(fd);
    const std::uint32_t gen0 = p.gen.load(std::memory_order_acquire);  // acquire: pairs with io_close's bump
    for (;;) {
        if (p.evicted.load(std::memory_order_acquire))  // acquire: E11, pairs with io_evict's release
            throw_errno(EBADF, "weft io: descriptor closed while waiting");
        int slice_ms = 100;
        if (deadline_ns != no_deadline) {
            const std::int64_t now = steady_now_ns();
            if (deadline_ns <= now) return expired_wait(fd, write);
            const std::int64_t left_ms = (deadline_ns - now + 999999) / 1000000;
            if (left_ms < slice_ms) slice_ms = static_cast<int>(left_ms);
        }
        pollfd pfd{fd, static_cast<short>(write ? POLLOUT : (POLLIN | POLLRDHUP)), 0};
        const int n = ::poll(&pfd, 1, slice_ms);
        if (n < 0 && errno != EINTR) throw_errno(errno, "poll");
        if (p.gen.load(std::memory_order_acquire) != gen0)  // acquire: as above
            throw_errno(EBADF, "weft io: descriptor closed while waiting");
        if (n > 0) {
            if (pfd.revents & POLLNVAL) throw_errno(EBADF, wait_name(write));
            return;
        }
    }
}

/// A fiber's wait: `w` is linked on `q` of the locked pd. Unlocks it.
void park_on_desc(poll_desc& p, waiter& w, waiter_list& q, bool write, std::int64_t deadline_ns) {
    worker::current()->count_open_wait();  // an open wait: the deadlock watch counts it (worker.hpp)
    const wake_reason why = park_waiter(w, p.lk, write ? "io write" : "io read", deadline_ns);
    worker::current()->count_open_done();  // perhaps another worker's counter: the sums match (worker.hpp)
    if (why == wake_reason::notified) {
        if (w.token == closed_token) throw_errno(EBADF, "weft io: descriptor closed while waiting");
        return;
    }
    p.lk.lock();  // Q3
    if (w.linked) q.remove(w);
    p.lk.unlock();
    if (why == wake_reason::cancelled) throw_cancelled();
    throw_errno(ETIMEDOUT, std::string(wait_name(write)) + ": deadline exceeded");
}

fiber* current_fiber() noexcept {
    worker* wk = worker::current();
    return wk ? wk->running() : nullptr;
}

}  // namespace

// ---------------------------------------------------------------- reactor

reactor::reactor() {
    ep_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) throw_errno(errno, "epoll_create1");
    event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (event_fd_ < 0) {
        const int e = errno;
        ::close(ep_);
        throw_errno(e, "eventfd");
    }
    // Level-triggered, drained only by the blocking poller: an edge could be
    // taken by another worker's non-blocking poll and the sleeper would never
    // learn of its wake-up (E4).
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = interrupt_tag;
    if (::epoll_ctl(ep_, EPOLL_CTL_ADD, event_fd_, &ev) != 0) {
        const int e = errno;
        ::close(event_fd_);
        ::close(ep_);
        throw_errno(e, "epoll_ctl(eventfd)");
    }
    // epoll_pwait2 (nanosecond timeouts) needs Linux 5.11; an older kernel or a
    // seccomp filter refuses it, and without this probe every poll would fail
    // as "no events": no fiber would ever wake for I/O.
    epoll_event probe{};
    const timespec zero{};
    if (::epoll_pwait2(ep_, &probe, 1, &zero, nullptr) < 0 && (errno == ENOSYS || errno == EPERM)) pwait2_ = false;
}

reactor::~reactor() {
    detach_all();
    ::close(event_fd_);
    ::close(ep_);
}

void reactor::interrupt() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(event_fd_, &one, sizeof one);
}

std::size_t reactor::poll(std::int64_t timeout_ns, epoll_event* evs, int capacity) noexcept {
    timespec ts{};
    if (timeout_ns > 0) ts = {static_cast<time_t>(timeout_ns / 1000000000), static_cast<long>(timeout_ns % 1000000000)};
    int n;
    if (pwait2_) {
        n = ::epoll_pwait2(ep_, evs, capacity, timeout_ns < 0 ? nullptr : &ts, nullptr);
    } else {  // milliseconds, rounded up: never before the deadline
        const std::int64_t ms = timeout_ns < 0 ? -1 : std::min<std::int64_t>((timeout_ns + 999999) / 1000000, INT_MAX);
        n = ::epoll_wait(ep_, evs, capacity, static_cast<int>(ms));
    }
    if (n < 0 && errno != EINTR) {
        // Cannot happen with a valid epoll fd and buffer; say so once rather than
        // report "no events" in silence (fibers waiting for I/O would never wake).
        // The blocking poller stops using epoll (failed()), so it does not spin.
        if (!failed_.exchange(true, std::memory_order_relaxed))  // relaxed: a flag for one log line
            log().error("weft: epoll_wait failed ({}): fibers waiting for I/O will not be woken",
                        std::generic_category().message(errno));
    }
    std::size_t woken = 0;
    for (int i = 0; i < n; ++i) {  // E10: a hint, the descriptors of a batch are cold
        const std::uint64_t data = evs[i].data.u64;
        if (data == interrupt_tag) continue;
        if (const poll_desc* p = find_desc(static_cast<int>(static_cast<std::uint32_t>(data)))) {
            __builtin_prefetch(p, 1, 3);  // both lines: gen, owner and the ready bits are on the second
            __builtin_prefetch(reinterpret_cast<const char*>(p) + 64, 1, 3);
        }
    }
    for (int i = 0; i < n; ++i) {
        const std::uint64_t data = evs[i].data.u64;
        if (data == interrupt_tag) {
            if (timeout_ns != 0) {  // the blocking poller: consume the interrupt (E4)
                std::uint64_t v;
                [[maybe_unused]] ssize_t r = ::read(event_fd_, &v, sizeof v);
            }
            continue;
        }
        const int fd = static_cast<int>(static_cast<std::uint32_t>(data));
        const auto gen = static_cast<std::uint32_t>(data >> 32);
        poll_desc* p = find_desc(fd);
        if (!p) continue;
        const std::uint32_t e = evs[i].events;
        const bool rd = (e & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
        const bool wr = (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0;
        p->lk.lock();
        if (p->gen.load(std::memory_order_relaxed) != gen) {  // relaxed: written under lk. E1: stale
            p->lk.unlock();
            continue;
        }
        claimed_waiters ready;
        if (rd) {
            // relaxed load: we hold lk, the writers' lock. release store: a caller whose
            // io_seq (acquire) sees this count also sees what came before the edge, such
            // as a close()'s C bit, set before the shutdown(2) that made the edge (net.cpp N4).
            p->rseq.store(p->rseq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
            if (e & (EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) p->rsticky = true;
            const std::size_t k = ready.claim_all(p->rq, 0);
            if (k == 0 && p->owner) p->rready = true;  // E2: keep the edge for the next reader
            woken += k;
        }
        if (wr) {
            p->wseq.store(p->wseq.load(std::memory_order_relaxed) + 1, std::memory_order_release);  // as rseq
            const std::size_t k = ready.claim_all(p->wq, 0);
            if (k == 0 && p->owner) p->wready = true;
            woken += k;
        }
        if (!p->owner && p->oneshot_ep == ep_ && (!p->rq.empty() || !p->wq.empty()) &&
            arm_oneshot(*p, ep_, fd) != 0)  // E3: cannot re-arm (closed under us): let them retry
            woken += ready.claim_all(p->rq, 0) + ready.claim_all(p->wq, 0);
        p->lk.unlock();
        ready.wake();
    }
    return woken;
}

void reactor::detach_all() noexcept {
    for (auto& c : chunks) {
        poll_desc* chunk = c.load(std::memory_order_acquire);  // acquire: as in desc_of
        if (!chunk) continue;
        for (int i = 0; i < chunk_size; ++i) {
            poll_desc& p = chunk[i];
            claimed_waiters retry;
            p.lk.lock();
            if (p.owner == this || p.oneshot_ep == ep_) {
                if (p.owner == this) add_active(-1);
                p.owner = nullptr;
                p.oneshot_ep = -1;
                p.rready = p.wready = false;
                // Other runtimes' fibers (if any) retry and register with their own reactor.
                retry.claim_all(p.rq, 0);
                retry.claim_all(p.wq, 0);
            }
            p.lk.unlock();
        }
    }
}

// ---------------------------------------------------------------- waits

namespace {

/// E2: registers fd once, for the descriptor's life (until io_close). p.lk
/// held; released if it throws.
void register_owned(poll_desc& p, int fd, reactor& r) {
    if (!p.owner) {
        epoll_event ev{};
        // EPOLLPRI: urgent data stops a read short with bytes behind it (E6).
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
        ev.data.u64 = event_data(fd, p.gen.load(std::memory_order_relaxed));  // relaxed: we hold lk
        // EEXIST: a one-shot arm (io::wait_readable on this fd) is in our set,
        // disarmed or level-triggered: replace it (MOD reports the current
        // state as an edge, as ADD does).
        int rc = ::epoll_ctl(r.epoll_fd(), EPOLL_CTL_ADD, fd, &ev);
        if (rc != 0 && errno == EEXIST) rc = ::epoll_ctl(r.epoll_fd(), EPOLL_CTL_MOD, fd, &ev);
        if (rc != 0) {
            const int e = errno;
            p.lk.unlock();
            throw_errno(e, "epoll_ctl(ADD)");
        }
        if (p.oneshot_ep == r.epoll_fd()) p.oneshot_ep = -1;
        p.owner = &r;
        p.rready = p.wready = false;
        p.rsticky = false;  // E6: the registration reports the current state as an edge
        r.add_active(1);
    }
}

}  // namespace

namespace {

/// io_wait_owned's body. With `seq` (E7) it returns without parking when an
/// edge of that direction was harvested since the caller loaded `seq`; with
/// `drained` as well (E6, reads), also when a sticky state is set, and a
/// plain thread returns at once.
void owned_wait(int fd, bool write, std::int64_t deadline_ns, const std::uint64_t* seq, bool drained,
                const void* touch) {
    fiber* self = current_fiber();
    if (!self) {
        if (drained) return;  // a plain thread's wait is poll(2), level-triggered: nothing to save
        return thread_wait(fd, write, deadline_ns);
    }
    if (expired(deadline_ns)) return expired_wait(fd, write);
    poll_desc& p = desc_of(fd);
    p.lk.lock();
    if (p.evicted.load(std::memory_order_relaxed)) {  // relaxed: written under lk, which we hold (E11)
        p.lk.unlock();
        throw_errno(EBADF, "weft io: descriptor closed while waiting");
    }
    register_owned(p, fd, self->rt->io);
    bool& ready = write ? p.wready : p.rready;
    // relaxed: we hold lk, the sequences' writers' lock.
    const bool moved = seq && (write ? p.wseq : p.rseq).load(std::memory_order_relaxed) != *seq;
    if (ready || moved || (drained && p.rsticky)) {
        ready = false;  // E2: consumed; the caller's syscall follows
        p.lk.unlock();
        return;
    }
    waiter w{self};
    w.key = touch;  // E10 (waiter.hpp: a reactor waiter's key is its prefetch hint)
    waiter_list& q = write ? p.wq : p.rq;
    q.push_back(w);
    park_on_desc(p, w, q, write, deadline_ns);
}

}  // namespace

void io_wait_owned(int fd, bool write, std::int64_t deadline_ns, const std::uint64_t* seq, const void* touch) {
    owned_wait(fd, write, deadline_ns, seq, false, touch);
}

std::uint64_t io_seq(int fd, bool write) {
    // acquire: keeps the load before the system call that follows it (E6/E7 need
    // the sequence from before that call; a later value would hide an edge), and
    // pairs with the poller's release of the count (net.cpp N4: a close seen).
    const poll_desc& p = desc_of(fd);
    return (write ? p.wseq : p.rseq).load(std::memory_order_acquire);
}

void io_wait_drained(int fd, std::uint64_t seq, std::int64_t deadline_ns, const void* touch) {
    if (expired(deadline_ns)) return;  // N5: the recv decides
    try {
        owned_wait(fd, false, deadline_ns, &seq, true, touch);
    } catch (const std::system_error& e) {
        if (e.code() != std::errc::timed_out) throw;  // the deadline: let the caller's recv report it
    }
}

void io_wait(int fd, bool write, std::int64_t deadline_ns) {
    fiber* self = current_fiber();
    if (!self) return thread_wait(fd, write, deadline_ns);
    // A stale number that now names the runtime's epoll fd or eventfd: re-arming it
    // one-shot would disarm the workers' wake-ups (E4).
    reactor& r = self->rt->io;
    if (r.is_internal(fd)) throw_errno(EBADF, wait_name(write));
    if (expired(deadline_ns)) return expired_wait(fd, write);
    poll_desc& p = desc_of(fd);
    p.lk.lock();
    if (p.evicted.load(std::memory_order_relaxed)) {  // relaxed: written under lk, which we hold (E11)
        p.lk.unlock();
        throw_errno(EBADF, wait_name(write));
    }
    if (p.owner) {  // one of weft's sockets: its registration serves
        p.lk.unlock();
        // Edge-triggered: an edge that already woke one of the socket's own calls is
        // gone, so ask the kernel first, as a plain thread's poll(2) would, with the
        // edge count loaded before the question (E7: poll(2) stands in for the
        // system call that said EAGAIN).
        const std::uint64_t seq = io_seq(fd, write);
        short revents = 0;
        const int n = poll_now(fd, write, revents);
        if (n < 0) throw_errno(errno, "poll");
        if (n > 0) {
            if (revents & POLLNVAL) throw_errno(EBADF, wait_name(write));
            return;
        }
        return io_wait_owned(fd, write, deadline_ns, &seq);
    }
    waiter_list& q = write ? p.wq : p.rq;
    waiter w{self};
    q.push_back(w);
    if (const int err = arm_oneshot(p, r.epoll_fd(), fd)) {  // E3: with w linked, so its direction is armed
        q.remove(w);
        p.lk.unlock();
        // A regular file or directory: epoll refuses it (EPERM), poll(2) calls it always
        // ready, and a plain thread's wait (poll) says so too: so do we.
        if (err == EPERM) return;
        throw_errno(err, wait_name(write));  // EBADF for a closed fd, as a plain thread's poll says
    }
    r.add_active(1);
    struct active_guard {
        reactor& r;
        ~active_guard() { r.add_active(-1); }
    } guard{r};
    park_on_desc(p, w, q, write, deadline_ns);
}

void io_spent() noexcept {
    worker* w = worker::current();
    if (w && w->running()) (void)w->spend_io_budget();
}

namespace {

/// io_close and io_forget (E1, E8): a new generation with no registration and
/// no ready state; every waiter is claimed into `out` with `token`. p.lk held.
void reset_locked(poll_desc& p, claimed_waiters& out, std::uintptr_t token) noexcept {
    p.evicted.store(false, std::memory_order_relaxed);  // relaxed: E11; the gen store's release publishes it
    // release: a thread waiter that sees the new gen sees the reset (acquire in thread_wait).
    p.gen.store(p.gen.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    if (p.owner) p.owner->add_active(-1);
    p.owner = nullptr;
    p.rready = p.wready = false;
    p.rsticky = false;
    out.claim_all(p.rq, token);
    out.claim_all(p.wq, token);
}

}  // namespace

void io_forget(int fd) noexcept {
    poll_desc* p = find_desc(fd);
    if (!p) return;
    claimed_waiters retry;  // none, unless the descriptor was misused by two owners: they retry
    p->lk.lock();
    if (p->owner) {
        // E8: release: removes the registration of the open file; adoption: ENOENT
        // when the old file is gone (closed behind weft's back), harmless.
        (void)::epoll_ctl(p->owner->epoll_fd(), EPOLL_CTL_DEL, fd, nullptr);
        reset_locked(*p, retry, 0);
    }
    p->lk.unlock();
}

void io_evict(int fd) noexcept {
    // desc_of, not find_desc: a call that has not reached its wait yet may be about
    // to install this number's table chunk; with no descriptor to mark, it would
    // then wait on an unmarked one and nothing would wake it.
    poll_desc* p = nullptr;
    try {
        p = &desc_of(fd);
    } catch (...) {  // no memory for the chunk, or a number beyond the table
        (void)::shutdown(fd, SHUT_RDWR);  // the older way (it also ends duplicates' connection)
        return;
    }
    claimed_waiters closed;
    p->lk.lock();
    p->evicted.store(true, std::memory_order_release);  // release: E11, for thread waiters' acquire
    closed.claim_all(p->rq, closed_token);
    closed.claim_all(p->wq, closed_token);
    p->lk.unlock();
    closed.wake();
}

int io_close(int fd) noexcept {
    if (poll_desc* p = find_desc(fd)) {
        claimed_waiters closed;
        p->lk.lock();
        reset_locked(*p, closed, closed_token);
        p->oneshot_ep = -1;
        p->lk.unlock();
        closed.wake();
    }
    return ::close(fd);
}

}  // namespace weft::detail
