// The futures' slow paths: parking until READY, running a deferred function,
// abandoning with broken_promise, and deleting the last reference (waiting
// for an async call first).
//
// The shared state's protocol lives with its fast paths in
// include/weft/future.hpp (detail::future_state_base): status bits S1, the
// no-lost-wake-up argument S3, lifetime S4-S6, and the memory orders of every
// operation on status_ and refs_. Here:
//  - The waiter loop re-checks READY after every wake-up, because an unpark
//    may be meant for a state that used to live at the same address (S5),
//    and because a timeout or a cancellation may race the publisher.
//  - A cancelled wait whose state became READY meanwhile returns the result:
//    the value is there, and cancellation only stops blocking.
//
// Tested by test/api/future_test.cpp.
#include <weft/detail/park.hpp>
#include <weft/future.hpp>

#include "util/private.hpp"

namespace weft::detail {

void throw_future_error(std::future_errc e) { throw std::future_error(e); }

future_state_base::~future_state_base() = default;

void future_state_base::run_deferred() noexcept {}  // only deferred states are claimed by a waiter (S7)

void future_state_base::abandon_broken() noexcept {
    if (!try_claim()) return;  // the common case: a result was set
    error_ = std::make_exception_ptr(std::future_error(std::future_errc::broken_promise));
    publish();
}

void future_state_base::wait_slow() {
    if (kind_ == kind::deferred && try_claim()) {  // S7: the first waiter runs it
        run_deferred();
        return;
    }
    (void)wait_until_ns(no_deadline);
}

bool future_state_base::wait_until_ns(std::int64_t deadline_ns, bool cancellable) {
    std::uint32_t s = status_.load(std::memory_order_acquire);  // acquire: pairs with publish (S2)
    for (;;) {
        if (s & ready_bit) return true;
        if (!(s & waiters_bit)) {
            // acquire: this RMW may be the one that sees READY (S3), and then the result is read.
            s = status_.fetch_or(waiters_bit, std::memory_order_acquire);
            if (s & ready_bit) return true;
        }
        const park_outcome out = park_if(
            &status_,
            [this] {
                // relaxed: under the bucket lock (S3, parking lot P2); reloaded with acquire below.
                return (status_.load(std::memory_order_relaxed) & ready_bit) == 0;
            },
            deadline_ns, "future", cancellable);
        s = status_.load(std::memory_order_acquire);  // acquire: pairs with publish (S2)
        if (s & ready_bit) return true;
        if (out.result == park_result::cancelled) throw_cancelled();
        if (out.result == park_result::timeout) return false;
        // unparked without READY: a wake-up meant for an earlier state at this address (S5)
    }
}

void future_state_base::destroy_last() noexcept {
    // S6: std::async's waiting destructor. Uncancellable, so it cannot throw.
    if (kind_ == kind::async) (void)wait_until_ns(no_deadline, /*cancellable=*/false);
    delete this;
}

}  // namespace weft::detail
