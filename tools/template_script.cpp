// The template engine: template -> tokens (text segments and <%= %> tags
// become write(...) calls, positions stay those of the original file) ->
// recursive-descent parser -> AST -> tree-walking interpreter.
//
// Errors inside the engine are thrown as ScriptError and caught at the two
// public entry points, which turn them into Result errors; nothing else
// throws across the boundary.
#include "tools/template_script.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <variant>

#include <boost/json.hpp>
#include <fmt/format.h>

namespace patina::tools::tpl {

namespace json = boost::json;

namespace {

constexpr std::uint64_t kMaxOperations = 10'000'000;
constexpr int kMaxDepth = 256;

struct Pos {
  int line = 1;
  int col = 1;
};

struct ScriptError {
  Pos pos;
  std::string message;
};

[[noreturn]] void fail(Pos pos, std::string message) { throw ScriptError{pos, std::move(message)}; }

// ---------------------------------------------------------------- UTF-8

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  for (std::size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    int extra = b < 0x80 ? 0 : (b >> 5) == 6 ? 1 : (b >> 4) == 14 ? 2 : (b >> 3) == 30 ? 3 : 0;
    char32_t c = extra == 0 ? b : extra == 1 ? (b & 0x1f) : extra == 2 ? (b & 0x0f) : (b & 0x07);
    std::size_t j = 1;
    for (; j <= static_cast<std::size_t>(extra) && i + j < s.size(); ++j) {
      c = (c << 6) | (static_cast<unsigned char>(s[i + j]) & 0x3f);
    }
    out.push_back(c);
    i += j;
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xc0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xe0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  }
}

std::string encode_utf8(std::u32string_view s) {
  std::string out;
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

// ---------------------------------------------------------------- numbers

// Shortest round-trip digits of a finite, non-zero |d|: |d| = 0.DIGITS * 10^point.
void shortest_digits(double d, std::string& digits, int& point) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, std::fabs(d), std::chars_format::scientific);
  std::string_view s(buf, static_cast<std::size_t>(r.ptr - buf));
  auto e = s.find('e');
  digits.clear();
  for (char c : s.substr(0, e)) {
    if (c != '.') digits += c;
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  point = std::stoi(std::string(s.substr(e + 1))) + 1;
}

// Rust's `{}` for f64: never an exponent, whole numbers without ".0".
std::string rust_float_display(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0" : "0";
  std::string digits;
  int point = 0;
  shortest_digits(d, digits, point);
  std::string out = d < 0 ? "-" : "";
  auto n = static_cast<int>(digits.size());
  if (point <= 0) {
    out += "0." + std::string(static_cast<std::size_t>(-point), '0') + digits;
  } else if (point >= n) {
    out += digits + std::string(static_cast<std::size_t>(point - n), '0');
  } else {
    out += digits.substr(0, static_cast<std::size_t>(point)) + "." +
           digits.substr(static_cast<std::size_t>(point));
  }
  return out;
}

// Rust's `{:e}` for f64: "1e20", "1.5e-14".
std::string rust_float_exp(double d) {
  std::string digits;
  int point = 0;
  shortest_digits(d, digits, point);
  std::string out = d < 0 ? "-" : "";
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  return out + "e" + std::to_string(point - 1);
}

// Rhai's float display: whole numbers keep ".0", extremes use an exponent.
std::string rhai_float_display(double d) {
  double a = std::fabs(d);
  if (a == 0) return "0.0";
  if (std::isnan(d) || std::isinf(d)) return rust_float_display(d);
  if (a > 10000000000000.0 || a < 0.0000000000001) return rust_float_exp(d);
  std::string s = rust_float_display(d);
  if (s.find('.') == std::string::npos) s += ".0";
  return s;
}

// serde_json (ryu) number text: "2.0", "1.5", "1e20", "1.5e-7".
std::string json_float(double d) {
  if (!std::isfinite(d)) return "null";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  std::string digits;
  int point = 0;
  shortest_digits(d, digits, point);
  std::string out = d < 0 ? "-" : "";
  auto n = static_cast<int>(digits.size());
  if (n <= point && point <= 16) {
    out += digits + std::string(static_cast<std::size_t>(point - n), '0') + ".0";
  } else if (0 < point && point <= 16) {
    out += digits.substr(0, static_cast<std::size_t>(point)) + "." +
           digits.substr(static_cast<std::size_t>(point));
  } else if (-5 < point && point <= 0) {
    out += "0." + std::string(static_cast<std::size_t>(-point), '0') + digits;
  } else {
    out += digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    out += "e" + std::to_string(point - 1);
  }
  return out;
}

// ---------------------------------------------------------------- JSON text

void json_escape(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

void newline_indent(std::string& out, int indent) {
  out += '\n';
  out.append(static_cast<std::size_t>(indent) * 2, ' ');
}

// serde_json's compact or PrettyFormatter layout.
void write_json(std::string& out, const json::value& v, bool pretty, int indent) {
  switch (v.kind()) {
    case json::kind::null: out += "null"; break;
    case json::kind::bool_: out += v.get_bool() ? "true" : "false"; break;
    case json::kind::int64: out += std::to_string(v.get_int64()); break;
    case json::kind::uint64: out += std::to_string(v.get_uint64()); break;
    case json::kind::double_: out += json_float(v.get_double()); break;
    case json::kind::string: json_escape(out, v.get_string()); break;
    case json::kind::array: {
      const auto& a = v.get_array();
      out += '[';
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (i) out += ',';
        if (pretty) newline_indent(out, indent + 1);
        write_json(out, a[i], pretty, indent + 1);
      }
      if (pretty && !a.empty()) newline_indent(out, indent);
      out += ']';
      break;
    }
    case json::kind::object: {
      const auto& o = v.get_object();
      out += '{';
      bool first = true;
      for (const auto& kv : o) {
        if (!first) out += ',';
        first = false;
        if (pretty) newline_indent(out, indent + 1);
        json_escape(out, kv.key());
        out += pretty ? ": " : ":";
        write_json(out, kv.value(), pretty, indent + 1);
      }
      if (pretty && !o.empty()) newline_indent(out, indent);
      out += '}';
      break;
    }
  }
}

std::string blob_hex(const json::array& a) {
  std::string out;
  for (const auto& b : a) {
    std::int64_t n = b.is_int64() ? b.get_int64() : b.is_uint64() ? static_cast<std::int64_t>(b.get_uint64()) : 0;
    out += fmt::format("{:02x}", static_cast<unsigned>(n & 0xff));
  }
  return out;
}

// Corrosion's SqliteValue Display.
std::string sql_display(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "";
    case json::kind::bool_: return v.get_bool() ? "1" : "0";
    case json::kind::int64: return std::to_string(v.get_int64());
    case json::kind::uint64: return std::to_string(v.get_uint64());
    case json::kind::double_: return rust_float_display(v.get_double());
    case json::kind::string: return std::string(v.get_string());
    case json::kind::array: return blob_hex(v.get_array());
    case json::kind::object: return json::serialize(v);
  }
  return "";
}

// ---------------------------------------------------------------- values

struct Value;
using Array = std::vector<Value>;
using ArrayP = std::shared_ptr<Array>;
using Map = std::map<std::string, Value>;
using MapP = std::shared_ptr<Map>;
using ResP = std::shared_ptr<const QueryResult>;

struct Range {
  std::int64_t start = 0, end = 0;
  bool inclusive = false;
};
struct RowRef {
  ResP res;
  std::size_t row = 0;
};
struct CellRef {
  ResP res;
  std::size_t row = 0, col = 0;
};
struct SqlVal {
  json::value v;
};
struct JsonOut {
  ResP res;
  bool pretty = false, as_array = false;
};
struct CsvOut {
  ResP res;
};

struct Value {
  std::variant<std::monostate, bool, std::int64_t, double, std::string, char32_t, ArrayP, MapP, Range, ResP,
               RowRef, CellRef, SqlVal, JsonOut, CsvOut>
      v;
  Value() = default;
  template <class T>
  Value(T x) : v(std::move(x)) {}  // NOLINT: implicit on purpose
  template <class T>
  const T* as() const { return std::get_if<T>(&v); }
  template <class T>
  T* as() { return std::get_if<T>(&v); }
  template <class T>
  bool is() const { return std::holds_alternative<T>(v); }
};

const char* type_name(const Value& v) {
  static const char* const names[] = {"()",    "bool",          "i64",        "f64",        "string",
                                      "char",  "array",         "map",        "range",      "QueryResponse",
                                      "Row",   "Cell",          "SqliteValue", "JsonOutput", "CsvOutput"};
  return names[v.v.index()];
}

// A SQL value as a plain script value: NULL -> (), blob -> hex string.
Value sql_plain(const json::value& j) {
  switch (j.kind()) {
    case json::kind::null: return Value{};
    case json::kind::bool_: return j.get_bool();
    case json::kind::int64: return j.get_int64();
    case json::kind::uint64:
      if (j.get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return static_cast<std::int64_t>(j.get_uint64());
      }
      return static_cast<double>(j.get_uint64());
    case json::kind::double_: return j.get_double();
    default: return sql_display(j);
  }
}

const json::value& cell_json(const CellRef& c) { return c.res->rows[c.row].at(c.col); }

Value plain(const Value& v) {
  if (auto* s = v.as<SqlVal>()) return sql_plain(s->v);
  return v;
}

std::string debug_form(const Value& v);

std::string quote_debug(std::string_view s, char q) {
  std::string out(1, q);
  for (char c : s) {
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\\': out += "\\\\"; break;
      case '\0': out += "\\0"; break;
      default:
        if (c == q) out += '\\';
        out += c;
    }
  }
  return out + q;
}

// The display form; |what| fails for values that cannot be written.
std::string display(const Value& v, Pos pos) {
  if (v.is<std::monostate>()) return "";
  if (auto* b = v.as<bool>()) return *b ? "true" : "false";
  if (auto* i = v.as<std::int64_t>()) return std::to_string(*i);
  if (auto* d = v.as<double>()) return rhai_float_display(*d);
  if (auto* s = v.as<std::string>()) return *s;
  if (auto* c = v.as<char32_t>()) return encode_utf8(std::u32string(1, *c));
  if (v.is<ArrayP>() || v.is<MapP>()) return debug_form(v);
  if (auto* r = v.as<Range>()) return fmt::format("{}{}{}", r->start, r->inclusive ? "..=" : "..", r->end);
  if (v.is<ResP>()) fail(pos, "cannot write a query result: use .to_json() or .to_csv()");
  if (v.is<RowRef>()) fail(pos, "cannot write a row: write its columns (row.name) or its cells");
  if (auto* c = v.as<CellRef>()) return sql_display(cell_json(*c));
  if (auto* s = v.as<SqlVal>()) return sql_display(s->v);
  std::string out;
  if (auto* j = v.as<JsonOut>()) {
    json::array rows;
    const auto& res = *j->res;
    for (const auto& row : res.rows) {
      if (j->as_array) {
        rows.emplace_back(json::array(row.begin(), row.end()));
      } else {
        json::object o;
        for (std::size_t c = 0; c < res.columns.size() && c < row.size(); ++c) o[res.columns[c]] = row[c];
        rows.emplace_back(std::move(o));
      }
    }
    write_json(out, rows, j->pretty, 0);
    return out;
  }
  const auto& res = *v.as<CsvOut>()->res;
  auto line = [&](const std::vector<std::string>& fields, const std::vector<bool>& text) {
    for (std::size_t i = 0; i < fields.size(); ++i) {
      if (i) out += ',';
      const auto& f = fields[i];
      bool quote = f.find_first_of(",\"\r\n") != std::string::npos || (f.empty() && fields.size() == 1 && text[i]);
      if (!quote) {
        out += f;
        continue;
      }
      out += '"';
      for (char ch : f) {
        if (ch == '"') out += '"';
        out += ch;
      }
      out += '"';
    }
    out += '\n';
  };
  line(res.columns, std::vector<bool>(res.columns.size(), true));
  for (const auto& row : res.rows) {
    std::vector<std::string> fields;
    std::vector<bool> text;
    for (const auto& cell : row) {
      fields.push_back(cell.is_double() ? json_float(cell.get_double()) : sql_display(cell));
      text.push_back(cell.is_string());
    }
    line(fields, text);
  }
  return out;
}

std::string debug_form(const Value& v) {
  if (v.is<std::monostate>()) return "()";
  if (auto* s = v.as<std::string>()) return quote_debug(*s, '"');
  if (auto* c = v.as<char32_t>()) return quote_debug(encode_utf8(std::u32string(1, *c)), '\'');
  if (auto* a = v.as<ArrayP>()) {
    std::string out = "[";
    for (std::size_t i = 0; i < (*a)->size(); ++i) out += (i ? ", " : "") + debug_form((**a)[i]);
    return out + "]";
  }
  if (auto* m = v.as<MapP>()) {
    std::string out = "#{";
    bool first = true;
    for (const auto& [k, x] : **m) {
      out += (first ? "" : ", ") + quote_debug(k, '"') + ": " + debug_form(x);
      first = false;
    }
    return out + "}";
  }
  if (auto* s = v.as<SqlVal>()) {
    return s->v.is_null() ? "()" : s->v.is_string() ? quote_debug(s->v.get_string(), '"') : sql_display(s->v);
  }
  if (v.is<ResP>()) return "<query result>";
  if (v.is<RowRef>()) return "<row>";
  return display(v, Pos{});
}

// ---------------------------------------------------------------- lexer

enum class Tok { Int, Float, Str, Char, Ident, Punct, TplBegin, TplEnd, End };

struct Token {
  Tok kind = Tok::End;
  std::string text;  // identifier, punctuation or string contents
  Pos pos;
  std::int64_t i = 0;
  double f = 0;
  char32_t c = 0;
};

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {}

  std::vector<Token> run() {
    while (i_ < src_.size()) {
      auto open = src_.find("<%", i_);
      auto text_end = open == std::string_view::npos ? src_.size() : open;
      if (text_end > i_) {
        Pos p = pos_;
        std::string text(src_.substr(i_, text_end - i_));
        while (i_ < text_end) advance();
        emit_write_begin(p);
        push(Tok::Str, p, std::move(text));
        push(Tok::Punct, p, ")");
        push(Tok::Punct, p, ";");
      }
      if (open == std::string_view::npos) break;
      Pos tag = pos_;
      advance();
      advance();
      if (peek() == '=') {
        advance();
        emit_write_begin(tag);
        auto before = out_.size();
        lex_code(tag);
        if (out_.size() == before) fail(tag, "empty <%= %> tag");
        push(Tok::Punct, pos_, ")");
        push(Tok::Punct, pos_, ";");
      } else {
        lex_code(tag);
      }
    }
    push(Tok::End, pos_, "");
    return std::move(out_);
  }

 private:
  char peek(std::size_t k = 0) const { return i_ + k < src_.size() ? src_[i_ + k] : '\0'; }
  bool at_end() const { return i_ >= src_.size(); }

  void advance() {
    auto b = static_cast<unsigned char>(src_[i_++]);
    if (b == '\n') {
      ++pos_.line;
      pos_.col = 1;
    } else if ((b & 0xc0) != 0x80) {
      ++pos_.col;
    }
  }

  void push(Tok kind, Pos p, std::string text) {
    Token t;
    t.kind = kind;
    t.pos = p;
    t.text = std::move(text);
    out_.push_back(std::move(t));
  }

  void emit_write_begin(Pos p) {
    push(Tok::Punct, p, ";");
    push(Tok::Ident, p, "write");
    push(Tok::Punct, p, "(");
  }

  // Skips blanks and comments; a // comment also ends at %>.
  void skip_blank() {
    while (!at_end()) {
      char c = peek();
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        advance();
      } else if (c == '/' && peek(1) == '/') {
        while (!at_end() && peek() != '\n' && !(peek() == '%' && peek(1) == '>')) advance();
      } else if (c == '/' && peek(1) == '*') {
        Pos p = pos_;
        advance();
        advance();
        while (!at_end() && !(peek() == '*' && peek(1) == '/')) advance();
        if (at_end()) fail(p, "unterminated /* comment");
        advance();
        advance();
      } else {
        return;
      }
    }
  }

  void lex_code(Pos tag) {
    for (;;) {
      skip_blank();
      if (at_end()) fail(tag, "unterminated <% tag (no closing %>)");
      if (peek() == '%' && peek(1) == '>') {
        advance();
        advance();
        return;
      }
      lex_token();
    }
  }

  char32_t escape(Pos start) {
    advance();  // the backslash
    if (at_end()) fail(start, "unterminated string");
    char c = peek();
    advance();
    switch (c) {
      case 'n': return '\n';
      case 't': return '\t';
      case 'r': return '\r';
      case '0': return '\0';
      case '"': return '"';
      case '\'': return '\'';
      case '\\': return '\\';
      case '`': return '`';
      case 'u': {
        if (peek() != '{') fail(pos_, "expected { after \\u");
        advance();
        std::uint32_t v = 0;
        int n = 0;
        while (std::isxdigit(static_cast<unsigned char>(peek()))) {
          char h = peek();
          int digit = std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : std::tolower(h) - 'a' + 10;
          v = v * 16 + static_cast<std::uint32_t>(digit);
          advance();
          if (++n > 6) fail(start, "bad \\u escape");
        }
        if (peek() != '}' || n == 0 || v > 0x10ffff) fail(start, "bad \\u escape");
        advance();
        return v;
      }
      default: fail(start, fmt::format("unknown escape \\{}", c));
    }
  }

  void lex_token() {
    Pos p = pos_;
    char c = peek();
    if (std::isdigit(static_cast<unsigned char>(c))) return lex_number(p);
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      std::string id;
      while (std::isalnum(static_cast<unsigned char>(peek())) || peek() == '_') {
        id += peek();
        advance();
      }
      return push(Tok::Ident, p, std::move(id));
    }
    if (c == '"') {
      advance();
      std::string s;
      for (;;) {
        if (at_end()) fail(p, "unterminated string");
        if (peek() == '"') break;
        if (peek() == '\\') {
          append_utf8(s, escape(p));
        } else {
          s += peek();
          advance();
        }
      }
      advance();
      return push(Tok::Str, p, std::move(s));
    }
    if (c == '\'') {
      advance();
      std::string s;
      while (!at_end() && peek() != '\'') {
        if (peek() == '\\') {
          append_utf8(s, escape(p));
        } else {
          s += peek();
          advance();
        }
      }
      if (at_end()) fail(p, "unterminated character literal");
      advance();
      auto chars = decode_utf8(s);
      if (chars.size() != 1) fail(p, "a character literal holds exactly one character");
      push(Tok::Char, p, s);
      out_.back().c = chars[0];
      return;
    }
    if (c == '`') return lex_backtick(p);
    static const char* const puncts[] = {"..=", "#{", "==", "!=", "<=", ">=", "&&", "||", "..", "+=", "-=", "*=",
                                         "/=",  "%=", "+",  "-",  "*",  "/",  "%",  "<",  ">",  "=",  "!",  ".",
                                         ",",   ";",  ":",  "(",  ")",  "[",  "]",  "{",  "}"};
    for (const char* op : puncts) {
      std::string_view sv(op);
      if (src_.substr(i_, sv.size()) == sv) {
        for (std::size_t k = 0; k < sv.size(); ++k) advance();
        return push(Tok::Punct, p, std::string(sv));
      }
    }
    fail(p, fmt::format("unexpected character '{}'", c));
  }

  void lex_number(Pos p) {
    std::string s;
    bool is_float = false;
    auto digits = [&] {
      while (std::isdigit(static_cast<unsigned char>(peek())) || peek() == '_') {
        if (peek() != '_') s += peek();
        advance();
      }
    };
    digits();
    if (peek() == '.' && std::isdigit(static_cast<unsigned char>(peek(1)))) {
      is_float = true;
      s += '.';
      advance();
      digits();
    }
    if ((peek() == 'e' || peek() == 'E') &&
        (std::isdigit(static_cast<unsigned char>(peek(1))) ||
         ((peek(1) == '-' || peek(1) == '+') && std::isdigit(static_cast<unsigned char>(peek(2)))))) {
      is_float = true;
      s += 'e';
      advance();
      if (peek() == '-' || peek() == '+') {
        s += peek();
        advance();
      }
      digits();
    }
    if (std::isalpha(static_cast<unsigned char>(peek())) || peek() == '_') fail(p, "malformed number");
    Token t;
    t.pos = p;
    t.text = s;
    if (is_float) {
      t.kind = Tok::Float;
      t.f = std::strtod(s.c_str(), nullptr);
    } else {
      t.kind = Tok::Int;
      auto r = std::from_chars(s.data(), s.data() + s.size(), t.i);
      if (r.ec != std::errc{}) fail(p, fmt::format("integer literal {} is too large", s));
    }
    out_.push_back(std::move(t));
  }

  // `text ${expr} text` -> TplBegin Str "${" tokens... "}" Str TplEnd.
  void lex_backtick(Pos p) {
    advance();
    push(Tok::TplBegin, p, "`");
    std::string lit;
    Pos lit_pos = pos_;
    for (;;) {
      if (at_end()) fail(p, "unterminated `string`");
      if (peek() == '`') break;
      if (peek() == '$' && peek(1) == '{') {
        push(Tok::Str, lit_pos, std::move(lit));
        lit.clear();
        Pos ep = pos_;
        advance();
        advance();
        push(Tok::Punct, ep, "${");
        int depth = 0;
        for (;;) {
          skip_blank();
          if (at_end()) fail(ep, "unterminated ${ in `string`");
          lex_token();
          const auto& t = out_.back();
          if (t.kind != Tok::Punct) continue;
          if (t.text == "{" || t.text == "#{") {
            ++depth;
          } else if (t.text == "}" && depth-- == 0) {
            break;
          }
        }
        lit_pos = pos_;
        continue;
      }
      lit += peek();
      advance();
    }
    advance();
    push(Tok::Str, lit_pos, std::move(lit));
    push(Tok::TplEnd, pos_, "`");
  }

  std::string_view src_;
  std::size_t i_ = 0;
  Pos pos_;
  std::vector<Token> out_;
};

// ---------------------------------------------------------------- AST

struct Stmt;
struct Expr;
using ExprP = std::unique_ptr<Expr>;
using StmtP = std::unique_ptr<Stmt>;

enum class EK {
  Lit, Var, ArrayLit, MapLit, Interp, Unary, Binary, And, Or, Range, Prop, Index, Call, Method, If, Block
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
};

enum class SK { Expr, Let, Assign, For, While, Loop, Break, Continue, Empty };

struct Stmt {
  SK kind = SK::Empty;
  Pos pos;
  bool is_const = false;
  bool semi = false;   // an expression statement ended by ';'
  std::string name, counter, op;
  ExprP target;        // Assign
  ExprP e;             // value / condition / iterable / expression
  ExprP body;          // loops: a Block expression
};

// ---------------------------------------------------------------- parser

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
      ++loops_;
      s->body = block();
      --loops_;
      block_like = true;
    } else if (is_kw("while")) {
      next();
      s->kind = SK::While;
      s->e = expression();
      ++loops_;
      s->body = block();
      --loops_;
      block_like = true;
    } else if (is_kw("loop")) {
      next();
      s->kind = SK::Loop;
      ++loops_;
      s->body = block();
      --loops_;
      block_like = true;
    } else if (is_kw("break") || is_kw("continue")) {
      s->kind = next().text == "break" ? SK::Break : SK::Continue;
      if (loops_ == 0) fail(s->pos, fmt::format("{} outside a loop", s->kind == SK::Break ? "break" : "continue"));
    } else if (cur().kind == Tok::Ident && keyword(cur().text) && !is_kw("if") && !is_kw("true") &&
               !is_kw("false")) {
      fail(cur().pos, fmt::format("'{}' is not supported in templates", cur().text));
    } else {
      s->kind = SK::Expr;
      block_like = is_kw("if") || is("{");
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

  std::vector<Token> t_;
  std::size_t k_ = 0;
  int depth_ = 0;
  int loops_ = 0;
};

}  // namespace

struct Template::Program {
  std::string name;
  std::vector<StmtP> stmts;
};

namespace {

// ---------------------------------------------------------------- interpreter

class Interp {
 public:
  Interp(Host& host, std::string& out) : host_(host), out_(out) {}

  void run(const std::vector<StmtP>& stmts) {
    for (const auto& s : stmts) exec(*s);
  }

 private:
  enum class Flow { Normal, Break, Continue };
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
      case SK::While:
        for (;;) {
          tick(s.pos);
          if (!truth(eval(*s.e), s.e->pos, "a while condition")) return;
          if (loop_body(s, nullptr, nullptr)) return;
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
    flow_ = Flow::Normal;
    return f == Flow::Break;
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
};

std::string located(const std::string& name, const ScriptError& e) {
  return fmt::format("{}:{}:{}: {}", name, e.pos.line, e.pos.col, e.message);
}

}  // namespace

Template::Template(std::unique_ptr<Program> program) : program_(std::move(program)) {}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

Result<Template> Template::compile(std::string_view source, std::string name) {
  try {
    auto program = std::make_unique<Program>();
    program->stmts = Parser(Lexer(source).run()).program();
    program->name = std::move(name);
    return Template(std::move(program));
  } catch (const ScriptError& e) {
    return make_error(Errc::invalid_argument, located(name, e));
  } catch (const std::exception& e) {
    return make_error(Errc::invalid_argument, fmt::format("{}: {}", name, e.what()));
  }
}

Result<void> Template::render(Host& host, std::string& out) const {
  try {
    Interp(host, out).run(program_->stmts);
    return {};
  } catch (const ScriptError& e) {
    return make_error(Errc::invalid_argument, located(program_->name, e));
  } catch (const std::exception& e) {
    return make_error(Errc::invalid_argument, fmt::format("{}: {}", program_->name, e.what()));
  }
}

}  // namespace patina::tools::tpl
