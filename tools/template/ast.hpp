#pragma once
// The parsed script, the one thing the parser and the interpreter share.
// Two node types tagged with their kind rather than a class per construct:
// the subset is small, and a switch over the kind keeps each stage's
// handling of the whole language in one place.

#include <memory>
#include <string>
#include <vector>

#include "tools/template/error.hpp"
#include "tools/template/value.hpp"

namespace patina::tools::tpl::detail {

// Both stages recurse as deep as the script nests: the parser refuses
// deeper scripts and the interpreter checks again, so neither can run out
// of stack.
inline constexpr int kMaxDepth = 256;

struct Stmt;
struct Expr;
using ExprP = std::unique_ptr<Expr>;
using StmtP = std::unique_ptr<Stmt>;

enum class EK {
  Lit, Var, ArrayLit, MapLit, Interp, Unary, Binary, And, Or, Range, Prop, Index, Call, Method, If, Block, Switch
};

// One arm of a switch: constant patterns (values or integer ranges) joined
// by |, or the default _; an optional `if` guard; the arm's value.
struct SwitchCase {
  std::vector<ExprP> patterns;  // empty: the default case
  ExprP guard;
  ExprP body;
};

struct Expr {
  EK kind = EK::Lit;
  Pos pos;
  Value lit;
  std::string name;            // variable, property, function, operator
  std::vector<ExprP> kids;     // operands, args (Method: receiver first), If: cond, then[, else]
  std::vector<std::string> keys;  // Map
  std::vector<StmtP> stmts;    // Block
  bool inclusive = false;      // Range
  std::vector<SwitchCase> cases;  // Switch (kids[0]: the value switched on)
};

enum class SK { Expr, Let, Assign, For, While, Do, Loop, Break, Continue, Fn, Return, Empty };

struct Stmt {
  SK kind = SK::Empty;
  Pos pos;
  bool is_const = false;
  bool semi = false;   // an expression statement ended by ';'
  std::string name, counter, op;  // Do: op is "while" or "until"
  ExprP target;        // Assign
  ExprP e;             // value / condition / iterable / expression / returned value
  ExprP body;          // loops and Fn: a Block expression
  std::vector<std::string> params;  // Fn
};

}  // namespace patina::tools::tpl::detail
