#pragma once
// Runs a parsed template against a Host, tree-walking the AST. The builtins
// are part of it rather than a table of their own: push assigns to the
// caller's variable, write appends to the output and sql asks the Host, so
// they need the interpreter's state. Each render is bounded (an operation
// budget and kMaxDepth), so a template cannot hang or overflow its renderer.

#include <string>
#include <vector>

#include "tools/template/ast.hpp"
#include "tools/template_script.hpp"

namespace patina::tools::tpl::detail {

// Appends what |stmts| write to |out|; fails (ScriptError) at the first
// error, leaving in |out| what was written before it.
void run(const std::vector<StmtP>& stmts, Host& host, std::string& out);

}  // namespace patina::tools::tpl::detail
