#pragma once
// Errors as values at module boundaries (STYLE.md 2.4).
//
// Result<T> is tl::expected so that moving to C++23 std::expected later
// changes one alias. An Error carries a code that callers branch on and a
// message meant for humans (logs, HTTP bodies); callers never parse it.

#include <string>
#include <utility>

#include <fmt/format.h>
#include <tl/expected.hpp>

namespace patina {

enum class Errc {
  invalid_argument,  // the caller's input is wrong; nothing changed
  not_found,         // the thing asked for does not exist; nothing changed
  busy,              // a bounded resource is full or locked; retry later
  timeout,           // the operation ran out of time and was rolled back
  interrupted,       // cancelled (shutdown, client gone); rolled back
  sql,               // SQLite refused the statement; rolled back
  storage_fatal,     // I/O error, corruption: the node must stop
  storage_full,      // the disk is full or below its free-space floor: rolled back or refused
  io,                // a socket or file operation failed
  protocol,          // a peer or client sent malformed bytes
  shutting_down,     // the component no longer accepts work
  internal,          // a bug or an unexpected state
};

const char* to_string(Errc code);

struct Error {
  Errc code = Errc::internal;
  std::string message;
};

template <class T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> make_error(Errc code, std::string message) {
  return tl::unexpected<Error>(Error{code, std::move(message)});
}

}  // namespace patina

template <>
struct fmt::formatter<patina::Error> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const patina::Error& e, Ctx& ctx) const {
    return fmt::format_to(ctx.out(), "{}: {}", patina::to_string(e.code), e.message);
  }
};
