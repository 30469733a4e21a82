#include "sched/runtime_impl.hpp"

#include "diag/stall.hpp"

#include <cerrno>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "diag/deadlock.hpp"
#include "diag/overflow.hpp"
#include "io/blocking_pool.hpp"
#include "sync/wait_queue.hpp"
#include "util/asym_fence.hpp"
#include "util/check.hpp"
#include "util/log.hpp"

namespace weft::detail {

namespace {

constexpr std::size_t kib = 1024;
constexpr std::size_t min_stack = 16 * kib;
constexpr std::size_t max_stack = 1024 * kib * kib;
constexpr std::size_t max_workers = 1024;
constexpr std::size_t max_guard_pages = 256;

#if defined(WEFT_ASAN) || defined(WEFT_TSAN)
constexpr std::size_t sanitizer_stack_multiplier = 4;  // instrumented frames are larger (folly's stackSizeMultiplier)
#else
constexpr std::size_t sanitizer_stack_multiplier = 1;
#endif
constexpr std::size_t default_stack_size = 256 * kib * sanitizer_stack_multiplier;

std::size_t parse_size_env(const char* var, bool allow_suffix) {
    const char* v = std::getenv(var);
    if (!v || !*v) return 0;
    std::string_view s(v);
    std::size_t value = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    std::string_view rest(p, static_cast<std::size_t>(s.data() + s.size() - p));
    std::size_t mult = 1;
    if (allow_suffix && (rest == "K" || rest == "k" || rest == "KiB")) mult = kib, rest = {};
    else if (allow_suffix && (rest == "M" || rest == "m" || rest == "MiB")) mult = kib * kib, rest = {};
    if (ec != std::errc{} || !rest.empty() || value == 0)
        throw std::invalid_argument(std::string("weft: ") + var + "='" + v + "' is not a positive number" +
                                    (allow_suffix ? " (bytes, optional K or M suffix)" : ""));
    if (value > std::numeric_limits<std::size_t>::max() / mult)  // would wrap to a small, legal size
        throw std::invalid_argument(std::string("weft: ") + var + "='" + v + "' is too large");
    return value * mult;
}

/// WEFT_STALL_MS: milliseconds (> 0), or a negative number or "off" for no
/// stall warnings (runtime_options::stall_warning < 0); unset: 100.
std::chrono::milliseconds stall_ms_env() {
    const char* v = std::getenv("WEFT_STALL_MS");
    if (!v || !*v) return std::chrono::milliseconds(100);
    const std::string_view s(v);
    if (s == "off") return std::chrono::milliseconds(-1);
    std::int64_t value = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc{} || p != s.data() + s.size() || value == 0)
        throw std::invalid_argument(std::string("weft: WEFT_STALL_MS='") + v +
                                    "' is not a number of milliseconds (> 0), or a negative number or 'off' "
                                    "for no stall warnings");
    return std::chrono::milliseconds(value < 0 ? -1 : value);
}

std::size_t round_up(std::size_t v, std::size_t to) { return (v + to - 1) / to * to; }

std::size_t deque_capacity() {
#if WEFT_CHAOS
    return 4;  // chaos: overflow and stealing on every few spawns (../shared/STYLE.md, 5)
#else
    return 256;
#endif
}

}  // namespace

runtime_options resolve_options(runtime_options o) {
    if (o.workers == 0) o.workers = parse_size_env("WEFT_WORKERS", false);
    if (o.workers == 0) o.workers = std::max(1u, std::thread::hardware_concurrency());
    if (o.workers > max_workers)
        throw std::invalid_argument("weft: runtime_options::workers = " + std::to_string(o.workers) +
                                    " is over the limit of " + std::to_string(max_workers));
    if (o.stack_size == 0) o.stack_size = parse_size_env("WEFT_STACK_SIZE", true);
    if (o.stack_size == 0) o.stack_size = default_stack_size;
    if (o.stack_size < min_stack || o.stack_size > max_stack)
        throw std::invalid_argument("weft: stack size " + std::to_string(o.stack_size) +
                                    " bytes is outside [16 KiB, 1 GiB]");
    o.stack_size = round_up(o.stack_size, page_size());
    if (o.guard_pages == 0) o.guard_pages = WEFT_DEFAULT_GUARD_PAGES;
    if (o.guard_pages > max_guard_pages)
        throw std::invalid_argument("weft: runtime_options::guard_pages = " + std::to_string(o.guard_pages) +
                                    " is over the limit of 256");
    if (o.name.empty()) o.name = "weft";
    if (o.stall_warning.count() == 0) o.stall_warning = stall_ms_env();
    (void)deadlock::mode_from_env();  // a bad WEFT_DEADLOCK fails here, not silently in the watch
    return o;
}

runtime_impl::runtime_impl(runtime& own, runtime_options o)
    : owner(own), opts(resolve_options(std::move(o))), idle(static_cast<std::uint32_t>(opts.workers)) {
    install_overflow_handler();
    (void)process_guard_mode();
    asym_fence::init();  // before any worker or canceller (util/asym_fence.hpp)
    deadlock::install_fork_handlers();  // before any of our threads counts itself (deadlock.hpp)
    workers.reserve(opts.workers);
    for (std::size_t i = 0; i < opts.workers; ++i)
        workers.push_back(std::make_unique<worker>(*this, static_cast<unsigned>(i), deque_capacity()));
    try {
        for (auto& w : workers) w->start();  // all exist before any runs (worker.hpp lifecycle 1)
    } catch (...) {  // the started ones must be joined, or ~thread terminates
        shutdown();
        throw;
    }
    // Warnings, and with 2+ workers the I/O backstop even without them (S6).
    if (opts.stall_warning.count() > 0 || workers.size() > 1) {
        try {
            monitor_ = std::make_unique<stall_monitor>(*this, opts.stall_warning);
        } catch (...) {  // no thread left: the started workers must be joined, or ~thread terminates
            shutdown();
            throw;
        }
    }
    try {
        deadlock::register_runtime(*this);  // after every thread started (deadlock.hpp Z3)
    } catch (...) {
        shutdown();
        throw;
    }
    log().debug("runtime '{}' started: {} workers, {} KiB stacks, {} guard page(s) by {}", opts.name, opts.workers,
                opts.stack_size / kib, opts.guard_pages, guard_mode_name(process_guard_mode()));
}

runtime_impl::~runtime_impl() { shutdown(); }

// ---------------------------------------------------------------- spawning and queues

fiber* runtime_impl::spawn(task_base* t, const spawn_attrs& attrs) {
    fiber* f = fiber_of_task(t);  // F5
    if (attrs.name) {
        try {
            f->name = new std::string(attrs.name);
        } catch (...) {  // ownership of t is ours (task.hpp)
            t->~task_base();
            free_task_storage(t);
            throw;
        }
    }
    worker* w = worker::current();
    const bool local = w && &w->rt() == this;
    // seq_cst: StoreLoad against shutdown()'s accepting_ store then in-flight load (R1).
    if (!local) outside_spawns_in_flight_.fetch_add(1, std::memory_order_seq_cst);
    if (!accepting_.load(std::memory_order_seq_cst)) {  // seq_cst: R1, see above
        if (!local) outside_spawns_in_flight_.fetch_sub(1, std::memory_order_release);  // release: R1
        t->~task_base();
        free_task_storage(t);
        throw fiber_error(make_error_code(errc::runtime_shut_down),
                          "spawn on runtime '" + opts.name + "', which is shutting down");
    }
    f->task = t;
    f->rt = this;
    f->id = next_id();
    if (local) {
        w->count_spawn();  // R2
        w->schedule_spawned(f);
    } else {
        spawned_outside_.fetch_add(1, std::memory_order_release);  // release: R2 (read by alive() with acquire)
        post(f);
        outside_spawns_in_flight_.fetch_sub(1, std::memory_order_release);  // release: R1, the fiber is counted
    }
    return f;
}

void runtime_impl::post(fiber* f) noexcept {
    f->next_run = nullptr;
    post_chain(f, 1);
}

void runtime_impl::post_chain(fiber* head, std::size_t n) noexcept {
    // relaxed: the counter is sequenced before the push, whose release (and the
    // notifier's seq_cst fence) publish both (R3).
    injector_len_.fetch_add(static_cast<std::int64_t>(n), std::memory_order_relaxed);
    while (!injector_.push(head)) {
    }
    idle.notify_one();
}

fiber* runtime_impl::injector_pop() noexcept {
    if (!injector_maybe_nonempty()) return nullptr;
    fiber* chain = nullptr;
    if (!injector_.pop(chain)) return nullptr;
    std::int64_t n = 0;
    for (fiber* f = chain; f; f = f->next_run) ++n;
    injector_len_.fetch_sub(n, std::memory_order_relaxed);  // relaxed: after the pop (R3)
    return chain;
}

void runtime_impl::schedule_woken(fiber* f, bool stealable) noexcept {
    worker* w = worker::current();
    if (w && &w->rt() == this) {
        if (stealable) w->push_woken(f);
        else w->schedule_woken(f);
    } else {
        // R6: the woken fiber may finish and the runtime be shut down while
        // post() still touches the injector and the idle set.
        outside_wakes_in_flight_.fetch_add(1, std::memory_order_relaxed);  // relaxed: sequenced before the push that publishes f
        post(f);
        outside_wakes_in_flight_.fetch_sub(1, std::memory_order_release);  // release: our last touch of *this (R6)
    }
}

std::int64_t runtime_impl::earliest_timer() const noexcept {
    std::int64_t e = timer_queue::none;
    for (const auto& w : workers) e = std::min(e, w->earliest_timer());
    return e;
}

void runtime_impl::nudge_sleeper(std::int64_t deadline_ns, const worker* by) noexcept {
    for (const auto& w : workers)
        if (w.get() != by && w->nudge_if_sleeping_past(deadline_ns)) return;
}

bool runtime_impl::any_work_visible() const noexcept {
    if (injector_maybe_nonempty()) return true;
    for (const auto& w : workers)  // LIFO slots are not stealable: their owners drain them
        if (w->stealable_depth() != 0) return true;
    return false;
}

// ---------------------------------------------------------------- registry and cancellation

void runtime_impl::registry_insert(fiber* f) noexcept {
    shard& s = shards_[f->id % shard_count];
    s.lock.lock();
    f->reg_prev = nullptr;
    f->reg_next = s.head;
    if (s.head) s.head->reg_prev = f;
    s.head = f;
    s.lock.unlock();
}

void runtime_impl::registry_remove(fiber* f) noexcept {
    shard& s = shards_[f->id % shard_count];
    s.lock.lock();
    if (f->reg_prev) f->reg_prev->reg_next = f->reg_next;
    else s.head = f->reg_next;
    if (f->reg_next) f->reg_next->reg_prev = f->reg_prev;
    f->reg_prev = f->reg_next = nullptr;
    s.lock.unlock();
}

std::uint64_t runtime_impl::alive() const noexcept {
    // R2: every exit counter first, then every spawn counter.
    std::uint64_t exited = 0;
    for (const auto& w : workers) exited += w->n_exited.load(std::memory_order_acquire);  // acquire: R2
    std::uint64_t spawned = spawned_outside_.load(std::memory_order_acquire);  // acquire: R2
    for (const auto& w : workers) spawned += w->n_spawned.load(std::memory_order_acquire);  // acquire: R2
    return spawned > exited ? spawned - exited : 0;
}

void runtime_impl::cancel(fiber* f) noexcept {
    request_cancel(f);
    asym_fence::heavy();  // F7: the post-switch hook then sees the flag, or we see `parked`
    wake_cancelled(f);
}

void runtime_impl::request_cancel(fiber* f) noexcept {
    f->cancel_requested.store(true, std::memory_order_seq_cst);  // seq_cst: F7 (the store half of the fence pair)
}

void runtime_impl::wake_cancelled(fiber* f) noexcept {
    if (f->try_claim_current(wake_reason::cancelled)) f->rt->schedule_woken(f);
}

void runtime_impl::cancel_all() noexcept {
    // Flags first, one fence, then the claims (F7). A fiber registered between the
    // passes parks with cancelling_ already set (shutdown stored it before any sweep).
    for (auto& s : shards_) {
        s.lock.lock();  // a registered fiber stays allocated while we hold the lock (R5, F1)
        for (fiber* f = s.head; f; f = f->reg_next) request_cancel(f);
        s.lock.unlock();
    }
    asym_fence::heavy();
    for (auto& s : shards_) {
        s.lock.lock();
        for (fiber* f = s.head; f; f = f->reg_next) wake_cancelled(f);
        s.lock.unlock();
    }
}

void runtime_impl::shutdown() {
    std::lock_guard<std::mutex> lk(shutdown_mu_);
    if (shut_down_) return;
    if (worker* w = worker::current(); w && &w->rt() == this)
        fatal("runtime::shutdown", "called from one of the runtime's own fibers (it would wait for itself)");
    if (running_job_for(this))
        fatal("runtime::shutdown",
              "called from a spawn_blocking job that one of the runtime's fibers waits for (it would wait for itself)");
    accepting_.store(false, std::memory_order_seq_cst);  // seq_cst: R1 (StoreLoad with the in-flight load below)
    cancelling_.store(true, std::memory_order_seq_cst);  // seq_cst: seen by every later park check; crossings are swept (F7)
    while (outside_spawns_in_flight_.load(std::memory_order_seq_cst) != 0)  // seq_cst: R1
        std::this_thread::yield();
    // Wake the parked until nothing is alive: a fiber may park for the first
    // time (R5) just after a sweep, and cancelled fibers may still be unwinding.
    for (;;) {
        cancel_all();
        if (alive() == 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    monitor_.reset();  // S5 (diag/stall.hpp): before the workers exit, so it only looks at live threads
    stop_.store(true, std::memory_order_release);  // release: pairs with stopping()
    idle.wake_all();
    for (auto& w : workers) w->wake_thread();
    for (auto& w : workers) w->join();
    // R6. The increment preceded the push of a fiber that has since finished (alive() == 0),
    // so a waker still inside post() is counted here.
    while (outside_wakes_in_flight_.load(std::memory_order_acquire) != 0)  // acquire: pairs with the release above
        std::this_thread::yield();
    WEFT_CHECK(!injector_maybe_nonempty());
    // Nobody polls our epoll set any more: forget its registrations now, not at
    // destruction, so that another runtime's fibers register afresh with their own
    // (those parked on a descriptor we registered are woken to retry; reactor.hpp E2).
    io.detach_all();
    deadlock::unregister_runtime(*this);  // every thread of ours is gone (deadlock.hpp Z1)
    shut_down_ = true;
    log().debug("runtime '{}' shut down", opts.name);
}

// ---------------------------------------------------------------- diagnostics

bool runtime_impl::deadlock_quiet() const noexcept {
    // seq_cst loads throughout: the watch reads these beside its own seq_cst
    // counters (deadlock.hpp, memory orders); it is a slow path.
    if (cancelling_.load(std::memory_order_seq_cst) || stop_.load(std::memory_order_seq_cst)) return false;
    if (!idle.all_parked()) return false;
    if (outside_spawns_in_flight_.load(std::memory_order_seq_cst) != 0 ||
        outside_wakes_in_flight_.load(std::memory_order_seq_cst) != 0)
        return false;
    if (injector_len_.load(std::memory_order_seq_cst) != 0) return false;
    for (const auto& w : workers)
        if (w->queue_depth() != 0) return false;
    if (earliest_timer() != timer_queue::none) return false;
    // As alive() (R2): every "done" counter before any "waits" counter, so the
    // difference never undercounts.
    std::uint64_t done = 0, waits = 0;
    for (const auto& w : workers) done += w->n_open_done.load(std::memory_order_acquire);  // acquire: as R2
    for (const auto& w : workers) waits += w->n_open_waits.load(std::memory_order_acquire);  // acquire: as R2
    return waits <= done;
}

std::uint64_t runtime_impl::progress() const noexcept {
    // acquire: single-writer counters (deadlock.hpp, memory orders)
    std::uint64_t s = spawned_outside_.load(std::memory_order_acquire);
    for (const auto& w : workers) {
        s += w->n_switches.load(std::memory_order_acquire) + w->n_lone_yields.load(std::memory_order_acquire) +
             w->n_spawned.load(std::memory_order_acquire) + w->n_exited.load(std::memory_order_acquire) +
             w->n_parks.load(std::memory_order_acquire) + w->n_unparks.load(std::memory_order_acquire) +
             w->n_open_waits.load(std::memory_order_acquire) + w->n_open_done.load(std::memory_order_acquire);
    }
    return s;
}

void runtime_impl::describe_waits(std::string& out) const {
    out += "runtime '" + opts.name + "' (" + std::to_string(workers.size()) + " worker" +
           (workers.size() == 1 ? "" : "s") + "), " + std::to_string(alive()) + " fiber" +
           (alive() == 1 ? "" : "s") + " alive:\n";
    std::vector<std::pair<std::uint64_t, std::string>> lines;  // by id, not by shard
    for (const auto& s : shards_) {
        auto& lock = const_cast<spinlock&>(s.lock);
        lock.lock();  // fibers stay allocated while registered (R5)
        try {
            for (fiber* f = s.head; f; f = f->reg_next) {
                if (f->finished.load(std::memory_order_acquire)) continue;  // acquire: F2
                const char* why = f->wait_reason.load(std::memory_order_relaxed);  // relaxed: diagnostics
                std::string line = "  fiber " + std::to_string(f->id);
                if (std::string name = f->name_copy(); !name.empty()) line += " '" + name + "'";
                line += ": ";
                line += why ? why : "parked";
                line += '\n';
                lines.emplace_back(f->id, std::move(line));
            }
        } catch (...) {
            lock.unlock();
            throw;
        }
        lock.unlock();
    }
    std::sort(lines.begin(), lines.end());
    for (const auto& l : lines) out += l.second;
}

runtime_stats runtime_impl::stats() const {
    runtime_stats st;
    st.workers = workers.size();
    st.fibers_alive = alive();
    std::uint64_t parks = 0, unparks = 0;
    for (const auto& w : workers) {
        auto ld = [](const std::atomic<std::uint64_t>& c) { return c.load(std::memory_order_relaxed); };  // relaxed: stats
        st.spawned += ld(w->n_spawned);
        st.switches += ld(w->n_switches);
        st.steals += ld(w->n_steals);
        parks += ld(w->n_parks);
        unparks += ld(w->n_unparks);
        st.worker_sleeps += ld(w->n_sleeps);
        std::size_t d = w->queue_depth();
        st.queue_depth.push_back(d);
        st.fibers_runnable += d;
    }
    st.spawned += spawned_outside_.load(std::memory_order_relaxed);  // relaxed: statistics
    st.parks = parks;
    st.fibers_parked = parks > unparks ? parks - unparks : 0;
    std::int64_t inj = injector_len_.load(std::memory_order_relaxed);  // relaxed: statistics
    st.fibers_runnable += inj > 0 ? static_cast<std::uint64_t>(inj) : 0;
    std::int64_t stacks = stacks_mapped.load(std::memory_order_relaxed);  // relaxed: statistics
    st.stacks_mapped = stacks > 0 ? static_cast<std::uint64_t>(stacks) : 0;
    st.guard_mode = guard_mode_name(process_guard_mode());
    return st;
}

namespace {
/// The length of the well-formed UTF-8 sequence at the front of s (RFC 3629:
/// no overlongs, no surrogates, at most U+10FFFF), or 0.
std::size_t utf8_sequence(std::string_view s) {
    const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    const unsigned char c = b(0);
    std::size_t n = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // the second byte's range
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4) n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else return 0;
    if (s.size() < n || b(1) < lo || b(1) > hi) return 0;
    for (std::size_t i = 2; i < n; ++i)
        if (b(i) < 0x80 || b(i) > 0xbf) return 0;
    return n;
}

/// s as a JSON string: quotes, backslashes and control characters escaped;
/// a byte that is not part of well-formed UTF-8 becomes U+FFFD (JSON text is
/// Unicode: a Latin-1 name made the whole dump unparsable).
void json_string(std::ostringstream& os, std::string_view s) {
    os << '"';
    for (std::size_t i = 0; i < s.size();) {
        const char c = s[i];
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x80) {
            if (c == '"' || c == '\\') os << '\\' << c;
            else if (u < 0x20 || u == 0x7f) os << "\\u00" << "0123456789abcdef"[u >> 4] << "0123456789abcdef"[u & 0xf];
            else os << c;
            ++i;
        } else if (const std::size_t n = utf8_sequence(s.substr(i)); n != 0) {
            os << s.substr(i, n);
            i += n;
        } else {
            os << "\\ufffd";
            ++i;
        }
    }
    os << '"';
}
}  // namespace

std::string runtime_impl::describe_fiber(std::uint64_t id) const {
    std::string out = "fiber " + std::to_string(id);
    for (const auto& s : shards_) {
        auto& lock = const_cast<spinlock&>(s.lock);
        lock.lock();  // fibers stay allocated while registered (R5)
        for (fiber* f = s.head; f; f = f->reg_next)
            if (f->id == id) out += " '" + f->name_copy() + "'";
        lock.unlock();
    }
    return out;
}

std::string runtime_impl::dump_json() const {
    std::ostringstream os;
    os << '[';
    bool first = true;
    for (const auto& s : shards_) {
        auto& lock = const_cast<spinlock&>(s.lock);
        lock.lock();  // fibers stay allocated while registered (R5)
        for (fiber* f = s.head; f; f = f->reg_next) {
            // A finished fiber may stay registered while its result dies (R2): not live.
            if (f->finished.load(std::memory_order_acquire)) continue;  // acquire: F2
            const park_state ps = fiber::state_of(f->pword.load(std::memory_order_relaxed));  // relaxed: diagnostics
            const char* why = f->wait_reason.load(std::memory_order_relaxed);  // relaxed: diagnostics
            const char* state = ps == park_state::parked || ps == park_state::parking ? "parked"
                                : ps == park_state::woken                           ? "runnable"
                                                                                    : "running_or_runnable";
            std::string name = f->name_copy();
            os << (first ? "" : ",") << "{\"id\":" << f->id << ",\"name\":";
            json_string(os, name);
            os << ",\"state\":\"" << state << "\",\"wait_reason\":";
            if (why) json_string(os, why);
            else os << "null";
            os << ",\"worker\":" << f->last_worker.load(std::memory_order_relaxed) << '}';  // relaxed: diagnostics
            first = false;
        }
        lock.unlock();
    }
    os << ']';
    return os.str();
}

}  // namespace weft::detail

// ==================================================================== public API

namespace weft {

runtime::runtime() : runtime(runtime_options{}) {}

runtime::runtime(runtime_options opts) : impl_(new detail::runtime_impl(*this, std::move(opts))) {}

runtime::~runtime() {
    if (detail::worker* w = detail::worker::current(); w && &w->rt() == impl_) {
        // exit() on one of its fibers (a global runtime's destructor runs there), or a
        // fiber destroying its own runtime: shutdown would wait for itself. Its workers
        // are abandoned, as the default runtime's are at exit, and exit() keeps its
        // status (it aborted). The runtime stays allocated for them.
        detail::log().debug("runtime '{}' destroyed on one of its own fibers: its workers are abandoned",
                            impl_->opts.name);
        return;
    }
    impl_->shutdown();
    delete impl_;
}

void runtime::shutdown() { impl_->shutdown(); }
runtime_stats runtime::stats() const { return impl_->stats(); }
std::string runtime::dump_json() const { return impl_->dump_json(); }
const runtime_options& runtime::options() const noexcept { return impl_->opts; }

runtime* runtime::current() noexcept {
    detail::worker* w = detail::worker::current();
    return w ? &w->rt().owner : nullptr;
}

runtime& default_runtime() {
    // Never destroyed: it lives until the process exits and its fibers are then
    // abandoned, as goroutines are when main returns (DESIGN "Runtime").
    static runtime* rt = new runtime(runtime_options{.name = "default"});
    return *rt;
}

}  // namespace weft
