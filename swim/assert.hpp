// swim/assert.hpp — assertions that stay on in release builds (STYLE §2.4).
#pragma once

namespace patina::swim::detail {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line);
}  // namespace patina::swim::detail

#define SWIM_ASSERT(expr)                                                        \
  do {                                                                           \
    if (!(expr)) ::patina::swim::detail::assert_fail(#expr, __FILE__, __LINE__); \
  } while (0)
