#pragma once
// Logging over spdlog: named loggers per subsystem sharing one sink, plain
// text or JSON lines, and a filter changeable at run time.
//
// Filter syntax (a subset of RUST_LOG): "info", "debug", or a default level
// followed by per-logger overrides: "info,swim=debug,db=warn".

#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "core/result.hpp"

namespace patina::core::log {

enum class Format { plaintext, json };

// Sets the sink (stderr) and format for every logger. Call once at startup,
// before any thread starts; later calls replace the format.
void init(Format format, bool colors);

// Returns the named logger, creating it with the current filter.
std::shared_ptr<spdlog::logger> get(const std::string& name);

// Applies a filter to every existing and future logger.
Result<void> set_filter(std::string_view filter);
// Restores the filter given at startup (RUST_LOG or "info").
void reset_filter();
void set_default_filter(std::string_view filter);
std::string current_filter();

void flush_all();

}  // namespace patina::core::log
