/// @file
/// `weft::fiber_id`: the identity of a fiber or of a plain OS thread, with the
/// same properties as `std::thread::id` (weft::thread::id is this type).
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>

#include <weft/config.hpp>

namespace weft {

/// Totally ordered, hashable, printable. A default-constructed id means
/// "no thread". Fibers and plain OS threads draw their ids from one counter,
/// so an OS thread's id is distinct from every fiber's. Ids are not reused.
class fiber_id {
public:
    constexpr fiber_id() noexcept = default;
    constexpr explicit fiber_id(std::uint64_t v) noexcept : v_(v) {}

    /// The raw number (0 for "no thread"); useful for logs.
    constexpr std::uint64_t value() const noexcept { return v_; }

    friend constexpr bool operator==(fiber_id, fiber_id) noexcept = default;
    friend constexpr auto operator<=>(fiber_id, fiber_id) noexcept = default;

private:
    std::uint64_t v_ = 0;
};

/// Prints the number, or "none" for the default id.
WEFT_API std::ostream& operator<<(std::ostream& os, fiber_id id);

}  // namespace weft

template <>
struct std::hash<weft::fiber_id> {
    std::size_t operator()(weft::fiber_id id) const noexcept { return std::hash<std::uint64_t>{}(id.value()); }
};
