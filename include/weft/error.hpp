/// @file
/// weft's error types: `fiber_error`, `operation_cancelled` and `weft::errc`.
#pragma once

#include <string>
#include <system_error>
#include <type_traits>

#include <weft/config.hpp>

namespace weft {

/// weft's own error conditions (category "weft").
enum class errc {
    operation_cancelled = 1,  ///< the fiber was cancelled (runtime shutdown) while blocked
    runtime_shut_down,        ///< spawn or block_on on a runtime that is shutting down
    not_in_runtime,           ///< a call that needs a weft fiber was made elsewhere
};

/// The category of weft::errc; name() is "weft".
WEFT_API const std::error_category& weft_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), weft_category()};
}

/// Thrown by the std::thread-shaped API where std::thread throws std::system_error.
class WEFT_API fiber_error : public std::system_error {
public:
    using std::system_error::system_error;
    ~fiber_error() override;
};

/// Thrown from a blocking call of a fiber that was cancelled (for now: by
/// `runtime::shutdown()`), so that its stack unwinds and destructors run.
/// Cancellation is sticky: every later blocking call of that fiber throws it
/// again, so a fiber that catches it should return soon.
class WEFT_API operation_cancelled : public fiber_error {
public:
    operation_cancelled();
    ~operation_cancelled() override;
};

}  // namespace weft

template <>
struct std::is_error_code_enum<weft::errc> : std::true_type {};
