#include "core/sqlite.hpp"

#include <cerrno>

#include <fmt/format.h>

namespace patina::core {

bool is_fatal_sqlite_code(int rc) {
  switch (rc & 0xff) {
    case SQLITE_IOERR:
    case SQLITE_CORRUPT:
    case SQLITE_READONLY:
    case SQLITE_NOTADB:
    case SQLITE_CANTOPEN:
      return true;
    default:
      return false;
  }
}

Error sqlite_error(int rc, sqlite3* db, std::string_view context) {
  std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  if (!context.empty()) msg = fmt::format("{}: {}", context, msg);
  Errc code = Errc::sql;
  switch (rc & 0xff) {
    case SQLITE_INTERRUPT: code = Errc::interrupted; break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: code = Errc::busy; break;
    case SQLITE_NOMEM: code = Errc::busy; break;
    // A full disk is a condition to wait out, not damage: SQLite undoes the
    // statement or the transaction, and the caller tries again once space
    // is freed. Growing the -shm file reports ENOSPC as an I/O error.
    case SQLITE_FULL: code = Errc::storage_full; break;
    case SQLITE_IOERR: {
      int sys = db != nullptr ? sqlite3_system_errno(db) : 0;
      code = sys == ENOSPC || sys == EDQUOT ? Errc::storage_full : Errc::storage_fatal;
      break;
    }
    default:
      if (is_fatal_sqlite_code(rc)) code = Errc::storage_fatal;
  }
  return Error{code, std::move(msg)};
}

Stmt& Stmt::operator=(Stmt&& o) noexcept {
  if (this != &o) {
    sqlite3_finalize(stmt_);
    stmt_ = std::exchange(o.stmt_, nullptr);
    db_ = o.db_;
  }
  return *this;
}

Stmt::~Stmt() { sqlite3_finalize(stmt_); }

Result<void> Stmt::bind(int index, const SqlValue& value) {
  int rc = std::visit(
      [&](const auto& v) -> int {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, std::nullptr_t>) {
          return sqlite3_bind_null(stmt_, index);
        } else if constexpr (std::is_same_v<V, std::int64_t>) {
          return sqlite3_bind_int64(stmt_, index, v);
        } else if constexpr (std::is_same_v<V, double>) {
          return sqlite3_bind_double(stmt_, index, v);
        } else if constexpr (std::is_same_v<V, std::string>) {
          return sqlite3_bind_text64(stmt_, index, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
        } else {
          return sqlite3_bind_blob64(stmt_, index, v.bytes.data(), v.bytes.size(), SQLITE_TRANSIENT);
        }
      },
      value);
  if (rc != SQLITE_OK) return tl::unexpected(sqlite_error(rc, db_, "bind"));
  return {};
}

Result<bool> Stmt::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return tl::unexpected(sqlite_error(rc, db_));
}

Result<void> Stmt::run() {
  for (;;) {
    auto r = step();
    if (!r) return tl::unexpected(r.error());
    if (!*r) return {};
  }
}

void Stmt::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

SqlValue Stmt::column(int i) const {
  switch (sqlite3_column_type(stmt_, i)) {
    case SQLITE_INTEGER: return std::int64_t{sqlite3_column_int64(stmt_, i)};
    case SQLITE_FLOAT: return sqlite3_column_double(stmt_, i);
    case SQLITE_TEXT: return column_text(i);
    case SQLITE_BLOB: {
      auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, i));
      int n = sqlite3_column_bytes(stmt_, i);
      return Blob{std::vector<std::uint8_t>(p, p + n)};
    }
    default: return nullptr;
  }
}

std::string Stmt::column_text(int i) const {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
  int n = sqlite3_column_bytes(stmt_, i);
  return p != nullptr ? std::string(p, static_cast<std::size_t>(n)) : std::string();
}

void configure_sqlite_process() { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }

Result<Db> Db::open(const std::string& path, Mode mode) {
  sqlite3* raw = nullptr;
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
  flags |= mode == Mode::read_write ? (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) : SQLITE_OPEN_READONLY;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  if (rc != SQLITE_OK) {
    Error e = sqlite_error(rc, raw, fmt::format("open {}", path));
    sqlite3_close_v2(raw);
    return tl::unexpected(e);
  }
  sqlite3_extended_result_codes(raw, 1);
  return Db(raw);
}

Db& Db::operator=(Db&& o) noexcept {
  if (this != &o) {
    cache_.clear();
    sqlite3_close_v2(db_);
    cache_ = std::move(o.cache_);
    db_ = std::exchange(o.db_, nullptr);
  }
  return *this;
}

Db::~Db() {
  cache_.clear();
  sqlite3_close_v2(db_);
}

Result<Stmt*> Db::cached(std::string_view sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    // Bounded: callers with endless distinct SQL texts must not grow memory.
    if (cache_.size() >= cached_statements_max) cache_.clear();
    auto stmt = prepare(sql);
    if (!stmt) return tl::unexpected(stmt.error());
    it = cache_.emplace(std::string(sql), std::make_unique<Stmt>(std::move(*stmt))).first;
  }
  it->second->reset();
  return it->second.get();
}

Result<void> Db::exec(std::string_view sql) {
  std::string owned(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, owned.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    Error e = sqlite_error(rc, nullptr);
    e.message = msg;
    return tl::unexpected(e);
  }
  return {};
}

Result<Stmt> Db::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) return tl::unexpected(sqlite_error(rc, db_));
  return Stmt(stmt, db_);
}

Result<std::optional<SqlValue>> Db::query_value(std::string_view sql) {
  auto stmt = prepare(sql);
  if (!stmt) return tl::unexpected(stmt.error());
  auto row = stmt->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return std::optional<SqlValue>{};
  return std::optional<SqlValue>{stmt->column(0)};
}

}  // namespace patina::core
