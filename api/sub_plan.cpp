#include "api/sub_plan.hpp"

#include <cctype>
#include <optional>
#include <string_view>

#include <fmt/format.h>

namespace patina::api {

std::string quote_ident(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

namespace {

// ---- A small SQL tokenizer: enough to find clause boundaries ----------------

struct Token {
  enum Kind { word, quoted, string, number, param, punct } kind;
  std::size_t start;
  std::size_t end;
  std::string upper;  // words: upper-cased; quoted: the unquoted name; punct: the char(s)
};

std::vector<Token> tokenize(std::string_view s) {
  std::vector<Token> out;
  std::size_t i = 0;
  auto ident_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' ||
           static_cast<unsigned char>(c) >= 0x80;
  };
  while (i < s.size()) {
    char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (s.substr(i, 2) == "--") {
      auto nl = s.find('\n', i);
      i = nl == std::string_view::npos ? s.size() : nl + 1;
    } else if (s.substr(i, 2) == "/*") {
      auto e = s.find("*/", i + 2);
      i = e == std::string_view::npos ? s.size() : e + 2;
    } else if (c == '\'' || ((c == 'x' || c == 'X') && i + 1 < s.size() && s[i + 1] == '\'')) {
      std::size_t j = c == '\'' ? i + 1 : i + 2;
      while (j < s.size()) {
        if (s[j] == '\'') {
          if (j + 1 < s.size() && s[j + 1] == '\'') {
            j += 2;
            continue;
          }
          break;
        }
        ++j;
      }
      out.push_back({Token::string, i, std::min(j + 1, s.size()), {}});
      i = std::min(j + 1, s.size());
    } else if (c == '"' || c == '`' || c == '[') {
      char close = c == '[' ? ']' : c;
      std::string name;
      std::size_t j = i + 1;
      while (j < s.size()) {
        if (s[j] == close) {
          if (close != ']' && j + 1 < s.size() && s[j + 1] == close) {
            name += close;
            j += 2;
            continue;
          }
          break;
        }
        name += s[j++];
      }
      out.push_back({Token::quoted, i, std::min(j + 1, s.size()), name});
      i = std::min(j + 1, s.size());
    } else if (std::isdigit(static_cast<unsigned char>(c)) ||
               (c == '.' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1])))) {
      std::size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '.' ||
                              ((s[j] == '+' || s[j] == '-') && (s[j - 1] == 'e' || s[j - 1] == 'E')))) {
        ++j;
      }
      out.push_back({Token::number, i, j, {}});
      i = j;
    } else if (c == '?' || c == ':' || c == '@' || (c == '$' && i + 1 < s.size() && ident_char(s[i + 1]))) {
      std::size_t j = i + 1;
      while (j < s.size() && ident_char(s[j])) ++j;
      out.push_back({Token::param, i, j, {}});
      i = j;
    } else if (ident_char(c)) {
      std::size_t j = i;
      while (j < s.size() && ident_char(s[j])) ++j;
      std::string up;
      for (std::size_t k = i; k < j; ++k) up += static_cast<char>(std::toupper(static_cast<unsigned char>(s[k])));
      out.push_back({Token::word, i, j, std::move(up)});
      i = j;
    } else {
      std::size_t n = 1;
      auto two = s.substr(i, 2);
      if (two == "||" || two == "<=" || two == ">=" || two == "!=" || two == "<>" || two == "==" || two == "<<" ||
          two == ">>" || two == "->") {
        n = two == "->" && s.substr(i, 3) == "->>" ? 3 : 2;
      }
      out.push_back({Token::punct, i, i + n, std::string(s.substr(i, n))});
      i += n;
    }
  }
  return out;
}

bool is_word(const Token& t, std::string_view w) { return t.kind == Token::word && t.upper == w; }

// What the authorizer saw while the statement compiled.
struct Reads {
  std::set<std::string> tables;      // in main (or unqualified)
  std::set<std::string> functions;   // lower-case names
  std::set<std::string> other_dbs;   // tables of attached or temp databases
};

int collect_reads(void* p, int action, const char* a1, const char* a2, const char* db, const char*) {
  auto* r = static_cast<Reads*>(p);
  if (action == SQLITE_READ && a1 != nullptr) {
    std::string_view dbname = db ? db : "main";
    if (dbname == "main") r->tables.insert(a1);
    else r->other_dbs.insert(fmt::format("{}.{}", dbname, a1));
  } else if (action == SQLITE_FUNCTION && a2 != nullptr) {
    std::string f;
    for (const char* c = a2; *c; ++c) f += static_cast<char>(std::tolower(static_cast<unsigned char>(*c)));
    r->functions.insert(std::move(f));
  }
  return SQLITE_OK;
}

bool is_aggregate_or_window(const std::string& f) {
  static const std::set<std::string> names = {
      "count", "sum", "total", "avg", "min", "max", "group_concat", "string_agg", "json_group_array",
      "json_group_object", "jsonb_group_array", "jsonb_group_object", "row_number", "rank", "dense_rank",
      "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value", "last_value", "nth_value"};
  return names.count(f) != 0;
}

// Keywords that end a FROM clause or a WHERE clause at depth 0.
bool ends_clause(const Token& t) {
  static const std::set<std::string> kws = {"WHERE", "GROUP", "HAVING", "WINDOW", "ORDER", "LIMIT",
                                            "UNION", "INTERSECT", "EXCEPT"};
  return t.kind == Token::word && kws.count(t.upper) != 0;
}

bool starts_join(const Token& t) {
  static const std::set<std::string> kws = {"JOIN", "LEFT", "RIGHT", "FULL", "INNER", "CROSS", "NATURAL", "OUTER"};
  return (t.kind == Token::punct && t.upper == ",") || (t.kind == Token::word && kws.count(t.upper) != 0);
}

std::string name_of(const Token& t, std::string_view sql) {
  if (t.kind == Token::quoted) return t.upper;
  return std::string(sql.substr(t.start, t.end - t.start));
}

struct FromItem {
  std::string table;
  std::string ref;
};

// Parses the FROM clause tokens [b, e): table [AS alias] joined by commas
// or [NATURAL] [LEFT [OUTER] | INNER | CROSS] JOIN with ON/USING. nullopt
// (with |why|) for anything the incremental rewrite does not handle.
std::optional<std::vector<FromItem>> parse_from(const std::vector<Token>& tk, std::size_t b, std::size_t e,
                                                std::string_view sql, std::string& why) {
  std::vector<FromItem> items;
  std::size_t i = b;
  bool expect_table = true;
  while (i < e) {
    if (expect_table) {
      const Token& t = tk[i];
      if (t.kind == Token::punct && t.upper == "(") {
        why = "a subquery or parenthesized join in FROM";
        return std::nullopt;
      }
      if (t.kind != Token::word && t.kind != Token::quoted) {
        why = "an unexpected FROM clause";
        return std::nullopt;
      }
      std::string name = name_of(t, sql);
      ++i;
      if (i + 1 < e && tk[i].kind == Token::punct && tk[i].upper == ".") {
        std::string schema = name;
        for (auto& c : schema) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (schema != "main") {
          why = "a table of another database";
          return std::nullopt;
        }
        name = name_of(tk[i + 1], sql);
        i += 2;
      }
      if (i < e && tk[i].kind == Token::punct && tk[i].upper == "(") {
        why = "a table-valued function";
        return std::nullopt;
      }
      std::string ref = name;
      if (i < e && is_word(tk[i], "AS")) ++i;
      if (i < e && (tk[i].kind == Token::quoted ||
                    (tk[i].kind == Token::word && !starts_join(tk[i]) && tk[i].upper != "ON" &&
                     tk[i].upper != "USING" && tk[i].upper != "INDEXED" && tk[i].upper != "NOT"))) {
        ref = name_of(tk[i], sql);
        ++i;
      }
      if (i < e && is_word(tk[i], "INDEXED")) i += 3;  // INDEXED BY name
      else if (i < e && is_word(tk[i], "NOT")) i += 2; // NOT INDEXED
      items.push_back({name, ref});
      expect_table = false;
      continue;
    }
    // After a table: ON expr / USING (...) / a join operator.
    const Token& t = tk[i];
    if (is_word(t, "ON") || is_word(t, "USING")) {
      int depth = 0;
      ++i;
      while (i < e) {
        if (tk[i].kind == Token::punct && tk[i].upper == "(") ++depth;
        else if (tk[i].kind == Token::punct && tk[i].upper == ")") --depth;
        else if (depth == 0 && starts_join(tk[i])) break;
        ++i;
      }
      continue;
    }
    if (t.kind == Token::punct && t.upper == ",") {
      ++i;
      expect_table = true;
      continue;
    }
    // A join operator: words up to JOIN.
    while (i < e && tk[i].kind == Token::word && tk[i].upper != "JOIN") {
      if (tk[i].upper == "RIGHT" || tk[i].upper == "FULL") {
        why = "a RIGHT or FULL join";
        return std::nullopt;
      }
      if (tk[i].upper != "LEFT" && tk[i].upper != "INNER" && tk[i].upper != "CROSS" && tk[i].upper != "NATURAL" &&
          tk[i].upper != "OUTER") {
        why = fmt::format("unexpected `{}` in FROM", tk[i].upper);
        return std::nullopt;
      }
      ++i;
    }
    if (i >= e || !is_word(tk[i], "JOIN")) {
      why = "an unexpected FROM clause";
      return std::nullopt;
    }
    ++i;
    expect_table = true;
  }
  if (expect_table || items.empty()) {
    why = "an unexpected FROM clause";
    return std::nullopt;
  }
  return items;
}


}  // namespace

Result<std::vector<std::string>> pk_columns(core::Db& db, const std::string& table) {
  auto st = db.prepare("SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk");
  if (!st) return tl::unexpected(st.error());
  if (auto b = st->bind(1, table); !b) return tl::unexpected(b.error());
  std::vector<std::string> out;
  for (;;) {
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    out.push_back(st->column_text(0));
  }
  return out;
}

std::size_t SubPlan::pk_offset(std::size_t i) const {
  std::size_t off = columns_.size();
  for (std::size_t k = 0; k < i; ++k) off += tables_[k].pk.size();
  return off;
}

std::string SubPlan::restricted_sql(std::size_t i, std::size_t n) const {
  const SubTable& t = tables_[i];
  std::string cols;
  for (const auto& c : t.pk) cols += fmt::format("{}{}.{}", cols.empty() ? "" : ", ", t.ref, quote_ident(c));
  std::string tuple = "?";
  if (t.pk.size() > 1) {
    tuple = "(";
    for (std::size_t k = 0; k < t.pk.size(); ++k) tuple += k ? ",?" : "?";
    tuple += ")";
  }
  std::string list;
  for (std::size_t k = 0; k < n; ++k) {
    if (k) list += ",";
    list += tuple;
  }
  std::string restriction = t.pk.size() == 1 ? fmt::format("{} IN ({})", cols, list)
                                             : fmt::format("({}) IN (VALUES {})", cols, list);
  // full_sql_ = sql_[0:from_start_] + pk list + " " + sql_[from_start_:]
  std::size_t inserted = full_sql_.size() - sql_.size();
  std::string head = full_sql_.substr(0, from_start_ + inserted);
  if (where_body_ != std::string::npos) {
    return head + sql_.substr(from_start_, where_body_ - from_start_) + " (" +
           sql_.substr(where_body_, clause_end_ - where_body_) + ") AND " + restriction;
  }
  return head + sql_.substr(from_start_, clause_end_ - from_start_) + " WHERE " + restriction;
}

Result<SubPlan> SubPlan::make(core::Db& db, const Statement& st, const std::set<std::string>& replicated) {
  SubPlan plan;
  {
    // SQLite compiles the first statement only: anything after it is refused.
    auto given = tokenize(st.sql);
    bool ended = false;
    for (const auto& t : given) {
      if (t.kind == Token::punct && t.upper == ";") ended = true;
      else if (ended) return make_error(Errc::invalid_argument, "a subscription is exactly one statement");
    }
  }
  // 1. Compile once as given to inline the parameters.
  {
    auto bound = prepare_bound(db, st);
    if (!bound) return make_error(Errc::invalid_argument, bound.error().message);
    if (sqlite3_stmt_readonly(bound->get()) == 0) {
      return make_error(Errc::invalid_argument, "a subscription must be a read-only SELECT statement");
    }
    char* expanded = sqlite3_expanded_sql(bound->get());
    if (expanded == nullptr) return make_error(Errc::internal, "cannot expand the statement's parameters");
    plan.sql_ = expanded;
    sqlite3_free(expanded);
  }
  // Trailing semicolons and blanks are not part of the identity.
  while (!plan.sql_.empty() &&
         (plan.sql_.back() == ';' || std::isspace(static_cast<unsigned char>(plan.sql_.back())))) {
    plan.sql_.pop_back();
  }
  auto tokens = tokenize(plan.sql_);
  for (const auto& t : tokens) {
    if (t.kind == Token::punct && t.upper == ";") {
      return make_error(Errc::invalid_argument, "a subscription is exactly one statement");
    }
  }
  if (tokens.empty() || tokens[0].kind != Token::word ||
      (tokens[0].upper != "SELECT" && tokens[0].upper != "WITH" && tokens[0].upper != "VALUES")) {
    return make_error(Errc::invalid_argument, "a subscription must be a SELECT statement");
  }
  // 2. Compile the expanded text with an authorizer that records reads.
  Reads reads;
  sqlite3_set_authorizer(db.get(), &collect_reads, &reads);
  auto stmt = db.prepare(plan.sql_);
  sqlite3_set_authorizer(db.get(), nullptr, nullptr);
  if (!stmt) return make_error(Errc::invalid_argument, stmt.error().message);
  for (int i = 0; i < stmt->column_count(); ++i) plan.columns_.emplace_back(sqlite3_column_name(stmt->get(), i));
  if (!reads.other_dbs.empty()) {
    return make_error(Errc::invalid_argument,
                      fmt::format("a subscription can only read replicated tables, not {}", *reads.other_dbs.begin()));
  }
  for (const auto& t : reads.tables) {
    if (replicated.count(t) == 0) {
      return make_error(Errc::invalid_argument,
                        fmt::format("a subscription can only read replicated tables (their changes are the only "
                                    "ones seen); `{}` is not one",
                                    t));
    }
  }
  if (reads.tables.empty()) {
    return make_error(Errc::invalid_argument, "a subscription must read at least one replicated table");
  }
  plan.watched_ = reads.tables;
  plan.full_sql_ = plan.sql_;

  // 3. Can it be maintained incrementally?
  auto full = [&plan](std::string why) -> Result<SubPlan> {
    plan.mode_ = Mode::full;
    plan.full_reason_ = std::move(why);
    plan.tables_.clear();
    plan.full_sql_ = plan.sql_;
    plan.pk_width_ = 0;
    return std::move(plan);
  };
  if (tokens[0].upper != "SELECT") return full("a WITH or VALUES statement");
  for (const auto& f : reads.functions) {
    if (is_aggregate_or_window(f)) return full(fmt::format("the aggregate or window function {}()", f));
  }
  std::size_t first = 1;
  if (first < tokens.size() && (is_word(tokens[first], "DISTINCT"))) return full("SELECT DISTINCT");
  if (first < tokens.size() && is_word(tokens[first], "ALL")) ++first;
  std::size_t from = std::string::npos, where = std::string::npos, end = tokens.size();
  int depth = 0;
  for (std::size_t i = first; i < tokens.size(); ++i) {
    const Token& t = tokens[i];
    if (t.kind == Token::punct && t.upper == "(") ++depth;
    else if (t.kind == Token::punct && t.upper == ")") --depth;
    if (t.kind != Token::word) continue;
    if (depth > 0) {
      if (t.upper == "SELECT") return full("a subquery");
      continue;
    }
    if (t.upper == "OVER") return full("a window function");
    if (t.upper == "FROM" && from == std::string::npos) from = i;
    else if (t.upper == "WHERE" && from != std::string::npos && where == std::string::npos) where = i;
    else if (ends_clause(t) && from != std::string::npos) {
      if (t.upper != "ORDER") return full(fmt::format("a {} clause", t.upper));
      if (end == tokens.size()) end = i;  // ORDER BY: kept for the first rows only
    }
  }
  if (from == std::string::npos) return full("no FROM clause");
  std::string why;
  auto items = parse_from(tokens, from + 1, where != std::string::npos ? where : end, plan.sql_, why);
  if (!items) return full(why);
  for (const auto& item : *items) {
    if (replicated.count(item.table) == 0) return full(fmt::format("`{}` in FROM", item.table));
    auto pk = pk_columns(db, item.table);
    if (!pk) return tl::unexpected(pk.error());
    if (pk->empty()) return full(fmt::format("`{}` has no declared primary key", item.table));
    plan.tables_.push_back({item.table, quote_ident(item.ref), std::move(*pk)});
  }
  plan.from_start_ = tokens[from].start;
  plan.where_body_ = where != std::string::npos ? tokens[where].end : std::string::npos;
  plan.clause_end_ = end < tokens.size() ? tokens[end].start : plan.sql_.size();
  std::string pks;
  for (const auto& t : plan.tables_) {
    for (const auto& c : t.pk) {
      pks += fmt::format(", {}.{}", t.ref, quote_ident(c));
      ++plan.pk_width_;
    }
  }
  plan.full_sql_ = plan.sql_.substr(0, plan.from_start_);
  while (!plan.full_sql_.empty() && std::isspace(static_cast<unsigned char>(plan.full_sql_.back()))) {
    plan.full_sql_.pop_back();
  }
  // Keep from_start_ pointing into full_sql_'s copy of the text: re-add one blank.
  plan.full_sql_ += pks + " ";
  plan.full_sql_ += plan.sql_.substr(plan.from_start_);
  // The rewrite must compile: it is checked here, not at the first change.
  auto check = db.prepare(plan.full_sql_);
  if (!check) return full(fmt::format("the rewrite did not compile ({})", check.error().message));
  for (std::size_t i = 0; i < plan.tables_.size(); ++i) {
    auto r = db.prepare(plan.restricted_sql(i, 1));
    if (!r) return full(fmt::format("the rewrite did not compile ({})", r.error().message));
  }
  plan.mode_ = Mode::incremental;
  return plan;
}

}  // namespace patina::api
