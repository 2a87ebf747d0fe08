#pragma once
// Small RAII helpers over the SQLite C API, private to crdt/.
//
// Stmt owns a prepared statement; Reset resets and clears bindings when it
// leaves scope so a cached statement never holds a read lock or stale binds
// past the operation that used it.

#include <sqlite3.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "crdt/error.hpp"

namespace patina::crdt::detail {

struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

class Reset {
 public:
  explicit Reset(sqlite3_stmt* s) : s_(s) {}
  ~Reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Reset(const Reset&) = delete;
  Reset& operator=(const Reset&) = delete;

 private:
  sqlite3_stmt* s_;
};

inline tl::unexpected<Error> sqlite_error(sqlite3* db, std::string_view context, int rc) {
  std::string msg(context);
  msg += ": ";
  msg += db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return make_error(ErrorCode::sqlite, std::move(msg), rc & 0xFF);
}

inline Result<Stmt> prepare(sqlite3* db, std::string_view sql, bool persistent = true) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                              persistent ? SQLITE_PREPARE_PERSISTENT : 0, &s, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(s);
    return sqlite_error(db, std::string("prepare `") + std::string(sql.substr(0, 200)) + "`", rc);
  }
  return Stmt(s);
}

// Statements a hot path runs again and again, prepared once per connection
// (preparing costs more than running a small statement). Use each with a
// Reset guard. SQLite re-prepares an entry by itself after a schema change.
class StmtCache {
 public:
  Result<sqlite3_stmt*> get(sqlite3* db, std::string_view sql) {
    if (auto it = cache_.find(sql); it != cache_.end()) return it->second.get();
    auto st = prepare(db, sql, true);
    if (!st) return tl::unexpected(st.error());
    sqlite3_stmt* raw = st->get();
    cache_.emplace(std::string(sql), std::move(*st));
    return raw;
  }

 private:
  std::map<std::string, Stmt, std::less<>> cache_;
};

inline Result<void> exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return make_error(ErrorCode::sqlite, msg + " (in `" + sql.substr(0, 200) + "`)", rc & 0xFF);
  }
  return {};
}

// Steps a statement that returns no rows (or whose rows are ignored).
inline Result<void> step_done(sqlite3* db, sqlite3_stmt* s, std::string_view context) {
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
  }
  if (rc != SQLITE_DONE) return sqlite_error(db, context, rc);
  return {};
}

// "name" with embedded quotes doubled: safe to splice into SQL as an identifier.
inline std::string quote_ident(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

// 'text' with embedded quotes doubled: safe to splice into SQL as a literal.
inline std::string quote_literal(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += '\'';
  return out;
}

inline void bind_text(sqlite3_stmt* s, int i, std::string_view t) {
  sqlite3_bind_text64(s, i, t.data(), t.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
}

// For data that outlives the step (long-lived names, locals of the caller):
// SQLite does not copy it.
inline void bind_text_static(sqlite3_stmt* s, int i, std::string_view t) {
  sqlite3_bind_text64(s, i, t.data(), t.size(), SQLITE_STATIC, SQLITE_UTF8);
}

inline void bind_blob_static(sqlite3_stmt* s, int i, const void* p, std::size_t n) {
  static const unsigned char empty = 0;
  sqlite3_bind_blob64(s, i, n ? p : &empty, n, SQLITE_STATIC);
}

inline void bind_blob(sqlite3_stmt* s, int i, const void* p, std::size_t n) {
  static const unsigned char empty = 0;
  sqlite3_bind_blob64(s, i, n ? p : &empty, n, SQLITE_TRANSIENT);
}

}  // namespace patina::crdt::detail
