#include "util/log.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <spdlog/sinks/stdout_color_sinks.h>

#include "util/check.hpp"

namespace weft::detail {
namespace {

std::shared_ptr<spdlog::logger> make_logger() {
    if (auto existing = spdlog::get("weft")) return existing;
    auto lg = std::make_shared<spdlog::logger>("weft", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    spdlog::level::level_enum lvl = spdlog::level::warn;
    if (const char* env = std::getenv("WEFT_LOG"); env && *env) {
        lvl = spdlog::level::from_str(env);  // unknown names map to off
        if (lvl == spdlog::level::off && std::strcmp(env, "off") != 0) {
            std::fprintf(stderr, "weft: WEFT_LOG=%s is not a level (trace, debug, info, warn, error, critical, off)\n",
                         env);
            lvl = spdlog::level::warn;
        }
    }
    lg->set_level(lvl);
    try {
        spdlog::register_logger(lg);
    } catch (const spdlog::spdlog_ex&) {  // registered meanwhile by someone else
        if (auto existing = spdlog::get("weft")) return existing;
    }
    return lg;
}

}  // namespace

spdlog::logger& log() {
    // Leaked: fibers of the default runtime (never shut down) may still log while
    // static destructors run at exit (a use after free, found by review).
    static std::shared_ptr<spdlog::logger>* const lg = new std::shared_ptr<spdlog::logger>(make_logger());
    return **lg;
}

void check_failed(const char* func, const char* expr, const char* file, int line, int err) noexcept {
    char buf[512];
    int n = std::snprintf(buf, sizeof buf, "%s: check failed: %s (%s:%d, errno %d: %s)\n", func, expr, file, line,
                          err, std::strerror(err));
    if (n > 0) (void)!::write(2, buf, static_cast<size_t>(n) < sizeof buf ? n : sizeof buf - 1);
    std::abort();
}

void fatal(const char* func, const char* msg) noexcept {
    char buf[512];
    int n = std::snprintf(buf, sizeof buf, "weft: %s: %s\n", func, msg);
    if (n > 0) (void)!::write(2, buf, static_cast<size_t>(n) < sizeof buf ? n : sizeof buf - 1);
    std::abort();
}

}  // namespace weft::detail
