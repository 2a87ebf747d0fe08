#pragma once
// Turns a whole template into one token stream: text between tags becomes
// write("text"); and <%= e %> becomes write(e); so the parser sees a single
// script and knows nothing of tags. Tokens keep their positions in the
// template file, so errors point at what its author wrote.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tools/template/error.hpp"

namespace patina::tools::tpl::detail {

enum class Tok { Int, Float, Str, Char, Ident, Punct, TplBegin, TplEnd, End };

struct Token {
  Tok kind = Tok::End;
  std::string text;  // identifier, punctuation or string contents
  Pos pos;
  std::int64_t i = 0;
  double f = 0;
  char32_t c = 0;
};

// Fails (ScriptError) where the template cannot be tokenized: an
// unterminated tag, string or comment, a bad escape or number, a stray
// character.
std::vector<Token> lex(std::string_view src);

}  // namespace patina::tools::tpl::detail
