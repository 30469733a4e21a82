// The "weft" spdlog logger. Level from WEFT_LOG (default warn). Registered only
// when no logger of that name exists; spdlog's global defaults are never touched.
#pragma once
#include "util/private.hpp"

#include <spdlog/spdlog.h>

namespace weft::detail {
spdlog::logger& log();
}  // namespace weft::detail
