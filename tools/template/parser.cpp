#include "tools/template/parser.hpp"

#include <utility>

#include <fmt/format.h>

namespace patina::tools::tpl::detail {

namespace {

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  std::vector<StmtP> program() {
    std::vector<StmtP> out;
    while (cur().kind != Tok::End) out.push_back(statement());
    return out;
  }

 private:
  struct DepthGuard {
    int& d;
    DepthGuard(int& depth, Pos p) : d(depth) {
      if (++d > kMaxDepth) fail(p, fmt::format("nesting deeper than {} levels", kMaxDepth));
    }
    ~DepthGuard() { --d; }
  };

  const Token& cur() const { return t_[k_]; }
  const Token& next() { return t_[k_ < t_.size() - 1 ? k_++ : k_]; }
  bool is(std::string_view p) const { return cur().kind == Tok::Punct && cur().text == p; }
  bool is_kw(std::string_view w) const { return cur().kind == Tok::Ident && cur().text == w; }
  bool accept(std::string_view p) {
    if (!is(p)) return false;
    next();
    return true;
  }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case Tok::End: return "end of template";
      case Tok::Str: return "string";
      case Tok::Int:
      case Tok::Float: return "number " + t.text;
      case Tok::Char: return "character literal";
      case Tok::TplBegin:
      case Tok::TplEnd: return "`";
      default: return "'" + t.text + "'";
    }
  }

  [[noreturn]] void unexpected(std::string_view wanted) const {
    fail(cur().pos, fmt::format("unexpected {}, expected {}", describe(cur()), wanted));
  }
  void expect(std::string_view p) {
    if (!accept(p)) unexpected("'" + std::string(p) + "'");
  }
  std::string ident(std::string_view what) {
    if (cur().kind != Tok::Ident || keyword(cur().text)) unexpected(what);
    return next().text;
  }
  static bool keyword(std::string_view w) {
    for (auto k : {"let", "const", "if", "else", "for", "in", "while", "loop", "break", "continue", "true", "false",
                   "fn", "return", "switch", "do", "until", "import", "export", "throw", "try", "catch"}) {
      if (w == k) return true;
    }
    return false;
  }

  static ExprP make(EK kind, Pos pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
  }

  ExprP block() {
    DepthGuard g(depth_, cur().pos);
    auto b = make(EK::Block, cur().pos);
    expect("{");
    while (!is("}")) {
      if (cur().kind == Tok::End) unexpected("'}'");
      b->stmts.push_back(statement());
    }
    next();
    return b;
  }

  // A loop's body, where break and continue are allowed.
  ExprP loop_block() {
    ++loops_;
    auto b = block();
    --loops_;
    return b;
  }

  StmtP statement() {
    auto s = std::make_unique<Stmt>();
    s->pos = cur().pos;
    bool block_like = false;
    if (is("}")) unexpected("a statement");
    if (accept(";")) {
      return s;  // empty statement
    } else if (is_kw("let") || is_kw("const")) {
      s->is_const = next().text == "const";
      s->kind = SK::Let;
      s->name = ident("a variable name");
      if (accept("=")) {
        s->e = expression();
      } else if (s->is_const) {
        unexpected("'='");
      }
    } else if (is_kw("for")) {
      next();
      s->kind = SK::For;
      if (accept("(")) {
        s->name = ident("a variable name");
        expect(",");
        s->counter = ident("a counter variable name");
        expect(")");
      } else {
        s->name = ident("a variable name");
      }
      if (!is_kw("in")) unexpected("'in'");
      next();
      s->e = expression();
      s->body = loop_block();
      block_like = true;
    } else if (is_kw("while")) {
      next();
      s->kind = SK::While;
      s->e = expression();
      s->body = loop_block();
      block_like = true;
    } else if (is_kw("do")) {
      // do { .. } while c;  do { .. } until c;  (the body runs at least once)
      next();
      s->kind = SK::Do;
      s->body = loop_block();
      if (!is_kw("while") && !is_kw("until")) unexpected("'while' or 'until'");
      s->op = next().text;
      s->e = expression();
    } else if (is_kw("loop")) {
      next();
      s->kind = SK::Loop;
      s->body = loop_block();
      block_like = true;
    } else if (is_kw("fn")) {
      // Rhai's script functions: global, hoisted, no access to the
      // caller's variables (the interpreter gives them a scope of their own).
      if (depth_ > 0) fail(s->pos, "functions can only be defined at the top level of a template");
      next();
      s->kind = SK::Fn;
      s->name = ident("a function name");
      expect("(");
      while (!is(")")) {
        std::string param = ident("a parameter name");
        for (const auto& p : s->params) {
          if (p == param) fail(s->pos, fmt::format("parameter {} is declared twice", param));
        }
        s->params.push_back(std::move(param));
        if (!is(")")) expect(",");
      }
      next();
      int loops = std::exchange(loops_, 0);  // break/continue do not cross a function
      s->body = block();
      loops_ = loops;
      block_like = true;
    } else if (is_kw("return")) {
      next();
      s->kind = SK::Return;
      if (!is(";") && !is("}") && cur().kind != Tok::End) s->e = expression();
    } else if (is_kw("break") || is_kw("continue")) {
      s->kind = next().text == "break" ? SK::Break : SK::Continue;
      if (loops_ == 0) fail(s->pos, fmt::format("{} outside a loop", s->kind == SK::Break ? "break" : "continue"));
    } else if (cur().kind == Tok::Ident && keyword(cur().text) && !is_kw("if") && !is_kw("switch") &&
               !is_kw("true") && !is_kw("false")) {
      fail(cur().pos, fmt::format("'{}' is not supported in templates", cur().text));
    } else {
      s->kind = SK::Expr;
      block_like = is_kw("if") || is_kw("switch") || is("{");
      s->e = expression();
      for (auto op : {"=", "+=", "-=", "*=", "/=", "%="}) {
        if (!is(op)) continue;
        auto k = s->e->kind;
        if (k != EK::Var && k != EK::Index && k != EK::Prop) fail(cur().pos, "cannot assign to this expression");
        next();
        s->kind = SK::Assign;
        s->op = op;
        s->target = std::move(s->e);
        s->e = expression();
        block_like = false;
        break;
      }
    }
    if (accept(";")) {
      s->semi = true;
    } else if (!block_like && !is("}") && cur().kind != Tok::End) {
      unexpected("';'");
    }
    return s;
  }

  ExprP expression() {
    DepthGuard g(depth_, cur().pos);
    return binary(0);
  }

  // Precedence levels, lowest first.
  static int level(const Token& t) {
    if (t.kind != Tok::Punct) return -1;
    const auto& p = t.text;
    if (p == "||") return 0;
    if (p == "&&") return 1;
    if (p == "==" || p == "!=") return 2;
    if (p == "<" || p == "<=" || p == ">" || p == ">=") return 3;
    if (p == ".." || p == "..=") return 4;
    if (p == "+" || p == "-") return 5;
    if (p == "*" || p == "/" || p == "%") return 6;
    return -1;
  }

  ExprP binary(int min) {
    if (min > 6) return unary();
    auto lhs = binary(min + 1);
    int chain = 0;
    while (level(cur()) == min) {
      check_chain(++chain);
      const Token& op = next();
      auto e = make(min == 0 ? EK::Or : min == 1 ? EK::And : min == 4 ? EK::Range : EK::Binary, op.pos);
      e->name = op.text;
      e->inclusive = op.text == "..=";
      e->kids.push_back(std::move(lhs));
      e->kids.push_back(binary(min + 1));
      lhs = std::move(e);
      if (min == 4) break;  // ranges do not chain
    }
    return lhs;
  }

  ExprP unary() {
    if (is("-") || is("!")) {
      DepthGuard g(depth_, cur().pos);
      const Token& op = next();
      auto e = make(EK::Unary, op.pos);
      e->name = op.text;
      e->kids.push_back(unary());
      return e;
    }
    return postfix(primary());
  }

  std::vector<ExprP> args() {
    std::vector<ExprP> out;
    expect("(");
    while (!is(")")) {
      out.push_back(expression());
      if (!accept(",")) break;
    }
    expect(")");
    return out;
  }

  // A chain a+b+c... or a.b.c... nests as deep in the AST as its length.
  void check_chain(int chain) const {
    if (depth_ + chain > kMaxDepth) fail(cur().pos, fmt::format("nesting deeper than {} levels", kMaxDepth));
  }

  ExprP postfix(ExprP e) {
    for (int chain = 1;; check_chain(++chain)) {
      if (is(".")) {
        next();
        Pos p = cur().pos;
        auto name = ident("a property or method name");
        if (is("(")) {
          auto m = make(EK::Method, p);
          m->name = name;
          m->kids.push_back(std::move(e));
          for (auto& a : args()) m->kids.push_back(std::move(a));
          e = std::move(m);
        } else {
          auto m = make(EK::Prop, p);
          m->name = name;
          m->kids.push_back(std::move(e));
          e = std::move(m);
        }
      } else if (is("[")) {
        auto ix = make(EK::Index, next().pos);
        ix->kids.push_back(std::move(e));
        ix->kids.push_back(expression());
        expect("]");
        e = std::move(ix);
      } else {
        return e;
      }
    }
  }

  ExprP literal(Pos p, Value v) {
    auto e = make(EK::Lit, p);
    e->lit = std::move(v);
    return e;
  }

  ExprP primary() {
    const Token& t = cur();
    Pos p = t.pos;
    switch (t.kind) {
      case Tok::Int: return literal(p, next().i);
      case Tok::Float: return literal(p, next().f);
      case Tok::Str: return literal(p, next().text);
      case Tok::Char: return literal(p, next().c);
      case Tok::TplBegin: {
        next();
        auto e = make(EK::Interp, p);
        while (cur().kind != Tok::TplEnd) {
          if (cur().kind == Tok::Str) {
            Pos sp = cur().pos;
            e->kids.push_back(literal(sp, next().text));
          } else {
            expect("${");
            e->kids.push_back(expression());
            expect("}");
          }
        }
        next();
        return e;
      }
      case Tok::Ident: {
        if (is_kw("true") || is_kw("false")) return literal(p, next().text == "true");
        if (is_kw("if")) return if_expr();
        if (is_kw("switch")) return switch_expr();
        auto name = ident("an expression");
        if (is("(")) {
          auto c = make(EK::Call, p);
          c->name = name;
          c->kids = args();
          return c;
        }
        auto v = make(EK::Var, p);
        v->name = name;
        return v;
      }
      case Tok::Punct: {
        if (accept("(")) {
          if (accept(")")) return literal(p, Value{});
          auto e = expression();
          expect(")");
          return e;
        }
        if (is("{")) return block();
        if (accept("[")) {
          DepthGuard g(depth_, p);
          auto a = make(EK::ArrayLit, p);
          while (!is("]")) {
            a->kids.push_back(expression());
            if (!accept(",")) break;
          }
          expect("]");
          return a;
        }
        if (accept("#{")) {
          DepthGuard g(depth_, p);
          auto m = make(EK::MapLit, p);
          while (!is("}")) {
            if (cur().kind == Tok::Str) {
              m->keys.push_back(next().text);
            } else {
              m->keys.push_back(ident("a map key"));
            }
            expect(":");
            m->kids.push_back(expression());
            if (!accept(",")) break;
          }
          expect("}");
          return m;
        }
        break;
      }
      default: break;
    }
    unexpected("an expression");
  }

  ExprP if_expr() {
    DepthGuard g(depth_, cur().pos);
    auto e = make(EK::If, next().pos);
    e->kids.push_back(expression());
    e->kids.push_back(block());
    if (is_kw("else")) {
      next();
      e->kids.push_back(is_kw("if") ? if_expr() : block());
    }
    return e;
  }

  // switch x { 1 => a, 2 | 3 => b, 4..=9 if c => { .. }, _ => d }
  ExprP switch_expr() {
    DepthGuard g(depth_, cur().pos);
    auto e = make(EK::Switch, next().pos);
    e->kids.push_back(expression());
    expect("{");
    bool had_default = false;
    while (!is("}")) {
      if (cur().kind == Tok::End) unexpected("'}'");
      if (had_default) fail(cur().pos, "the default case _ must come last in a switch");
      SwitchCase c;
      if (cur().kind == Tok::Ident && cur().text == "_") {
        next();
        had_default = true;
      } else {
        do {
          c.patterns.push_back(case_pattern());
        } while (accept("|"));
      }
      if (is_kw("if")) {
        if (had_default) fail(cur().pos, "the default case _ cannot have a condition");
        next();
        c.guard = expression();
      }
      expect("=>");
      bool braced = is("{");
      c.body = braced ? block() : expression();
      e->cases.push_back(std::move(c));
      if (!accept(",") && !braced && !is("}")) unexpected("',' or '}'");
    }
    next();
    return e;
  }

  // A case value: a literal, a negative number, or a range of them.
  ExprP case_pattern() {
    Pos p = cur().pos;
    auto e = binary(4);
    auto constant = [](const Expr& x) {
      return x.kind == EK::Lit || (x.kind == EK::Unary && x.name == "-" && x.kids[0]->kind == EK::Lit);
    };
    bool ok = constant(*e) || (e->kind == EK::Range && constant(*e->kids[0]) && constant(*e->kids[1]));
    if (!ok) fail(p, "a switch case must be a constant (a literal or a range of literals)");
    return e;
  }

  std::vector<Token> t_;
  std::size_t k_ = 0;
  int depth_ = 0;
  int loops_ = 0;
};

}  // namespace

std::vector<StmtP> parse(std::vector<Token> toks) { return Parser(std::move(toks)).program(); }

}  // namespace patina::tools::tpl::detail
