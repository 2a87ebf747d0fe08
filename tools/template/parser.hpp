#pragma once
// Recursive descent from tokens to the AST. What the Rhai subset lacks
// (fn, switch, return, ...) and nesting beyond kMaxDepth are refused here,
// when the template is compiled, so a template that compiles fails at
// render time only for what the render itself meets.

#include <vector>

#include "tools/template/ast.hpp"
#include "tools/template/lexer.hpp"

namespace patina::tools::tpl::detail {

std::vector<StmtP> parse(std::vector<Token> toks);

}  // namespace patina::tools::tpl::detail
