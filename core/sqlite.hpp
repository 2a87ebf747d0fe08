#pragma once
// Thin RAII over the SQLite C API, and the one place where SQLite result
// codes become patina::Error values.
//
// Invariants:
//  (1) A Db is used by one thread at a time (the writer thread or one reader
//      thread); none of these types lock.
//  (2) A Stmt never outlives the Db that prepared it.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <sqlite3.h>

#include "core/result.hpp"

namespace patina::core {

// Maps a SQLite result code (and the connection's message) to an Error.
// Fatal codes (I/O, corruption, read-only) map to storage_fatal; a full disk
// (SQLITE_FULL, or an I/O error whose errno is ENOSPC/EDQUOT) to storage_full.
Error sqlite_error(int rc, sqlite3* db, std::string_view context = {});
bool is_fatal_sqlite_code(int rc);

// A value as SQLite stores it.
struct Blob {
  std::vector<std::uint8_t> bytes;
  bool operator==(const Blob&) const = default;
};
using SqlValue = std::variant<std::nullptr_t, std::int64_t, double, std::string, Blob>;

class Stmt {
 public:
  Stmt() = default;
  Stmt(sqlite3_stmt* stmt, sqlite3* db) : stmt_(stmt), db_(db) {}
  Stmt(Stmt&& o) noexcept : stmt_(std::exchange(o.stmt_, nullptr)), db_(o.db_) {}
  Stmt& operator=(Stmt&& o) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  sqlite3_stmt* get() const { return stmt_; }
  Result<void> bind(int index, const SqlValue& value);
  // Returns true when a row is ready, false when done.
  Result<bool> step();
  Result<void> run();  // steps to completion, ignoring rows
  void reset();
  int column_count() const { return sqlite3_column_count(stmt_); }
  SqlValue column(int i) const;
  std::int64_t column_int(int i) const { return sqlite3_column_int64(stmt_, i); }
  std::string column_text(int i) const;

 private:
  sqlite3_stmt* stmt_ = nullptr;
  sqlite3* db_ = nullptr;
};

// Process-wide SQLite settings, applied before the library initializes
// (sqlite3_config is refused afterwards, so call it first thing in main).
// Turns off SQLite's allocation statistics: with them on, every sqlite3_malloc
// and free takes a global mutex, which every connection's thread shares (we read
// no sqlite3_status figures).
void configure_sqlite_process();

class Db {
 public:
  enum class Mode { read_write, read_only };

  static Result<Db> open(const std::string& path, Mode mode);
  Db() = default;
  Db(Db&& o) noexcept : cache_(std::move(o.cache_)), db_(std::exchange(o.db_, nullptr)) {}
  Db& operator=(Db&& o) noexcept;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db();

  sqlite3* get() const { return db_; }
  Result<void> exec(std::string_view sql);
  Result<Stmt> prepare(std::string_view sql);
  // A prepared statement kept for the life of the connection, reset and
  // with bindings cleared; for statements a thread runs again and again.
  // At most cached_statements_max are kept. The pointer is valid until the
  // next cached() call.
  Result<Stmt*> cached(std::string_view sql);
  static constexpr std::size_t cached_statements_max = 256;
  // Runs |sql| and returns the first column of the first row, if any.
  Result<std::optional<SqlValue>> query_value(std::string_view sql);
  Error last_error(int rc, std::string_view context = {}) const { return sqlite_error(rc, db_, context); }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  std::map<std::string, std::unique_ptr<Stmt>, std::less<>> cache_;  // finalized before close
  sqlite3* db_ = nullptr;
};

}  // namespace patina::core
