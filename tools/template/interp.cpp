#include "tools/template/interp.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <utility>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "tools/template/format.hpp"
#include "tools/template/value.hpp"

namespace patina::tools::tpl::detail {

namespace {

constexpr std::uint64_t kMaxOperations = 10'000'000;

class Interp {
 public:
  Interp(Host& host, std::string& out) : host_(host), out_(out) {}

  void run(const std::vector<StmtP>& stmts) {
    // Functions are hoisted: callable above their definition. A later
    // definition of the same name and arity replaces an earlier one.
    for (const auto& s : stmts) {
      if (s->kind == SK::Fn) functions_[{s->name, s->params.size()}] = s.get();
    }
    for (const auto& s : stmts) {
      exec(*s);
      if (flow_ == Flow::Return) return;  // a top-level return ends the render
    }
  }

 private:
  enum class Flow { Normal, Break, Continue, Return };
  struct Var {
    std::string name;
    Value v;
    bool is_const = false;
  };
  struct Depth {
    int& d;
    Depth(int& depth, Pos p) : d(depth) {
      if (++d > kMaxDepth) fail(p, fmt::format("nesting deeper than {} levels", kMaxDepth));
    }
    ~Depth() { --d; }
  };
  struct Scope {
    std::vector<Var>& vars;
    std::size_t mark;
    explicit Scope(std::vector<Var>& v) : vars(v), mark(v.size()) {}
    ~Scope() { vars.resize(mark); }
  };

  void tick(Pos p) {
    if (++ops_ > kMaxOperations) fail(p, fmt::format("template ran more than {} operations", kMaxOperations));
  }

  Var* find(const std::string& name) {
    for (auto it = vars_.rbegin(); it != vars_.rend(); ++it) {
      if (it->name == name) return &*it;
    }
    return nullptr;
  }

  static bool truth(const Value& v, Pos p, const char* what) {
    Value x = plain(v);
    if (auto* b = x.as<bool>()) return *b;
    fail(p, fmt::format("{} must be a bool, not {}", what, type_name(v)));
  }

  void exec(const Stmt& s) {
    tick(s.pos);
    switch (s.kind) {
      case SK::Empty: return;
      case SK::Expr: eval(*s.e); return;
      case SK::Let: {
        Value v = s.e ? eval(*s.e) : Value{};
        vars_.push_back(Var{s.name, std::move(v), s.is_const});
        return;
      }
      case SK::Assign: {
        Value v = eval(*s.e);
        Value* dst = lvalue(*s.target);
        if (s.op != "=") v = binop(s.op.substr(0, 1), *dst, v, s.pos);
        *dst = std::move(v);
        return;
      }
      case SK::Break: flow_ = Flow::Break; return;
      case SK::Continue: flow_ = Flow::Continue; return;
      case SK::Fn: return;  // registered before the run
      case SK::Return:
        returned_ = s.e ? eval(*s.e) : Value{};
        flow_ = Flow::Return;
        return;
      case SK::While:
        for (;;) {
          tick(s.pos);
          if (!truth(eval(*s.e), s.e->pos, "a while condition")) return;
          if (loop_body(s, nullptr, nullptr)) return;
        }
      case SK::Do:
        for (;;) {
          tick(s.pos);
          if (loop_body(s, nullptr, nullptr)) return;
          bool c = truth(eval(*s.e), s.e->pos, "a do loop condition");
          if (c != (s.op == "while")) return;
        }
      case SK::Loop:
        for (;;) {
          tick(s.pos);
          if (loop_body(s, nullptr, nullptr)) return;
        }
      case SK::For: run_for(s); return;
    }
  }

  // Runs one iteration; true when the loop must stop.
  bool loop_body(const Stmt& s, const Value* x, const Value* counter) {
    {
      Scope scope(vars_);
      if (x) vars_.push_back(Var{s.name, *x, false});
      if (counter) vars_.push_back(Var{s.counter, *counter, false});
      eval(*s.body);
    }
    Flow f = flow_;
    if (f == Flow::Return) return true;  // leaves the loop, and the function
    flow_ = Flow::Normal;
    return f == Flow::Break;
  }

  // A script function: its parameters (and `this` for a method call) are
  // all it sees of the caller, as in Rhai.
  Value invoke(const Stmt& fn, std::vector<Value> args, const Value* self, Pos p) {
    Depth d(depth_, p);
    std::vector<Var> caller = std::exchange(vars_, {});
    if (self) vars_.push_back(Var{"this", *self, true});
    for (std::size_t i = 0; i < fn.params.size(); ++i) vars_.push_back(Var{fn.params[i], std::move(args[i]), false});
    struct Restore {
      Interp& in;
      std::vector<Var>& caller;
      ~Restore() { in.vars_ = std::move(caller); }
    } restore{*this, caller};
    Value v = eval(*fn.body);
    if (flow_ == Flow::Return) {
      flow_ = Flow::Normal;
      return std::exchange(returned_, Value{});
    }
    return v;
  }

  // The first arm whose pattern matches (and whose guard holds) gives the
  // value; none: (). Ranges match integers only, as in Rhai.
  Value run_switch(const Expr& e) {
    Depth d(depth_, e.pos);
    Value x = eval(*e.kids[0]);
    Value px = plain(x);
    for (const auto& c : e.cases) {
      tick(e.pos);
      bool match = c.patterns.empty();
      for (const auto& pat : c.patterns) {
        Value pv = eval(*pat);
        if (auto* r = pv.as<Range>()) {
          auto* i = px.as<std::int64_t>();
          match = i && *i >= r->start && (r->inclusive ? *i <= r->end : *i < r->end);
        } else {
          match = equal(px, pv);
        }
        if (match) break;
      }
      if (match && c.guard) match = truth(eval(*c.guard), c.guard->pos, "a switch case condition");
      if (match) return eval(*c.body);
    }
    return Value{};
  }

  const Stmt* function(const std::string& name, std::size_t arity) const {
    auto it = functions_.find({name, arity});
    return it == functions_.end() ? nullptr : it->second;
  }

  void run_for(const Stmt& s) {
    Value it = eval(*s.e);
    std::int64_t n = 0;
    auto step = [&](const Value& x) {
      tick(s.pos);
      Value c = n++;
      return loop_body(s, &x, s.counter.empty() ? nullptr : &c);
    };
    if (auto* a = it.as<ArrayP>()) {
      ArrayP keep = *a;
      for (std::size_t i = 0; i < keep->size(); ++i) {
        if (step((*keep)[i])) return;
      }
    } else if (auto* r = it.as<Range>()) {
      std::int64_t end = r->end;
      if (r->inclusive) {
        if (end == std::numeric_limits<std::int64_t>::max()) fail(s.e->pos, "range end overflows");
        ++end;
      }
      for (std::int64_t i = r->start; i < end; ++i) {
        if (step(i)) return;
      }
    } else if (auto* q = it.as<ResP>()) {
      for (std::size_t i = 0; i < (*q)->rows.size(); ++i) {
        if (step(RowRef{*q, i})) return;
      }
    } else if (auto* row = it.as<RowRef>()) {
      for (std::size_t i = 0; i < row->res->columns.size() && i < row->res->rows[row->row].size(); ++i) {
        if (step(CellRef{row->res, row->row, i})) return;
      }
    } else if (auto* m = it.as<MapP>()) {
      MapP keep = *m;
      for (const auto& kv : *keep) {
        if (step(kv.first)) return;
      }
    } else if (Value sv = plain(it); sv.is<std::string>()) {
      for (char32_t ch : decode_utf8(*sv.as<std::string>())) {
        if (step(ch)) return;
      }
    } else {
      fail(s.e->pos, fmt::format("cannot iterate over {}", type_name(it)));
    }
  }

  Value block(const Expr& b) {
    Depth d(depth_, b.pos);
    Scope scope(vars_);
    Value last;
    for (std::size_t i = 0; i < b.stmts.size(); ++i) {
      const Stmt& s = *b.stmts[i];
      if (i + 1 == b.stmts.size() && s.kind == SK::Expr && !s.semi) {
        tick(s.pos);
        last = eval(*s.e);
      } else {
        exec(s);
      }
      if (flow_ != Flow::Normal) return Value{};
    }
    return last;
  }

  static void cow(ArrayP& a) {
    if (a.use_count() > 1) a = std::make_shared<Array>(*a);
  }
  static void cow(MapP& m) {
    if (m.use_count() > 1) m = std::make_shared<Map>(*m);
  }

  Value* lvalue(const Expr& e) {
    if (e.kind == EK::Var) {
      Var* v = find(e.name);
      if (!v) fail(e.pos, fmt::format("variable not found: {}", e.name));
      if (v->is_const && e.name == "this") {
        // Rhai writes a changed `this` back to the receiver; templates pass
        // it by value, so changing it is refused rather than lost.
        fail(e.pos, "cannot modify this: a method's receiver is passed by value in templates");
      }
      if (v->is_const) fail(e.pos, fmt::format("cannot modify constant {}", e.name));
      return &v->v;
    }
    if (e.kind == EK::Index || e.kind == EK::Prop) {
      Value key = e.kind == EK::Index ? plain(eval(*e.kids[1])) : Value{e.name};
      Value* base = lvalue(*e.kids[0]);
      if (auto* a = base->as<ArrayP>()) {
        cow(*a);
        return &(**a)[array_index(**a, key, e.pos)];
      }
      if (auto* m = base->as<MapP>()) {
        auto* k = key.as<std::string>();
        if (!k) fail(e.pos, fmt::format("a map key must be a string, not {}", type_name(key)));
        cow(*m);
        return &(**m)[*k];
      }
      fail(e.pos, fmt::format("cannot assign into {}", type_name(*base)));
    }
    fail(e.pos, "cannot assign to this expression");
  }

  static std::size_t array_index(const Array& a, const Value& key, Pos p) {
    auto* i = key.as<std::int64_t>();
    if (!i) fail(p, fmt::format("an array index must be an integer, not {}", type_name(key)));
    auto n = static_cast<std::int64_t>(a.size());
    std::int64_t k = *i < 0 ? n + *i : *i;
    if (k < 0 || k >= n) fail(p, fmt::format("array index {} out of bounds (length {})", *i, n));
    return static_cast<std::size_t>(k);
  }

  static std::size_t column(const RowRef& r, const std::string& name, Pos p) {
    const auto& cols = r.res->columns;
    for (std::size_t i = 0; i < cols.size(); ++i) {
      if (cols[i] == name && i < r.res->rows[r.row].size()) return i;
    }
    fail(p, fmt::format("no such column: {}", name));
  }

  Value eval(const Expr& e) {
    tick(e.pos);
    switch (e.kind) {
      case EK::Lit: return e.lit;
      case EK::Var: {
        Var* v = find(e.name);
        if (!v) fail(e.pos, fmt::format("variable not found: {}", e.name));
        return v->v;
      }
      case EK::ArrayLit: {
        auto a = std::make_shared<Array>();
        for (const auto& k : e.kids) a->push_back(eval(*k));
        return a;
      }
      case EK::MapLit: {
        auto m = std::make_shared<Map>();
        for (std::size_t i = 0; i < e.kids.size(); ++i) (*m)[e.keys[i]] = eval(*e.kids[i]);
        return m;
      }
      case EK::Interp: {
        std::string s;
        for (const auto& k : e.kids) s += display(eval(*k), k->pos);
        return s;
      }
      case EK::Unary: {
        Depth d(depth_, e.pos);
        Value v = plain(eval(*e.kids[0]));
        if (e.name == "!") {
          if (auto* b = v.as<bool>()) return !*b;
        } else if (auto* i = v.as<std::int64_t>()) {
          if (*i == std::numeric_limits<std::int64_t>::min()) fail(e.pos, "integer overflow in -");
          return -*i;
        } else if (auto* f = v.as<double>()) {
          return -*f;
        }
        fail(e.pos, fmt::format("no operator {}({})", e.name, type_name(v)));
      }
      case EK::Binary: {
        Depth d(depth_, e.pos);
        Value a = eval(*e.kids[0]);
        Value b = eval(*e.kids[1]);
        return binop(e.name, a, b, e.pos);
      }
      case EK::And:
      case EK::Or: {
        Depth d(depth_, e.pos);
        bool lhs = truth(eval(*e.kids[0]), e.kids[0]->pos, "an operand of && or ||");
        if (e.kind == EK::And ? !lhs : lhs) return lhs;
        return truth(eval(*e.kids[1]), e.kids[1]->pos, "an operand of && or ||");
      }
      case EK::Range: {
        Value a = plain(eval(*e.kids[0]));
        Value b = plain(eval(*e.kids[1]));
        auto *x = a.as<std::int64_t>(), *y = b.as<std::int64_t>();
        if (!x || !y) fail(e.pos, fmt::format("no operator {}({}, {})", e.name, type_name(a), type_name(b)));
        return Range{*x, *y, e.inclusive};
      }
      case EK::Prop: {
        Depth d(depth_, e.pos);
        Value base = eval(*e.kids[0]);
        if (auto* m = base.as<MapP>()) {
          auto it = (*m)->find(e.name);
          return it == (*m)->end() ? Value{} : it->second;
        }
        if (auto* r = base.as<RowRef>()) return SqlVal{r->res->rows[r->row][column(*r, e.name, e.pos)]};
        fail(e.pos, fmt::format("no property {} on {}", e.name, type_name(base)));
      }
      case EK::Index: {
        Depth d(depth_, e.pos);
        Value base = eval(*e.kids[0]);
        return index(base, plain(eval(*e.kids[1])), e.pos);
      }
      case EK::If: {
        Depth d(depth_, e.pos);
        if (truth(eval(*e.kids[0]), e.kids[0]->pos, "an if condition")) return eval(*e.kids[1]);
        return e.kids.size() > 2 ? eval(*e.kids[2]) : Value{};
      }
      case EK::Block: return block(e);
      case EK::Switch: return run_switch(e);
      case EK::Call:
      case EK::Method: return call(e);
    }
    return Value{};
  }

  static Value index(const Value& base, const Value& key, Pos p) {
    if (auto* a = base.as<ArrayP>()) return (**a)[array_index(**a, key, p)];
    if (auto* m = base.as<MapP>()) {
      auto* k = key.as<std::string>();
      if (!k) fail(p, fmt::format("a map key must be a string, not {}", type_name(key)));
      auto it = (*m)->find(*k);
      return it == (*m)->end() ? Value{} : it->second;
    }
    if (auto* r = base.as<RowRef>()) {
      if (auto* k = key.as<std::string>()) return SqlVal{r->res->rows[r->row][column(*r, *k, p)]};
      if (auto* i = key.as<std::int64_t>()) {
        auto n = std::min(r->res->columns.size(), r->res->rows[r->row].size());
        if (*i < 0 || static_cast<std::size_t>(*i) >= n) fail(p, fmt::format("column index {} out of bounds", *i));
        return SqlVal{r->res->rows[r->row][static_cast<std::size_t>(*i)]};
      }
    }
    if (auto* q = base.as<ResP>()) {
      if (auto* i = key.as<std::int64_t>()) {
        if (*i < 0 || static_cast<std::size_t>(*i) >= (*q)->rows.size()) {
          fail(p, fmt::format("row index {} out of bounds", *i));
        }
        return RowRef{*q, static_cast<std::size_t>(*i)};
      }
    }
    Value s = plain(base);
    if (auto* str = s.as<std::string>()) {
      if (auto* i = key.as<std::int64_t>()) {
        auto chars = decode_utf8(*str);
        auto n = static_cast<std::int64_t>(chars.size());
        std::int64_t k = *i < 0 ? n + *i : *i;
        if (k < 0 || k >= n) fail(p, fmt::format("string index {} out of bounds (length {})", *i, n));
        return chars[static_cast<std::size_t>(k)];
      }
    }
    fail(p, fmt::format("cannot index {} with {}", type_name(base), type_name(key)));
  }

  static int compare_num(double a, double b) { return a < b ? -1 : a > b ? 1 : 0; }

  static bool equal(const Value& x, const Value& y) {
    Value a = plain(x), b = plain(y);
    auto *ai = a.as<std::int64_t>(), *bi = b.as<std::int64_t>();
    auto *af = a.as<double>(), *bf = b.as<double>();
    if ((ai || af) && (bi || bf)) {
      if (ai && bi) return *ai == *bi;
      return (ai ? static_cast<double>(*ai) : *af) == (bi ? static_cast<double>(*bi) : *bf);
    }
    if (a.v.index() != b.v.index()) return false;
    if (a.is<std::monostate>()) return true;
    if (auto* p = a.as<bool>()) return *p == *b.as<bool>();
    if (auto* p = a.as<std::string>()) return *p == *b.as<std::string>();
    if (auto* p = a.as<char32_t>()) return *p == *b.as<char32_t>();
    if (auto* p = a.as<ArrayP>()) {
      const auto &l = **p, &r = **b.as<ArrayP>();
      if (l.size() != r.size()) return false;
      for (std::size_t i = 0; i < l.size(); ++i) {
        if (!equal(l[i], r[i])) return false;
      }
      return true;
    }
    if (auto* p = a.as<MapP>()) {
      const auto &l = **p, &r = **b.as<MapP>();
      if (l.size() != r.size()) return false;
      for (auto i = l.begin(), j = r.begin(); i != l.end(); ++i, ++j) {
        if (i->first != j->first || !equal(i->second, j->second)) return false;
      }
      return true;
    }
    if (auto* p = a.as<Range>()) {
      const auto& q = *b.as<Range>();
      return p->start == q.start && p->end == q.end && p->inclusive == q.inclusive;
    }
    return false;
  }

  static Value binop(const std::string& op, const Value& x, const Value& y, Pos p) {
    if (op == "==") return equal(x, y);
    if (op == "!=") return !equal(x, y);
    Value a = plain(x), b = plain(y);
    auto no = [&]() -> Value {
      fail(p, fmt::format("no operator {}({}, {})", op, type_name(x), type_name(y)));
    };
    if (op == "+") {
      if (a.is<std::string>() || b.is<std::string>()) return display(x, p) + display(y, p);
      if (a.is<char32_t>() && b.is<char32_t>()) return display(a, p) + display(b, p);
      if (auto* l = a.as<ArrayP>()) {
        if (auto* r = b.as<ArrayP>()) {
          auto out = std::make_shared<Array>(**l);
          out->insert(out->end(), (*r)->begin(), (*r)->end());
          return out;
        }
      }
    }
    auto *ai = a.as<std::int64_t>(), *bi = b.as<std::int64_t>();
    auto *af = a.as<double>(), *bf = b.as<double>();
    if (ai && bi) {
      std::int64_t r = 0;
      bool overflow = false;
      if (op == "+") {
        overflow = __builtin_add_overflow(*ai, *bi, &r);
      } else if (op == "-") {
        overflow = __builtin_sub_overflow(*ai, *bi, &r);
      } else if (op == "*") {
        overflow = __builtin_mul_overflow(*ai, *bi, &r);
      } else if (op == "/" || op == "%") {
        if (*bi == 0) fail(p, "division by zero");
        if (*ai == std::numeric_limits<std::int64_t>::min() && *bi == -1) {
          overflow = true;
        } else {
          r = op == "/" ? *ai / *bi : *ai % *bi;
        }
      } else if (op == "<") {
        return *ai < *bi;
      } else if (op == "<=") {
        return *ai <= *bi;
      } else if (op == ">") {
        return *ai > *bi;
      } else if (op == ">=") {
        return *ai >= *bi;
      } else {
        return no();
      }
      if (overflow) fail(p, fmt::format("integer overflow in {} {} {}", *ai, op, *bi));
      return r;
    }
    if ((ai || af) && (bi || bf)) {
      double l = ai ? static_cast<double>(*ai) : *af;
      double r = bi ? static_cast<double>(*bi) : *bf;
      if (op == "+") return l + r;
      if (op == "-") return l - r;
      if (op == "*") return l * r;
      if (op == "/") return l / r;
      if (op == "%") return std::fmod(l, r);
      if (op == "<") return l < r;
      if (op == "<=") return l <= r;
      if (op == ">") return l > r;
      if (op == ">=") return l >= r;
      return no();
    }
    int c = 0;
    if (a.is<std::string>() && b.is<std::string>()) {
      c = a.as<std::string>()->compare(*b.as<std::string>());
    } else if (a.is<char32_t>() && b.is<char32_t>()) {
      c = compare_num(*a.as<char32_t>(), *b.as<char32_t>());
    } else {
      return no();
    }
    if (op == "<") return c < 0;
    if (op == "<=") return c <= 0;
    if (op == ">") return c > 0;
    if (op == ">=") return c >= 0;
    return no();
  }

  // ------------------------------------------------------------ builtins

  Value call(const Expr& e) {
    Depth d(depth_, e.pos);
    std::vector<Value> args;
    for (const auto& k : e.kids) args.push_back(eval(*k));
    // Script functions first, as Rhai resolves them: f(a, b), and
    // x.f(a) with x as `this`.
    if (e.kind == EK::Call) {
      if (const Stmt* fn = function(e.name, args.size())) return invoke(*fn, std::move(args), nullptr, e.pos);
    } else if (const Stmt* fn = function(e.name, args.size() - 1)) {
      Value self = std::move(args.front());
      args.erase(args.begin());
      return invoke(*fn, std::move(args), &self, e.pos);
    }
    if (e.name == "push") {
      if (args.size() != 2) no_function(e, args);
      const Expr& target = *e.kids[0];
      Value* dst = (target.kind == EK::Var || target.kind == EK::Index || target.kind == EK::Prop)
                       ? lvalue(target)
                       : &args[0];
      auto* a = dst->as<ArrayP>();
      if (!a) no_function(e, args);
      cow(*a);
      (*a)->push_back(std::move(args[1]));
      return Value{};
    }
    return builtin(e, args);
  }

  [[noreturn]] static void no_function(const Expr& e, const std::vector<Value>& args) {
    std::string types;
    for (std::size_t i = 0; i < args.size(); ++i) types += (i ? ", " : "") + std::string(type_name(args[i]));
    fail(e.pos, fmt::format("no function {}({})", e.name, types));
  }

  static json::value to_param(const Value& v, Pos p) {
    if (v.is<std::monostate>()) return nullptr;
    if (auto* b = v.as<bool>()) return *b;
    if (auto* i = v.as<std::int64_t>()) return *i;
    if (auto* f = v.as<double>()) return *f;
    if (auto* s = v.as<std::string>()) return json::string(*s);
    if (auto* s = v.as<SqlVal>()) return s->v;
    if (auto* c = v.as<CellRef>()) return cell_json(*c);
    return json::string(display(v, p));
  }

  static json::value to_json_value(const Value& v, Pos p) {
    if (auto* a = v.as<ArrayP>()) {
      json::array out;
      for (const auto& x : **a) out.push_back(to_json_value(x, p));
      return out;
    }
    if (auto* m = v.as<MapP>()) {
      json::object out;
      for (const auto& [k, x] : **m) out[k] = to_json_value(x, p);
      return out;
    }
    if (auto* c = v.as<char32_t>()) return json::string(encode_utf8(std::u32string(1, *c)));
    return to_param(v, p);
  }

  Value builtin(const Expr& e, std::vector<Value>& args) {
    const std::string& f = e.name;
    const std::size_t n = args.size();
    Pos p = e.pos;
    // Functions that look at SQL values as they are.
    if (f == "write" && n == 1) {
      out_ += display(args[0], e.kids[0]->pos);
      return Value{};
    }
    if (f == "type_of" && n == 1) return std::string(type_name(args[0]));
    if (f == "hostname" && n == 0) return host_.hostname();
    if (f == "sql" && (n == 1 || n == 2)) return sql(e, args);
    if (f == "is_null" && n == 1) {
      if (auto* s = args[0].as<SqlVal>()) return s->v.is_null();
      if (auto* c = args[0].as<CellRef>()) return cell_json(*c).is_null();
      return args[0].is<std::monostate>();
    }
    if (f == "to_string" && n == 1) return display(args[0], p);
    if (f == "name" && n == 1) {
      if (auto* c = args[0].as<CellRef>()) return c->res->columns[c->col];
    }
    if (f == "value" && n == 1) {
      if (auto* c = args[0].as<CellRef>()) return SqlVal{cell_json(*c)};
    }
    if (f == "to_json") {
      if (auto* q = args[0].as<ResP>()) {
        JsonOut out{*q, false, false};
        if (n == 2) {
          auto* opts = args[1].as<MapP>();
          if (!opts) no_function(e, args);
          for (const auto& [k, v] : **opts) {
            bool on = truth(v, p, "a to_json option");
            if (k == "pretty") {
              out.pretty = on;
            } else if (k == "row_values_as_array") {
              out.as_array = on;
            } else {
              fail(p, fmt::format("unknown to_json option: {}", k));
            }
          }
        } else if (n != 1) {
          no_function(e, args);
        }
        return out;
      }
      if (n == 1) {
        std::string out;
        if (auto* c = args[0].as<CellRef>()) args[0] = SqlVal{cell_json(*c)};
        if (auto* s = args[0].as<SqlVal>()) {
          if (s->v.is_array()) return blob_hex(s->v.get_array());
          write_json(out, s->v, false, 0);
          return out;
        }
        if (args[0].is<RowRef>()) no_function(e, args);
        write_json(out, to_json_value(args[0], p), false, 0);
        return out;
      }
    }
    if (f == "to_csv" && n == 1) {
      if (auto* q = args[0].as<ResP>()) return CsvOut{*q};
    }
    if ((f == "len" || f == "is_empty") && n == 1) {
      std::size_t len = 0;
      bool ok = true;
      if (auto* q = args[0].as<ResP>()) {
        len = (*q)->rows.size();
      } else if (auto* r = args[0].as<RowRef>()) {
        len = r->res->columns.size();
      } else if (Value sv = plain(args[0]); sv.is<std::string>()) {
        len = decode_utf8(*sv.as<std::string>()).size();
      } else if (auto* a = args[0].as<ArrayP>()) {
        len = (*a)->size();
      } else if (auto* m = args[0].as<MapP>()) {
        len = (*m)->size();
      } else {
        ok = false;
      }
      if (ok) return f == "len" ? Value{static_cast<std::int64_t>(len)} : Value{len == 0};
    }
    // The rest see SQL values as plain values.
    std::vector<Value> raw = args;
    for (auto& a : args) a = plain(a);
    auto str = [&](std::size_t i) { return i < n ? args[i].as<std::string>() : nullptr; };
    auto chr = [&](std::size_t i) { return i < n ? args[i].as<char32_t>() : nullptr; };
    auto num = [&](std::size_t i) { return i < n ? args[i].as<std::int64_t>() : nullptr; };
    // A string or char argument as a string.
    auto text = [&](std::size_t i, std::string& out) {
      if (auto* s = str(i)) {
        out = *s;
        return true;
      }
      if (auto* c = chr(i)) {
        out = encode_utf8(std::u32string(1, *c));
        return true;
      }
      return false;
    };
    std::string t1, t2;
    if (f == "to_int" && n == 1) {
      if (auto* i = num(0)) return *i;
      if (auto* d = args[0].as<double>()) {
        if (!(std::fabs(*d) < 9.2e18)) fail(p, fmt::format("cannot convert {} to an integer", rhai_float_display(*d)));
        return static_cast<std::int64_t>(*d);
      }
      if (auto* s = str(0)) {
        std::int64_t v = 0;
        auto r = std::from_chars(s->data(), s->data() + s->size(), v);
        if (r.ec != std::errc{} || r.ptr != s->data() + s->size() || s->empty()) {
          fail(p, fmt::format("cannot convert {} to an integer", quote_debug(*s, '"')));
        }
        return v;
      }
      if (auto* c = chr(0)) return static_cast<std::int64_t>(*c);
    }
    if (f == "to_float" && n == 1) {
      if (auto* i = num(0)) return static_cast<double>(*i);
      if (auto* d = args[0].as<double>()) return *d;
      if (auto* s = str(0)) {
        char* end = nullptr;
        double v = std::strtod(s->c_str(), &end);
        if (s->empty() || end != s->c_str() + s->size()) {
          fail(p, fmt::format("cannot convert {} to a float", quote_debug(*s, '"')));
        }
        return v;
      }
    }
    if ((f == "to_upper" || f == "to_lower") && n == 1) {
      auto conv = [&](char32_t c) -> char32_t {
        if (c >= 0x80) return c;
        auto i = static_cast<int>(c);
        return static_cast<char32_t>(f == "to_upper" ? std::toupper(i) : std::tolower(i));
      };
      if (auto* c = chr(0)) return conv(*c);
      if (auto* s = str(0)) {
        auto chars = decode_utf8(*s);
        for (auto& c : chars) c = conv(c);
        return encode_utf8(chars);
      }
    }
    if (f == "trim" && n == 1) {
      if (auto* s = str(0)) {
        auto b = s->find_first_not_of(" \t\r\n\f\v");
        if (b == std::string::npos) return std::string();
        return s->substr(b, s->find_last_not_of(" \t\r\n\f\v") - b + 1);
      }
    }
    if (f == "contains" && n == 2) {
      if (str(0) && text(1, t1)) return str(0)->find(t1) != std::string::npos;
      if (auto* a = raw[0].as<ArrayP>()) {
        for (const auto& x : **a) {
          if (equal(x, args[1])) return true;
        }
        return false;
      }
      if (auto* m = raw[0].as<MapP>()) {
        if (text(1, t1)) return (*m)->count(t1) > 0;
      }
    }
    if ((f == "starts_with" || f == "ends_with") && n == 2 && str(0) && text(1, t1)) {
      const auto& s = *str(0);
      if (t1.size() > s.size()) return false;
      std::size_t at = f == "starts_with" ? 0 : s.size() - t1.size();
      return s.compare(at, t1.size(), t1) == 0;
    }
    if (f == "index_of" && n == 2 && str(0) && text(1, t1)) {
      auto at = str(0)->find(t1);
      if (at == std::string::npos) return std::int64_t{-1};
      return static_cast<std::int64_t>(decode_utf8(std::string_view(*str(0)).substr(0, at)).size());
    }
    if (f == "sub_string" && (n == 2 || n == 3) && str(0) && num(1) && (n == 2 || num(2))) {
      auto chars = decode_utf8(*str(0));
      auto len = static_cast<std::int64_t>(chars.size());
      std::int64_t start = *num(1);
      if (start < 0) start = std::max<std::int64_t>(0, len + start);
      if (start >= len) return std::string();
      std::int64_t count = n == 3 ? *num(2) : len - start;
      if (count <= 0) return std::string();
      count = std::min(count, len - start);
      return encode_utf8(
          std::u32string_view(chars).substr(static_cast<std::size_t>(start), static_cast<std::size_t>(count)));
    }
    if (f == "replace" && n == 3 && str(0) && text(1, t1) && text(2, t2)) {
      std::string s = *str(0);
      if (t1.empty()) return s;
      std::string out;
      std::size_t at = 0;
      for (auto hit = s.find(t1); hit != std::string::npos; hit = s.find(t1, at)) {
        out += s.substr(at, hit - at) + t2;
        at = hit + t1.size();
      }
      return out + s.substr(at);
    }
    if (f == "split" && n == 2 && str(0) && text(1, t1)) {
      auto out = std::make_shared<Array>();
      const auto& s = *str(0);
      if (t1.empty()) {
        for (char32_t c : decode_utf8(s)) out->push_back(encode_utf8(std::u32string(1, c)));
        return out;
      }
      std::size_t at = 0;
      for (auto hit = s.find(t1); hit != std::string::npos; hit = s.find(t1, at)) {
        out->push_back(s.substr(at, hit - at));
        at = hit + t1.size();
      }
      out->push_back(s.substr(at));
      return out;
    }
    if (f == "join" && n == 2 && raw[0].is<ArrayP>() && text(1, t1)) {
      std::string out;
      const auto& a = **raw[0].as<ArrayP>();
      for (std::size_t i = 0; i < a.size(); ++i) out += (i ? t1 : "") + display(a[i], p);
      return out;
    }
    if ((f == "keys" || f == "values") && n == 1 && raw[0].is<MapP>()) {
      auto out = std::make_shared<Array>();
      for (const auto& [k, v] : **raw[0].as<MapP>()) out->push_back(f == "keys" ? Value{k} : v);
      return out;
    }
    if (f == "abs" && n == 1) {
      if (auto* i = num(0)) {
        if (*i == std::numeric_limits<std::int64_t>::min()) fail(p, "integer overflow in abs");
        return *i < 0 ? -*i : *i;
      }
      if (auto* d = args[0].as<double>()) return std::fabs(*d);
    }
    no_function(e, raw);
  }

  Value sql(const Expr& e, const std::vector<Value>& args) {
    Value q = plain(args[0]);
    auto* text = q.as<std::string>();
    if (!text) no_function(e, args);
    json::value stmt;
    if (args.size() == 1) {
      stmt = json::string(*text);
    } else if (auto* a = args[1].as<ArrayP>()) {
      json::array params;
      for (const auto& v : **a) params.push_back(to_param(v, e.pos));
      stmt = json::array{json::string(*text), std::move(params)};
    } else if (auto* m = args[1].as<MapP>()) {
      json::object params;
      for (const auto& [k, v] : **m) params[k] = to_param(v, e.pos);
      stmt = json::array{json::string(*text), std::move(params)};
    } else {
      no_function(e, args);
    }
    auto r = host_.sql(stmt);
    if (!r) fail(e.pos, fmt::format("sql failed: {}", r.error().message));
    return std::make_shared<const QueryResult>(std::move(*r));
  }

  Host& host_;
  std::string& out_;
  std::vector<Var> vars_;
  std::uint64_t ops_ = 0;
  int depth_ = 0;
  Flow flow_ = Flow::Normal;
  Value returned_;  // by `return`, while flow_ is Return
  std::map<std::pair<std::string, std::size_t>, const Stmt*> functions_;  // (name, arity)
};

}  // namespace

void run(const std::vector<StmtP>& stmts, Host& host, std::string& out) { Interp(host, out).run(stmts); }

}  // namespace patina::tools::tpl::detail
