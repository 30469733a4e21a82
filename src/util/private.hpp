// Included by every internal header: src/ is never part of the public API.
#pragma once
#ifndef WEFT_BUILDING
#error "src/ headers are weft internals: include <weft/weft.hpp> instead"
#endif
