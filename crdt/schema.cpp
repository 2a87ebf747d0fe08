#include "crdt/schema.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <strings.h>

#include "crdt/detail/sqlite.hpp"

namespace patina::crdt {

using detail::exec;
using detail::prepare;
using detail::quote_ident;

namespace {

namespace fs = std::filesystem;

// Drops leading whitespace and SQL comments.
std::string_view skip_space(std::string_view s) {
  for (;;) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    if (s.starts_with("--")) {
      auto nl = s.find('\n');
      s = nl == std::string_view::npos ? std::string_view{} : s.substr(nl + 1);
    } else if (s.starts_with("/*")) {
      auto end = s.find("*/");
      s = end == std::string_view::npos ? std::string_view{} : s.substr(end + 2);
    } else {
      return s;
    }
  }
}

// The first |n| words of a statement, uppercased (words end at space or '(').
std::vector<std::string> leading_words(std::string_view s, std::size_t n, bool upper = true) {
  std::vector<std::string> out;
  s = skip_space(s);
  while (out.size() < n && !s.empty()) {
    std::string w;
    if (s.front() == '"' || s.front() == '`' || s.front() == '[') {
      char close = s.front() == '[' ? ']' : s.front();
      auto end = s.find(close, 1);
      w = std::string(s.substr(0, end == std::string_view::npos ? s.size() : end + 1));
      s.remove_prefix(std::min(s.size(), w.size()));
    } else {
      while (!s.empty() && !std::isspace(static_cast<unsigned char>(s.front())) && s.front() != '(' &&
             s.front() != ';') {
        w += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(s.front()))) : s.front();
        s.remove_prefix(1);
      }
      if (w.empty()) {
        w = std::string(1, s.front());
        s.remove_prefix(1);
      }
    }
    out.push_back(w);
    s = skip_space(s);
  }
  return out;
}

Result<std::vector<ColumnDef>> columns_of(sqlite3* db, const std::string& table) {
  auto st = prepare(db, "SELECT name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?)", false);
  if (!st) return tl::unexpected(st.error());
  detail::bind_text(st->get(), 1, table);
  std::vector<ColumnDef> out;
  while (sqlite3_step(st->get()) == SQLITE_ROW) {
    ColumnDef c;
    c.name = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0));
    c.type = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 1));
    c.not_null = sqlite3_column_int(st->get(), 2) != 0;
    if (auto* d = sqlite3_column_text(st->get(), 3)) c.default_sql = reinterpret_cast<const char*>(d);
    c.pk = sqlite3_column_int(st->get(), 4);
    out.push_back(std::move(c));
  }
  return out;
}

std::map<std::string, std::string> indexes_of(sqlite3* db, const std::string& table) {
  std::map<std::string, std::string> out;
  auto st = prepare(db,
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                    "AND sql IS NOT NULL",
                    false);
  if (!st) return out;
  detail::bind_text(st->get(), 1, table);
  while (sqlite3_step(st->get()) == SQLITE_ROW)
    out[reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0))] =
        reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 1));
  return out;
}

std::string normalize(std::string_view sql) {
  std::string out;
  bool space = false;
  for (char ch : sql) {
    if (std::isspace(static_cast<unsigned char>(ch))) {
      space = true;
      continue;
    }
    if (space && !out.empty()) out += ' ';
    space = false;
    out += ch;
  }
  while (!out.empty() && out.back() == ';') out.pop_back();
  return out;
}

// The column definitions of a CREATE TABLE statement as written, by column
// name: the top-level comma-separated items of its parenthesised body that
// are not table constraints. Used to add a column with its exact definition
// (CHECK, COLLATE, ...), which PRAGMA table_info does not give back.
std::map<std::string, std::string> column_definitions(std::string_view sql) {
  std::map<std::string, std::string> out;
  auto open = sql.find('(');
  if (open == std::string_view::npos) return out;
  std::vector<std::string> items;
  std::string cur;
  int depth = 0;
  char quote = 0;
  for (std::size_t i = open + 1; i < sql.size(); ++i) {
    char ch = sql[i];
    if (quote) {
      cur += ch;
      if (ch == quote) quote = 0;
      continue;
    }
    if (ch == '\'' || ch == '"' || ch == '`') quote = ch;
    if (ch == '[') quote = ']';
    if (ch == '(') ++depth;
    if (ch == ')' && depth-- == 0) break;
    if (ch == ',' && depth == 0) {
      items.push_back(cur);
      cur.clear();
      continue;
    }
    cur += ch;
  }
  items.push_back(cur);
  for (const auto& item : items) {
    auto w = leading_words(item, 1, false);
    if (w.empty()) continue;
    std::string name = w[0];
    std::string upper_name = leading_words(item, 1)[0];
    if (upper_name == "CONSTRAINT" || upper_name == "PRIMARY" || upper_name == "UNIQUE" ||
        upper_name == "CHECK" || upper_name == "FOREIGN")
      continue;
    if (name.size() >= 2 && (name.front() == '"' || name.front() == '`' || name.front() == '['))
      name = name.substr(1, name.size() - 2);
    out[name] = std::string(skip_space(item));
  }
  return out;
}

}  // namespace

Result<std::vector<SchemaSource>> SchemaManager::read_paths(const std::vector<std::string>& paths) {
  std::vector<SchemaSource> out;
  auto read = [&](const fs::path& p) -> Result<void> {
    std::ifstream in(p, std::ios::binary);
    if (!in) return make_error(ErrorCode::not_found, "schema file " + p.string() + ": cannot read");
    std::stringstream ss;
    ss << in.rdbuf();
    out.push_back({p.string(), ss.str()});
    return {};
  };
  for (const auto& path : paths) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(path, ec))
        if (e.is_regular_file() && e.path().extension() == ".sql") files.push_back(e.path());
      if (ec) return make_error(ErrorCode::not_found, "schema path " + path + ": " + ec.message());
      std::sort(files.begin(), files.end());
      for (const auto& f : files)
        if (auto r = read(f); !r) return tl::unexpected(r.error());
    } else {
      if (auto r = read(path); !r) return tl::unexpected(r.error());
    }
  }
  return out;
}

namespace {

enum class StatementKind { create_table, create_index, drop_index };

constexpr const char* kOnlyAllowed = "only CREATE TABLE, CREATE INDEX and DROP INDEX IF EXISTS are allowed: ";

// What a schema statement is, or why it is refused (SPEC.md §7.4).
Result<StatementKind> classify(std::string_view text) {
  auto w = leading_words(text, 8);
  auto is = [&](std::initializer_list<const char*> words) {
    std::size_t i = 0;
    for (const char* x : words)
      if (i >= w.size() || w[i++] != x) return false;
    return true;
  };
  const std::string stmt = normalize(skip_space(text)).substr(0, 200);
  if (is({"CREATE", "TABLE"})) {
    std::size_t name_at = is({"CREATE", "TABLE", "IF", "NOT", "EXISTS"}) ? 5 : 2;
    if (w.size() > name_at + 1 && w[name_at + 1] == "AS")
      return make_error(ErrorCode::schema, "CREATE TABLE ... AS SELECT is not allowed: " + stmt);
    return StatementKind::create_table;
  }
  if (is({"CREATE", "INDEX"})) return StatementKind::create_index;
  if (is({"CREATE", "UNIQUE", "INDEX"}))
    return make_error(ErrorCode::schema,
                      "unique indexes are not allowed (only the primary key may be unique): " + stmt);
  if (is({"DROP", "INDEX", "IF", "EXISTS"})) return StatementKind::drop_index;
  return make_error(ErrorCode::schema, kOnlyAllowed + stmt);
}

std::string unquote(std::string name) {
  if (name.size() >= 2 && (name.front() == '"' || name.front() == '`' || name.front() == '['))
    name = name.substr(1, name.size() - 2);
  return name;
}

// Parses one file into the scratch database, noting what it created.
Result<void> parse_source(sqlite3* scratch, const SchemaSource& src, Schema& schema,
                          std::map<std::string, std::string>& table_file, std::set<std::string>& indexes) {
  auto fail = [&](const std::string& why) {
    return make_error(ErrorCode::schema, "schema file " + src.path + ": " + why);
  };
  const char* tail = src.sql.c_str();
  const char* end = tail + src.sql.size();
  while (tail < end) {
    std::string_view rest(tail, static_cast<std::size_t>(end - tail));
    if (skip_space(rest).empty()) break;
    sqlite3_stmt* s = nullptr;
    const char* next = nullptr;
    int rc = sqlite3_prepare_v2(scratch, tail, static_cast<int>(end - tail), &s, &next);
    sqlite3_finalize(s);
    if (rc != SQLITE_OK) {
      // Say "not allowed" before SQLite's complaint about a statement we
      // would refuse anyway (an INSERT into a table that does not exist).
      if (auto kind = classify(rest); !kind) return fail(kind.error().message);
      return fail(sqlite3_errmsg(scratch));
    }
    std::string text(tail, static_cast<std::size_t>(next - tail));
    tail = next;
    if (s == nullptr) continue;  // only comments or ';'
    auto kind = classify(text);
    if (!kind) return fail(kind.error().message);
    if (*kind == StatementKind::drop_index) {
      auto words = leading_words(text, 5, false);
      std::string name = unquote(words.size() > 4 ? words[4] : "");
      for (const auto& c : indexes)
        if (strcasecmp(c.c_str(), name.c_str()) == 0)  // SQLite names are case-insensitive
          return fail("dropping index " + name + " that the same schema creates");
      schema.dropped_indexes.push_back(name);
      continue;
    }
    // Let SQLite validate it for real (the text as written: literals intact).
    if (auto r = exec(scratch, std::string(skip_space(text))); !r) return fail(r.error().message);
    auto st = prepare(scratch,
                      "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index') "
                      "AND sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
                      false);
    if (!st) return tl::unexpected(st.error());
    while (sqlite3_step(st->get()) == SQLITE_ROW) {
      std::string type = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0));
      std::string name = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 1));
      if (type == "table" && !table_file.count(name)) table_file[name] = src.path;
      if (type == "index") indexes.insert(name);
    }
  }
  return {};
}

// A validated table's final definition, from the scratch database.
Result<TableDef> table_def(sqlite3* scratch, const std::string& name, const std::string& file) {
  auto info = CrrTables::inspect(scratch, name);
  if (!info) return make_error(ErrorCode::schema, "schema file " + file + ": " + info.error().message);
  TableDef def;
  def.name = name;
  def.source = file;
  auto st = prepare(scratch, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", false);
  if (!st) return tl::unexpected(st.error());
  detail::bind_text(st->get(), 1, name);
  if (sqlite3_step(st->get()) == SQLITE_ROW) def.sql = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0));
  auto cols = columns_of(scratch, name);
  if (!cols) return tl::unexpected(cols.error());
  def.columns = *cols;
  def.indexes = indexes_of(scratch, name);
  return def;
}

}  // namespace

Result<Schema> SchemaManager::parse(const std::vector<SchemaSource>& sources) {
  sqlite3* raw = nullptr;
  if (sqlite3_open_v2(":memory:", &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    sqlite3_close(raw);
    return make_error(ErrorCode::sqlite, "cannot open scratch database");
  }
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> scratch(raw, &sqlite3_close);
  Schema schema;
  std::map<std::string, std::string> table_file;  // table -> file that declared it
  std::set<std::string> indexes;
  for (const auto& src : sources)
    if (auto r = parse_source(scratch.get(), src, schema, table_file, indexes); !r) return tl::unexpected(r.error());
  for (const auto& [name, file] : table_file) {
    auto def = table_def(scratch.get(), name, file);
    if (!def) return tl::unexpected(def.error());
    schema.tables[name] = std::move(*def);
  }
  return schema;
}

Result<SchemaChanges> SchemaManager::apply(const Schema& schema) {
  sqlite3* db = tables_.db();
  SchemaChanges changes;
  // Plan first, refusing destructive changes before touching anything.
  std::vector<std::string> ddl;
  std::vector<std::string> to_crr;
  for (const auto& [name, def] : schema.tables) {
    // Named copies: lambdas may not capture structured bindings before C++20
    // compilers caught up (clang 14, used for the fuzz build).
    const std::string& table_name = name;
    const std::string& table_source = def.source;
    auto fail = [&](const std::string& col, const std::string& why) {
      return make_error(ErrorCode::schema, "schema file " + table_source + ": table " + table_name +
                                               ": column " + col + ": " + why);
    };
    auto live = columns_of(db, name);
    if (!live) return tl::unexpected(live.error());
    if (live->empty()) {
      ddl.push_back(def.sql);
      for (const auto& [iname, isql] : def.indexes) {
        ddl.push_back(isql);
        changes.created_indexes.push_back(iname);
      }
      changes.created_tables.push_back(name);
      to_crr.push_back(name);
      continue;
    }
    for (const auto& lc : *live) {
      auto it = std::find_if(def.columns.begin(), def.columns.end(),
                             [&](const ColumnDef& c) { return c.name == lc.name; });
      if (it == def.columns.end()) return fail(lc.name, "dropping a column is not allowed");
      if (it->pk != lc.pk) return fail(lc.name, "changing the primary key is not allowed");
      if (!(*it == lc)) return fail(lc.name, "changing a column definition is not allowed");
    }
    for (const auto& c : def.columns) {
      bool exists = std::any_of(live->begin(), live->end(), [&](const ColumnDef& l) { return l.name == c.name; });
      if (exists) continue;
      if (c.pk) return fail(c.name, "adding a primary key column is not allowed");
      // The definition as written; rebuilt from its parts if it cannot be found.
      auto defs = column_definitions(def.sql);
      std::string col;
      if (auto it = defs.find(c.name); it != defs.end()) {
        col = it->second;
        while (!col.empty() && std::isspace(static_cast<unsigned char>(col.back()))) col.pop_back();
      } else {
        col = quote_ident(c.name) + (c.type.empty() ? "" : " " + c.type);
        if (c.not_null) col += " NOT NULL";
        if (!c.default_sql.empty()) col += " DEFAULT " + c.default_sql;
      }
      ddl.push_back("ALTER TABLE " + quote_ident(name) + " ADD COLUMN " + col);
      changes.added_columns.push_back(name + "." + c.name);
    }
    auto live_idx = indexes_of(db, name);
    for (const auto& [iname, isql] : live_idx) {
      auto it = def.indexes.find(iname);
      if (it == def.indexes.end() || normalize(it->second) != normalize(isql)) {
        ddl.push_back("DROP INDEX " + quote_ident(iname));
        changes.dropped_indexes.push_back(iname);
      }
    }
    for (const auto& [iname, isql] : def.indexes) {
      auto it = live_idx.find(iname);
      if (it == live_idx.end() || normalize(it->second) != normalize(isql)) {
        ddl.push_back(isql);
        changes.created_indexes.push_back(iname);
      }
    }
    to_crr.push_back(name);  // refresh triggers (or adopt an existing plain table)
  }
  for (const auto& iname : schema.dropped_indexes) {
    ddl.push_back("DROP INDEX IF EXISTS " + quote_ident(iname));
    changes.dropped_indexes.push_back(iname);
  }
  if (auto r = exec(db, "SAVEPOINT patina_schema"); !r) return tl::unexpected(r.error());
  auto body = [&]() -> Result<void> {
    for (const auto& sql : ddl)
      if (auto r = exec(db, sql); !r) return r;
    for (const auto& t : to_crr)
      if (auto r = tables_.make_crr(t); !r) return r;
    return {};
  };
  if (auto r = body(); !r) {
    (void)exec(db, "ROLLBACK TO patina_schema; RELEASE patina_schema");
    (void)tables_.reload();
    return tl::unexpected(r.error());
  }
  if (auto r = exec(db, "RELEASE patina_schema"); !r) return tl::unexpected(r.error());
  return changes;
}

}  // namespace patina::crdt
