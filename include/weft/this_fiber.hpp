/// @file
/// Calls about the calling fiber; `weft::this_thread` is an alias so that
/// code written for std::this_thread works after a rename.
#pragma once

#include <string>
#include <string_view>

#include <weft/config.hpp>
#include <weft/fiber_id.hpp>
#include <weft/timer.hpp>  // this_fiber::sleep_for / sleep_until

namespace weft::this_fiber {

/// Lets other runnable fibers of this worker run first; the caller goes to the
/// back of the worker's queue. Returns at once when nothing else is runnable
/// there. On a plain thread: std::this_thread::yield(). May suspend.
WEFT_API void yield() noexcept;

/// The calling fiber's id; on a plain thread, that thread's id (distinct from
/// every fiber's). Never suspends.
WEFT_API fiber_id get_id() noexcept;

/// Names the calling fiber (shown in dumps and fault reports). On a plain
/// thread, names the thread in weft's reports. Never suspends.
WEFT_API void set_name(std::string_view name);

/// The name given by set_name (empty by default). Never suspends.
WEFT_API std::string get_name();

/// True when called on a weft fiber. Never suspends.
WEFT_API bool in_fiber() noexcept;

}  // namespace weft::this_fiber

namespace weft {
namespace this_thread = this_fiber;
}
