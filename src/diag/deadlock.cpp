// The "all fibers are asleep" report; invariants Z1-Z5 in diag/deadlock.hpp.
#include "diag/deadlock.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "sched/runtime_impl.hpp"
#include "sync/waiter.hpp"
#include "util/log.hpp"
#include "util/spinlock.hpp"

namespace weft::detail {

bool tick_service_quiet() noexcept;   // time/tick_timer.cpp
bool blocking_pool_quiet() noexcept;  // io/blocking_pool.cpp

namespace deadlock {

namespace {

std::atomic<std::uint64_t> events{0};         // Z3
std::atomic<std::int64_t> own_threads{0};     // Z1
std::atomic<std::uint64_t> last_reported{0};  // Z5: the event sum of the last report, + 1 (0: none)

// No function-local statics here: a fork() child would wait for ever on the
// guard of one whose initialisation a parent thread had begun (found: a child
// hung that way). constinit, and nothing to destroy at exit, when a monitor
// may still look.
constinit std::mutex registry_mu;                    // trivially destructible in libstdc++
std::vector<runtime_impl*>* registry_v = nullptr;  // guarded by registry_mu; made at the first registration, leaked

/// The process's thread count from /proc/self/status, -1 if unknown.
long process_threads() noexcept {
    const int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[4096];
    std::size_t len = 0;
    for (ssize_t n; len < sizeof buf - 1 && (n = ::read(fd, buf + len, sizeof buf - 1 - len)) != 0;) {
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        len += static_cast<std::size_t>(n);
    }
    ::close(fd);
    buf[len] = '\0';
    const char* p = std::strstr(buf, "\nThreads:");
    if (!p) return -1;
    char* end = nullptr;
    const long n = std::strtol(p + 9, &end, 10);
    return end == p + 9 ? -1 : n;
}

/// A thread's name (/proc/self/task/<tid>/comm), or "".
std::string thread_name(int tid) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/task/%d/comm", tid);
    std::string name;
    if (std::FILE* f = std::fopen(path, "re")) {
        char line[64];
        if (std::fgets(line, sizeof line, f)) {
            name = line;
            if (!name.empty() && name.back() == '\n') name.pop_back();
        }
        std::fclose(f);
    }
    return name;
}

/// Z4: events plus every registered runtime's progress. Requires registry_mu.
std::uint64_t event_sum(const std::vector<runtime_impl*>& rts) noexcept {
    std::uint64_t s = events.load(std::memory_order_seq_cst);  // seq_cst: Z3 (header)
    for (const runtime_impl* rt : rts) s += rt->progress();
    return s;
}

}  // namespace

/// Z2's list of plain threads in untimed waits.
struct plain_list {
    spinlock lock;
    plain_wait* head = nullptr;  // guarded by lock

    static plain_list& get() noexcept;

    /// Listed waits whose waiter is still unclaimed (Z2). Requires lock.
    std::int64_t blocked() const noexcept {
        std::int64_t n = 0;
        // acquire: pairs with the claimer's CAS; a claimed waiter is a running thread
        for (const plain_wait* p = head; p; p = p->next_) n += p->w_->word.load(std::memory_order_acquire) == 0;
        return n;
    }

    void describe(std::string& out) const {
        for (const plain_wait* p = head; p; p = p->next_) {
            if (p->w_->word.load(std::memory_order_acquire) != 0) continue;  // acquire: as above
            out += "  thread " + std::to_string(p->tid_);
            const std::string name = thread_name(p->tid_);
            if (!name.empty()) out += " '" + name + "'";
            out += ": ";
            out += p->why_ ? p->why_ : "blocked";
            out += '\n';
        }
    }
};

namespace {
constinit plain_list the_plain_list;  // no destructor to run at exit (see registry_mu)
}  // namespace

plain_list& plain_list::get() noexcept { return the_plain_list; }

mode mode_from_env() {
    const char* v = std::getenv("WEFT_DEADLOCK");
    if (!v || !*v) return mode::abort;
    const std::string_view s(v);
    if (s == "abort") return mode::abort;
    if (s == "warn") return mode::warn;
    if (s == "off") return mode::off;
    throw std::invalid_argument(std::string("weft: WEFT_DEADLOCK='") + v + "' is not 'abort', 'warn' or 'off'");
}

namespace {
constinit std::atomic<int> cached_mode{-1};  // -1: not read yet; not a function-local static (see registry_mu)
}  // namespace

mode current_mode() noexcept {
    // relaxed: every thread computes the same value from the same environment,
    // so a race only reads it twice.
    int m = cached_mode.load(std::memory_order_relaxed);
    if (m < 0) {
        mode read = mode::abort;
        try {
            read = mode_from_env();
        } catch (...) {
        }
        m = static_cast<int>(read);
        cached_mode.store(m, std::memory_order_relaxed);
    }
    return static_cast<mode>(m);
}

namespace {

// fork(): the child has none of the threads the watch accounts for, and a
// lock a parent thread held would stay held there for ever. So the watch's
// locks are taken across the fork, registry then plain list (the report's
// order), and the child starts from nothing: no runtime (the parent's are
// dead there), no listed waiter, no own thread. The forking thread, whatever
// it was in the parent, is a thread the child's watch does not know (Z1).
// While either lock is held, no other fork handler's lock (the timer
// service's, the pool's) is taken, nor the reverse, so those handlers may run
// before or after these: a thread holding all of them waits for nobody who
// holds one.
void before_fork() noexcept {
    registry_mu.lock();
    plain_list::get().lock.lock();
}
void after_fork_in_parent() noexcept {
    plain_list::get().lock.unlock();
    registry_mu.unlock();
}
void after_fork_in_child() noexcept {
    plain_list::get().head = nullptr;
    // As unregister_runtime: the runtimes' share of the sum moves into events (Z4).
    std::uint64_t moved = 1;
    if (registry_v) {
        for (const runtime_impl* rt : *registry_v) moved += rt->progress();
        registry_v->clear();
    }
    own_threads.store(0, std::memory_order_seq_cst);  // seq_cst: Z1
    events.fetch_add(moved, std::memory_order_seq_cst);  // seq_cst: Z3
    last_reported.store(0, std::memory_order_relaxed);  // relaxed: only this thread exists
    plain_list::get().lock.unlock();
    registry_mu.unlock();
}

constinit std::atomic<bool> fork_handlers_installed{false};

}  // namespace

void install_fork_handlers() noexcept {
    // A flag, not a function-local static (see registry_mu). relaxed: the flag
    // only elects the one caller that registers.
    if (fork_handlers_installed.load(std::memory_order_relaxed) ||
        fork_handlers_installed.exchange(true, std::memory_order_relaxed))
        return;
    (void)::pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child);  // ENOMEM only
}

void note_event() noexcept {
    events.fetch_add(1, std::memory_order_seq_cst);  // seq_cst: Z3 (header)
}

own_thread::own_thread() noexcept {
    install_fork_handlers();  // before the count: a fork child must reset it (found by review)
    note_event();             // Z3: before the change
    own_threads.fetch_add(1, std::memory_order_seq_cst);  // seq_cst: Z1 (header)
}

own_thread::~own_thread() {
    note_event();
    own_threads.fetch_sub(1, std::memory_order_seq_cst);  // seq_cst: Z1
}

plain_wait::plain_wait(const waiter& w, const char* why) noexcept
    : w_(&w), why_(why), tid_(0), listed_(current_mode() != mode::off) {
    if (!listed_) return;
    install_fork_handlers();
    tid_ = static_cast<int>(::gettid());
    plain_list& l = plain_list::get();
    l.lock.lock();
    note_event();  // Z3
    next_ = l.head;
    if (l.head) l.head->prev_ = this;
    l.head = this;
    l.lock.unlock();
}

plain_wait::~plain_wait() {
    if (!listed_) return;
    plain_list& l = plain_list::get();
    l.lock.lock();
    note_event();  // Z3
    if (prev_) prev_->next_ = next_;
    else l.head = next_;
    if (next_) next_->prev_ = prev_;
    l.lock.unlock();
}

void register_runtime(runtime_impl& rt) {
    install_fork_handlers();
    std::lock_guard<std::mutex> g(registry_mu);
    if (!registry_v) registry_v = new std::vector<runtime_impl*>;
    registry_v->reserve(registry_v->size() + 1);  // the only throws, before any change
    note_event();                                 // Z3
    registry_v->push_back(&rt);
}

void unregister_runtime(runtime_impl& rt) noexcept {
    std::lock_guard<std::mutex> g(registry_mu);
    if (!registry_v) return;
    auto& rts = *registry_v;
    const auto it = std::find(rts.begin(), rts.end(), &rt);
    if (it == rts.end()) return;
    // Z3, and the sum stays monotonic: its share of the sum moves into events.
    events.fetch_add(1 + rt.progress(), std::memory_order_seq_cst);  // seq_cst: Z3
    rts.erase(it);
}

void watch::look(runtime_impl& self) noexcept {
    if (current_mode() == mode::off) return;
    if (!self.idle.all_parked()) {  // the common case: one atomic load
        quiet_before_ = false;
        return;
    }
    try {
        // The registry mutex is not held while the timer service's lock or the
        // pool's mutex is taken: their fork handlers may take them before ours
        // takes it (deadlock.cpp, fork), and only the same order everywhere is
        // safe. The sum is read under it twice; the registry may change in
        // between, which moves the sum (Z3).
        std::unique_lock<std::mutex> g(registry_mu);
        if (!registry_v) {  // not yet
            quiet_before_ = false;
            return;
        }
        const std::vector<runtime_impl*>& rts = *registry_v;
        if (std::find(rts.begin(), rts.end(), &self) == rts.end()) {  // not yet, or no more
            quiet_before_ = false;
            return;
        }
        const std::uint64_t sum0 = event_sum(rts);
        bool quiet = true;
        std::uint64_t alive = 0;
        for (const runtime_impl* rt : rts) {
            if (!rt->deadlock_quiet()) {
                quiet = false;
                break;
            }
            alive += rt->fibers_alive();
        }
        g.unlock();
        quiet = quiet && tick_service_quiet() && blocking_pool_quiet();
        std::int64_t blocked = 0;
        if (quiet) {
            plain_list& l = plain_list::get();
            l.lock.lock();
            blocked = l.blocked();
            l.lock.unlock();
            // Nothing waits: an idle process, not a deadlock (and no /proc read per look).
            quiet = (alive > 0 || blocked > 0) &&
                    process_threads() == own_threads.load(std::memory_order_seq_cst) + blocked;  // seq_cst: Z1
        }
        if (!quiet) {
            quiet_before_ = false;
            return;
        }
        g.lock();
        const std::uint64_t sum1 = event_sum(rts);
        if (sum0 != sum1) {
            quiet_before_ = false;
            return;
        }
        const auto now = std::chrono::steady_clock::now();
        if (!quiet_before_ || first_sum_ != sum1) {  // the first quiet look of an episode
            quiet_before_ = true;
            first_sum_ = sum0;
            first_at_ = now;
            return;
        }
        if (now - first_at_ < confirm) return;
        // Z5: one report per quiet state, whichever monitor gets here first.
        // relaxed: the registry mutex orders the monitors that get here.
        if (last_reported.exchange(sum1 + 1, std::memory_order_relaxed) == sum1 + 1) return;
        std::string text = "all fibers are asleep - deadlock!\n";
        text += "Nothing can wake them: every worker is asleep, no timer is armed, no fiber waits on a descriptor, ";
        text += "no spawn_blocking job runs, and every other thread of the process is blocked in a weft call ";
        text += "with no deadline.\n";
        for (const runtime_impl* rt : rts) rt->describe_waits(text);
        {
            plain_list& l = plain_list::get();
            std::string threads;
            l.lock.lock();
            try {
                l.describe(threads);
            } catch (...) {
                l.lock.unlock();
                throw;
            }
            l.lock.unlock();
            if (!threads.empty()) text += "plain threads blocked in weft calls:\n" + threads;
        }
        if (current_mode() == mode::warn) {
            text += "(WEFT_DEADLOCK=warn: going on)";
            log().error("{}", text);
            return;
        }
        text += "(WEFT_DEADLOCK=off turns this check off, =warn logs it and goes on)\n";
        const std::string out = "weft: " + text;
        for (std::size_t done = 0; done < out.size();) {
            const ssize_t n = ::write(STDERR_FILENO, out.data() + done, out.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            done += static_cast<std::size_t>(n);
        }
        std::abort();
    } catch (...) {  // out of memory, or a mutex error: no verdict this time
        quiet_before_ = false;
    }
}

}  // namespace deadlock
}  // namespace weft::detail
