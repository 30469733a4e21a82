/// @file
/// Umbrella header: everything public in weft.
#pragma once

#include <weft/barrier.hpp>
#include <weft/blocking.hpp>
#include <weft/call_once.hpp>
#include <weft/channel.hpp>
#include <weft/condition_variable.hpp>
#include <weft/config.hpp>
#include <weft/error.hpp>
#include <weft/fiber_id.hpp>
#include <weft/fiber_local.hpp>
#include <weft/future.hpp>
#include <weft/io.hpp>
#include <weft/latch.hpp>
#include <weft/mutex.hpp>
#include <weft/net.hpp>
#include <weft/runtime.hpp>
#include <weft/scope.hpp>
#include <weft/select.hpp>
#include <weft/semaphore.hpp>
#include <weft/shared_mutex.hpp>
#include <weft/this_fiber.hpp>
#include <weft/thread.hpp>
#include <weft/ticker.hpp>
#include <weft/timer.hpp>
#include <weft/wait_group.hpp>
