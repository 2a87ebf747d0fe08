#include "tools/template/lexer.hpp"

#include <cctype>
#include <charconv>
#include <cstdlib>

#include <fmt/format.h>

#include "tools/template/format.hpp"

namespace patina::tools::tpl::detail {

namespace {

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
    static const char* const puncts[] = {"..=", "#{", "==", "=>", "!=", "<=", ">=", "&&", "||", "..", "+=", "-=",
                                         "*=",  "/=", "%=", "+",  "-",  "*",  "/",  "%",  "<",  ">",  "=",  "!",
                                         ".",   ",",  ";",  ":",  "(",  ")",  "[",  "]",  "{",  "}",  "|"};
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

}  // namespace

std::vector<Token> lex(std::string_view src) { return Lexer(src).run(); }

}  // namespace patina::tools::tpl::detail
