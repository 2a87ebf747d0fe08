#pragma once
// Where a script went wrong, and how the engine says so. The lexer, parser,
// interpreter and value display all fail from deep inside their recursion,
// so they throw ScriptError instead of passing errors back up by hand; the
// two public entry points (tools/template_script.cpp) catch it and return a
// Result naming name:line:column, so nothing throws past them.

#include <string>
#include <utility>

namespace patina::tools::tpl::detail {

struct Pos {
  int line = 1;
  int col = 1;
};

struct ScriptError {
  Pos pos;
  std::string message;
};

[[noreturn]] inline void fail(Pos pos, std::string message) { throw ScriptError{pos, std::move(message)}; }

}  // namespace patina::tools::tpl::detail
