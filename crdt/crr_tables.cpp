#include "crdt/crr_tables.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "crdt/detail/capture.hpp"
#include "crdt/detail/sqlite.hpp"
#include "crdt/detail/table_state.hpp"
#include "crdt/packed_pk.hpp"

namespace patina::crdt {

using detail::exec;
using detail::prepare;
using detail::quote_ident;
using detail::quote_literal;
using detail::Reset;
using detail::sqlite_error;
using detail::Stmt;

struct CrrTables::Shared {
  Stmt set_db_version;    // (site, version): keeps the max
  Stmt select_ordinal;    // (site) -> ordinal
  Stmt insert_ordinal;    // (site) -> ordinal
  Stmt select_site;       // (ordinal) -> site
};

namespace {

// True when the schema object |name| of |type| exists with exactly the SQL
// |create|: DDL that would re-create it as it stands is skipped, so that
// nothing is written (read-only connections, a reload on a full disk).
Result<bool> stored_as(sqlite3* db, const char* type, const std::string& name, const std::string& create) {
  auto st = prepare(db, "SELECT sql FROM sqlite_master WHERE type = ? AND name = ?", false);
  if (!st) return tl::unexpected(st.error());
  sqlite3_bind_text(st->get(), 1, type, -1, SQLITE_STATIC);
  detail::bind_text(st->get(), 2, name);
  if (sqlite3_step(st->get()) != SQLITE_ROW) return false;
  const auto* current = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0));
  return current != nullptr && create == current;
}

constexpr const char* kMetaSchema = R"sql(
CREATE TABLE IF NOT EXISTS __patina_sites (
  ordinal INTEGER PRIMARY KEY,
  site_id BLOB NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS __patina_db_versions (
  site_id BLOB PRIMARY KEY,
  db_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS __patina_crdt_config (
  key TEXT PRIMARY KEY,
  value
);
CREATE TABLE IF NOT EXISTS __patina_crrs (
  name TEXT PRIMARY KEY
);
)sql";

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string join(const std::vector<std::string>& items, const std::string& prefix,
                 const std::string& sep = ", ") {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += prefix + quote_ident(items[i]);
  }
  return out;
}

std::string placeholders(std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += i ? ", ?" : "?";
  return out;
}

std::string pk_where(const TableInfo& info) {
  std::string out;
  for (std::size_t i = 0; i < info.pks.size(); ++i) {
    if (i) out += " AND ";
    out += quote_ident(info.pks[i]) + " = ?";
  }
  return out;
}

}  // namespace

CrrTables::CrrTables(sqlite3* db) : db_(db), shared_(std::make_unique<Shared>()) {}

CrrTables::~CrrTables() {
  sqlite3_commit_hook(db_, nullptr, nullptr);
  sqlite3_rollback_hook(db_, nullptr, nullptr);
  // The capture functions point at this object: replace them with ones that
  // fail, so a trigger firing after we are gone errors instead of crashing.
  for (const char* name : {"patina_crr_insert", "patina_crr_update", "patina_crr_delete"})
    sqlite3_create_function_v2(db_, name, -1, SQLITE_UTF8, nullptr, nullptr, nullptr, nullptr,
                               nullptr);
  tables_.clear();
}

Result<std::unique_ptr<CrrTables>> CrrTables::open(sqlite3* db, const CrrOptions& options) {
  std::unique_ptr<CrrTables> t(new CrrTables(db));
  if (auto r = t->init(options); !r) return tl::unexpected(r.error());
  return t;
}

Result<void> CrrTables::init(const CrrOptions& options) {
  // One savepoint, inside the caller's transaction if there is one, so a
  // failed open leaves the database as it was.
  if (auto r = exec(db_, "SAVEPOINT patina_crdt_open"); !r) return r;
  auto r = init_body(options);
  if (!r) {
    (void)exec(db_, "ROLLBACK TO patina_crdt_open; RELEASE patina_crdt_open");
    return r;
  }
  if (auto c = exec(db_, "RELEASE patina_crdt_open"); !c) return c;
  committed_epoch_ = schema_epoch_;
  sqlite3_commit_hook(db_, &CrrTables::on_commit, this);
  sqlite3_rollback_hook(db_, &CrrTables::on_rollback, this);
  return {};
}

Result<void> CrrTables::init_body(const CrrOptions& options) {
  if (auto r = exec(db_, kMetaSchema); !r) return r;
  if (auto r = prepare_shared(); !r) return r;
  if (auto r = load_identity(options); !r) return r;
  if (options.merge_equal_values) {
    if (auto r = set_merge_equal_values(*options.merge_equal_values); !r) return r;
  } else {
    auto st = prepare(db_, "SELECT value FROM __patina_crdt_config WHERE key = 'merge-equal-values'", false);
    if (!st) return tl::unexpected(st.error());
    merge_equal_values_ = sqlite3_step(st->get()) == SQLITE_ROW ? sqlite3_column_int(st->get(), 0) != 0 : true;
  }
  if (auto r = detail::register_capture_functions(db_, this); !r) return r;
  if (auto r = reload(); !r) return r;
  return rebuild_changes_view();
}

Result<void> CrrTables::prepare_shared() {
  auto& sh = *shared_;
  const std::pair<Stmt*, const char*> stmts[] = {
      {&sh.set_db_version,
       "INSERT INTO __patina_db_versions (site_id, db_version) VALUES (?, ?) "
       "ON CONFLICT (site_id) DO UPDATE SET db_version = MAX(db_version, excluded.db_version)"},
      {&sh.select_ordinal, "SELECT ordinal FROM __patina_sites WHERE site_id = ?"},
      {&sh.insert_ordinal,
       "INSERT INTO __patina_sites (ordinal, site_id) VALUES ("
       "(SELECT COALESCE(MAX(ordinal), 0) + 1 FROM __patina_sites), ?) RETURNING ordinal"},
      {&sh.select_site, "SELECT site_id FROM __patina_sites WHERE ordinal = ?"},
  };
  for (const auto& [stmt, sql] : stmts) {
    auto st = prepare(db_, sql);
    if (!st) return tl::unexpected(st.error());
    *stmt = std::move(*st);
  }
  return {};
}

// The site id at ordinal 0 (this node), created from the options on a fresh
// database, and this node's db_version.
Result<void> CrrTables::load_identity(const CrrOptions& options) {
  auto st = prepare(db_, "SELECT site_id FROM __patina_sites WHERE ordinal = 0", false);
  if (!st) return tl::unexpected(st.error());
  int rc = sqlite3_step(st->get());
  if (rc == SQLITE_ROW && sqlite3_column_bytes(st->get(), 0) == 16) {
    std::memcpy(site_id_.data(), sqlite3_column_blob(st->get(), 0), 16);
  } else if (rc == SQLITE_DONE) {
    if (options.new_site_id == SiteId{})
      return make_error(ErrorCode::invalid_input,
                        "a new database needs a site id: set CrrOptions::new_site_id to 16 random bytes");
    site_id_ = options.new_site_id;
    auto ins = prepare(db_, "INSERT INTO __patina_sites (ordinal, site_id) VALUES (0, ?)", false);
    if (!ins) return tl::unexpected(ins.error());
    detail::bind_blob(ins->get(), 1, site_id_.data(), site_id_.size());
    if (auto r = detail::step_done(db_, ins->get(), "insert site id"); !r) return r;
  } else {
    return make_error(ErrorCode::corrupt, "__patina_sites: bad site id for ordinal 0");
  }
  auto v = stored_db_version();
  if (!v) return tl::unexpected(v.error());
  db_version_ = *v;
  return {};
}

int CrrTables::on_commit(void* self) {
  auto* t = static_cast<CrrTables*>(self);
  t->db_version_ = std::max({t->db_version_, t->pending_, t->floor_});
  t->pending_ = -1;
  t->seq_ = 0;
  t->floor_ = -1;
  t->committed_epoch_ = t->schema_epoch_;
  return 0;
}

void CrrTables::on_rollback(void* self) {
  auto* t = static_cast<CrrTables*>(self);
  t->pending_ = -1;
  t->seq_ = 0;
  t->floor_ = -1;
  // No SQL may run inside the hook: note it, reload on next use.
  if (t->schema_epoch_ != t->committed_epoch_) t->registry_stale_ = true;
}

Result<sqlite3_stmt*> CrrTables::cached_statement(const std::string& sql) {
  return cached_statement(sql, [&sql] { return sql; });
}

Result<sqlite3_stmt*> CrrTables::cached_statement(const std::string& key,
                                                  const std::function<std::string()>& build) {
  refresh_registry();
  if (statement_cache_epoch_ != schema_epoch_ || statement_cache_.size() >= statement_cache_max) {
    statement_cache_.clear();
    statement_cache_epoch_ = schema_epoch_;
  }
  if (auto it = statement_cache_.find(key); it != statement_cache_.end()) return it->second.get();
  auto st = prepare(db_, build(), true);
  if (!st) return tl::unexpected(st.error());
  sqlite3_stmt* raw = st->release();
  statement_cache_.emplace(key, std::unique_ptr<sqlite3_stmt, StmtFinalizer>(raw));
  return raw;
}

void CrrTables::refresh_registry() const {
  if (!registry_stale_) return;
  auto* self = const_cast<CrrTables*>(this);
  self->registry_stale_ = false;
  (void)self->reload();
}

LocalCommit CrrTables::end_version() {
  LocalCommit c = current_tx();
  if (pending_ >= 0) {
    floor_ = pending_;
    pending_ = -1;
    seq_ = 0;
  }
  return c;
}

Result<void> CrrTables::set_merge_equal_values(bool on) {
  auto st = prepare(db_,
                    "INSERT OR REPLACE INTO __patina_crdt_config (key, value) "
                    "VALUES ('merge-equal-values', ?)",
                    false);
  if (!st) return tl::unexpected(st.error());
  sqlite3_bind_int(st->get(), 1, on ? 1 : 0);
  if (auto r = detail::step_done(db_, st->get(), "set merge-equal-values"); !r) return r;
  merge_equal_values_ = on;
  return {};
}

LocalCommit CrrTables::current_tx() const {
  LocalCommit c;
  if (pending_ >= 0) c.db_version = pending_;
  c.last_seq = seq_ - 1;
  return c;
}

Result<void> CrrTables::begin() { return exec(db_, "BEGIN IMMEDIATE"); }

Result<LocalCommit> CrrTables::commit() {
  LocalCommit c = current_tx();
  if (auto r = exec(db_, "COMMIT"); !r) return tl::unexpected(r.error());
  return c;
}

Result<void> CrrTables::rollback() { return exec(db_, "ROLLBACK"); }

Result<std::int64_t> CrrTables::next_db_version() {
  if (pending_ >= 0) return pending_;
  std::int64_t v = std::max(db_version_, floor_) + 1;
  // Persist inside the transaction: the version survives a restart even if
  // every change of it is later superseded by remote writes.
  auto* s = shared_->set_db_version.get();
  Reset reset(s);
  detail::bind_blob(s, 1, site_id_.data(), site_id_.size());
  sqlite3_bind_int64(s, 2, v);
  if (auto r = detail::step_done(db_, s, "persist db_version"); !r) return tl::unexpected(r.error());
  pending_ = v;
  return v;
}

Result<std::int64_t> CrrTables::stored_db_version() const {
  auto st = prepare(db_, "SELECT db_version FROM __patina_db_versions WHERE site_id = ?", false);
  if (!st) return tl::unexpected(st.error());
  detail::bind_blob(st->get(), 1, site_id_.data(), site_id_.size());
  int rc = sqlite3_step(st->get());
  if (rc == SQLITE_ROW) return sqlite3_column_int64(st->get(), 0);
  if (rc == SQLITE_DONE) return std::int64_t{0};
  return sqlite_error(db_, "read db_version", rc);
}

Result<void> CrrTables::note_db_version(const SiteId& site, std::int64_t db_version) {
  auto* s = shared_->set_db_version.get();
  Reset reset(s);
  detail::bind_blob(s, 1, site.data(), site.size());
  sqlite3_bind_int64(s, 2, db_version);
  return detail::step_done(db_, s, "record db_version");
}

Result<std::map<SiteId, std::int64_t>> CrrTables::db_versions() {
  auto st = prepare(db_, "SELECT site_id, db_version FROM __patina_db_versions", false);
  if (!st) return tl::unexpected(st.error());
  std::map<SiteId, std::int64_t> out;
  while (sqlite3_step(st->get()) == SQLITE_ROW) {
    if (sqlite3_column_bytes(st->get(), 0) != 16) continue;
    SiteId id;
    std::memcpy(id.data(), sqlite3_column_blob(st->get(), 0), 16);
    out[id] = sqlite3_column_int64(st->get(), 1);
  }
  return out;
}

Result<std::optional<std::int64_t>> CrrTables::site_ordinal(const SiteId& site, bool create) {
  if (site == site_id_) return std::optional<std::int64_t>(0);
  {
    auto* s = shared_->select_ordinal.get();
    Reset reset(s);
    detail::bind_blob(s, 1, site.data(), site.size());
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) return std::optional<std::int64_t>(sqlite3_column_int64(s, 0));
    if (rc != SQLITE_DONE) return sqlite_error(db_, "select site ordinal", rc);
  }
  if (!create) return std::optional<std::int64_t>();
  auto* s = shared_->insert_ordinal.get();
  Reset reset(s);
  detail::bind_blob(s, 1, site.data(), site.size());
  int rc = sqlite3_step(s);
  if (rc != SQLITE_ROW) return sqlite_error(db_, "insert site ordinal", rc);
  std::int64_t ord = sqlite3_column_int64(s, 0);
  if (auto r = detail::step_done(db_, s, "insert site ordinal"); !r) return tl::unexpected(r.error());
  return std::optional<std::int64_t>(ord);
}

Result<SiteId> CrrTables::site_for_ordinal(std::int64_t ordinal) {
  if (ordinal == 0) return site_id_;
  auto* s = shared_->select_site.get();
  Reset reset(s);
  sqlite3_bind_int64(s, 1, ordinal);
  int rc = sqlite3_step(s);
  if (rc != SQLITE_ROW || sqlite3_column_bytes(s, 0) != 16)
    return make_error(ErrorCode::corrupt, "unknown site ordinal " + std::to_string(ordinal));
  SiteId id;
  std::memcpy(id.data(), sqlite3_column_blob(s, 0), 16);
  return id;
}

Result<void> CrrTables::reload() {
  registry_stale_ = false;
  ++schema_epoch_;
  tables_.clear();
  std::vector<std::string> names;
  {
    auto st = prepare(db_, "SELECT name FROM __patina_crrs ORDER BY name", false);
    if (!st) return tl::unexpected(st.error());
    while (sqlite3_step(st->get()) == SQLITE_ROW)
      names.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0)));
  }
  for (const auto& n : names)
    if (auto r = load_table(n); !r) return r;
  return {};
}

bool CrrTables::is_crr(std::string_view table) const {
  refresh_registry();
  return tables_.find(table) != tables_.end();
}

const TableInfo* CrrTables::table_info(std::string_view table) const {
  refresh_registry();
  auto it = tables_.find(table);
  return it == tables_.end() ? nullptr : &it->second->info;
}

std::vector<std::string> CrrTables::crr_names() const {
  refresh_registry();
  std::vector<std::string> out;
  for (const auto& [name, st] : tables_) out.push_back(name);
  return out;
}

detail::TableState* CrrTables::state(std::string_view table) {
  refresh_registry();
  auto it = tables_.find(table);
  return it == tables_.end() ? nullptr : it->second.get();
}

Result<TableInfo> CrrTables::inspect(sqlite3* db, std::string_view table) {
  auto fail = [&](const std::string& why) {
    return make_error(ErrorCode::schema, "table " + std::string(table) + " " + why);
  };
  std::string create_sql;
  {
    auto st = prepare(db, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", false);
    if (!st) return tl::unexpected(st.error());
    detail::bind_text(st->get(), 1, table);
    if (sqlite3_step(st->get()) != SQLITE_ROW)
      return make_error(ErrorCode::not_found, "no such table: " + std::string(table));
    if (auto* p = sqlite3_column_text(st->get(), 0)) create_sql = reinterpret_cast<const char*>(p);
  }
  TableInfo info;
  info.name = std::string(table);
  std::vector<std::pair<int, std::string>> pks;
  {
    auto st = prepare(db,
                      "SELECT name, \"notnull\", dflt_value IS NOT NULL, pk, hidden "
                      "FROM pragma_table_xinfo(?)",
                      false);
    if (!st) return tl::unexpected(st.error());
    detail::bind_text(st->get(), 1, table);
    while (sqlite3_step(st->get()) == SQLITE_ROW) {
      std::string name = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0));
      bool notnull = sqlite3_column_int(st->get(), 1) != 0;
      bool has_default = sqlite3_column_int(st->get(), 2) != 0;
      int pk = sqlite3_column_int(st->get(), 3);
      int hidden = sqlite3_column_int(st->get(), 4);
      if (hidden == 2 || hidden == 3) continue;  // generated columns are computed, not replicated
      if (pk > 0) {
        if (!notnull)
          return fail(
              "has no primary key or primary key is nullable: column " + name +
              " (CRRs must have a non nullable primary key)");
        pks.emplace_back(pk, name);
      } else {
        if (notnull && !has_default)
          return fail("has a NOT NULL column without a DEFAULT VALUE: column " + name);
        info.non_pks.push_back(name);
      }
    }
  }
  if (pks.empty())
    return fail("has no primary key or primary key is nullable (CRRs must have a non nullable primary key)");
  std::sort(pks.begin(), pks.end());
  for (auto& [pos, name] : pks) info.pks.push_back(name);
  {
    auto st = prepare(db, "SELECT name, origin FROM pragma_index_list(?) WHERE \"unique\" = 1", false);
    if (!st) return tl::unexpected(st.error());
    detail::bind_text(st->get(), 1, table);
    while (sqlite3_step(st->get()) == SQLITE_ROW) {
      std::string origin = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 1));
      if (origin != "pk")
        return fail(std::string("has unique indices besides the primary key: index ") +
                    reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0)));
    }
  }
  {
    auto st = prepare(db, "SELECT \"from\" FROM pragma_foreign_key_list(?)", false);
    if (!st) return tl::unexpected(st.error());
    detail::bind_text(st->get(), 1, table);
    if (sqlite3_step(st->get()) == SQLITE_ROW)
      return fail(std::string("has checked foreign key constraints: column ") +
                  reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0)));
  }
  if (upper(create_sql).find("AUTOINCREMENT") != std::string::npos)
    return fail("has auto-increment primary keys");
  return info;
}

Result<void> CrrTables::make_crr(std::string_view table) {
  auto info = inspect(db_, table);
  if (!info) return tl::unexpected(info.error());
  bool outer = sqlite3_get_autocommit(db_) != 0;
  if (auto r = exec(db_, "SAVEPOINT patina_make_crr"); !r) return r;
  auto body = [&]() -> Result<void> {
    const std::string t = info->name;
    const std::string pks_t = quote_ident(t + "__crsql_pks");
    const std::string clock_t = quote_ident(t + "__crsql_clock");
    bool existed = is_crr(t);
    std::string sql = "CREATE TABLE IF NOT EXISTS " + pks_t +
                      " (__crsql_key INTEGER PRIMARY KEY, __crsql_pk BLOB NOT NULL UNIQUE";
    for (const auto& pk : info->pks) sql += ", " + quote_ident(pk);
    sql += ");\n";
    sql += "CREATE TABLE IF NOT EXISTS " + clock_t +
           " (key INTEGER NOT NULL, col_name TEXT NOT NULL, col_version INTEGER NOT NULL, "
           "db_version INTEGER NOT NULL, site_id INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL, "
           "ts TEXT NOT NULL DEFAULT '0', PRIMARY KEY (key, col_name)) WITHOUT ROWID, STRICT;\n";
    sql += "CREATE INDEX IF NOT EXISTS " + quote_ident(t + "__crsql_clock_dbv_idx") + " ON " +
           clock_t + " (site_id, db_version);\n";
    sql += "INSERT OR IGNORE INTO __patina_crrs (name) VALUES (" + quote_literal(t) + ");\n";
    if (auto r = exec(db_, sql); !r) return r;
    if (auto r = create_triggers(*info); !r) return r;
    if (auto r = load_table(t); !r) return r;
    if (auto r = rebuild_changes_view(); !r) return r;
    if (!existed) return backfill(*tables_[t]);
    return {};
  };
  auto r = body();
  if (!r) {
    (void)exec(db_, "ROLLBACK TO patina_make_crr; RELEASE patina_make_crr");
    // The in-memory registry must not keep a table whose storage was rolled back.
    if (auto it = tables_.find(table); it != tables_.end()) {
      tables_.erase(it);
      // Re-load the previous definition if there was one.
      std::string name(table);
      auto st = prepare(db_, "SELECT 1 FROM __patina_crrs WHERE name = ?", false);
      if (st) {
        detail::bind_text(st->get(), 1, name);
        if (sqlite3_step(st->get()) == SQLITE_ROW) (void)load_table(name);
      }
    }
    return r;
  }
  (void)outer;
  return exec(db_, "RELEASE patina_make_crr");
}

Result<void> CrrTables::create_triggers(const TableInfo& info) {
  const std::string t = quote_ident(info.name);
  const std::string lit = quote_literal(info.name);
  std::string args = join(info.pks, "NEW.") + ", " + join(info.pks, "OLD.");
  if (!info.non_pks.empty())
    args += ", " + join(info.non_pks, "NEW.") + ", " + join(info.non_pks, "OLD.");
  const std::pair<std::string, std::string> triggers[] = {
      {info.name + "__crsql_itrig", " AFTER INSERT ON " + t + " BEGIN SELECT patina_crr_insert(" + lit + ", " +
                                        join(info.pks, "NEW.") + "); END"},
      {info.name + "__crsql_utrig", " AFTER UPDATE ON " + t + " BEGIN SELECT patina_crr_update(" + lit + ", " + args +
                                        "); END"},
      {info.name + "__crsql_dtrig", " AFTER DELETE ON " + t + " BEGIN SELECT patina_crr_delete(" + lit + ", " +
                                        join(info.pks, "OLD.") + "); END"},
  };
  // Triggers already as wanted are left alone: a reload that changes nothing
  // writes nothing, so it succeeds even on a full disk.
  std::string sql;
  for (const auto& [name, body] : triggers) {
    const std::string create = "CREATE TRIGGER " + quote_ident(name) + body;
    auto same = stored_as(db_, "trigger", name, create);
    if (!same) return tl::unexpected(same.error());
    if (!*same) sql += "DROP TRIGGER IF EXISTS " + quote_ident(name) + ";\n" + create + ";\n";
  }
  return sql.empty() ? Result<void>{} : exec(db_, sql);
}

Result<void> CrrTables::load_table(const std::string& name) {
  auto info = inspect(db_, name);
  if (!info) return tl::unexpected(info.error());
  auto st = std::make_unique<detail::TableState>();
  st->info = *info;
  const std::string t = quote_ident(name);
  const std::string P = quote_ident(name + "__crsql_pks");
  const std::string C = quote_ident(name + "__crsql_clock");
  const std::string where = pk_where(*info);
  const std::string pk_cols = join(info->pks, "");
  const std::size_t npk = info->pks.size();
  auto p = [&](Stmt& s, const std::string& sql) -> Result<void> {
    auto r = prepare(db_, sql);
    if (!r) return tl::unexpected(r.error());
    s = std::move(*r);
    return {};
  };
  const std::string sentinel_bump =
      "CASE col_version % 2 WHEN 0 THEN col_version + 1 ELSE col_version + 2 END";
  std::vector<std::pair<Stmt*, std::string>> stmts = {
      {&st->select_key, "SELECT __crsql_key FROM " + P + " WHERE __crsql_pk = ?"},
      {&st->insert_key, "INSERT INTO " + P + " (__crsql_pk, " + pk_cols + ") VALUES (?, " +
                            placeholders(npk) + ") ON CONFLICT DO NOTHING"},
      {&st->mark_created,
       "INSERT INTO " + C +
           " (key, col_name, col_version, db_version, seq, site_id, ts) VALUES (?, '-1', 1, ?, ?, 0, ?) "
           "ON CONFLICT DO UPDATE SET col_version = " + sentinel_bump +
           ", db_version = excluded.db_version, seq = excluded.seq, site_id = 0, ts = excluded.ts"},
      {&st->reinsert_sentinel, "UPDATE " + C + " SET col_version = " + sentinel_bump +
                                   ", db_version = ?, seq = ?, site_id = 0, ts = ? "
                                   "WHERE key = ? AND col_name = '-1'"},
      {&st->mark_deleted,
       "INSERT INTO " + C +
           " (key, col_name, col_version, db_version, seq, site_id, ts) VALUES (?, '-1', 2, ?, ?, 0, ?) "
           "ON CONFLICT DO UPDATE SET col_version = 1 + col_version, db_version = excluded.db_version, "
           "seq = excluded.seq, site_id = 0, ts = excluded.ts"},
      {&st->drop_clocks, "DELETE FROM " + C + " WHERE key = ? AND col_name != '-1'"},
      {&st->update_clock, "UPDATE " + C +
                              " SET col_version = col_version + 1, db_version = ?, seq = ?, "
                              "site_id = 0, ts = ? WHERE key = ? AND col_name = ?"},
      {&st->insert_clock, "INSERT INTO " + C +
                              " (key, col_name, col_version, db_version, seq, site_id, ts) "
                              "VALUES (?, ?, 1, ?, ?, 0, ?)"},
      {&st->move_col, "UPDATE OR REPLACE " + C +
                          " SET key = ?, db_version = ?, seq = ?, col_version = col_version + 1, "
                          "site_id = 0, ts = ? WHERE key = ? AND col_name = ?"},
      {&st->local_cl, "SELECT COALESCE((SELECT col_version FROM " + C +
                          " WHERE key = ?1 AND col_name = '-1'), (SELECT 1 FROM " + C +
                          " WHERE key = ?1 LIMIT 1))"},
      {&st->clock_get, "SELECT col_version, site_id FROM " + C + " WHERE key = ? AND col_name = ?"},
      {&st->set_winner, "INSERT OR REPLACE INTO " + C +
                            " (key, col_name, col_version, db_version, seq, site_id, ts) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)"},
      {&st->zero_clocks,
       "UPDATE " + C + " SET col_version = 0 WHERE key = ? AND col_name != '-1'"},
      {&st->merge_delete, "DELETE FROM " + t + " WHERE " + where},
      {&st->merge_pk_only,
       "INSERT OR IGNORE INTO " + t + " (" + pk_cols + ") VALUES (" + placeholders(npk) + ")"},
      {&st->row_exists, "SELECT 1 FROM " + t + " WHERE " + where},
  };
  if (!info->non_pks.empty()) {
    std::string values;
    for (std::size_t i = 0; i < info->non_pks.size(); ++i) values += i ? ", (?, ?, 1, ?, ?, 0, ?)" : "(?, ?, 1, ?, ?, 0, ?)";
    stmts.emplace_back(&st->insert_all_clocks,
                       "INSERT INTO " + C + " (key, col_name, col_version, db_version, seq, site_id, ts) VALUES " + values);
  }
  for (auto& [s, sql] : stmts)
    if (auto r = p(*s, sql); !r) return r;
  for (const auto& col : info->non_pks) {
    Stmt m, v;
    const std::string c = quote_ident(col);
    if (auto r = p(m, "INSERT INTO " + t + " (" + pk_cols + ", " + c + ") VALUES (" +
                          placeholders(npk + 1) + ") ON CONFLICT DO UPDATE SET " + c +
                          " = excluded." + c);
        !r)
      return r;
    if (auto r = p(v, "SELECT " + c + " FROM " + t + " WHERE " + where); !r) return r;
    st->merge_col.push_back(std::move(m));
    st->col_value.push_back(std::move(v));
  }
  tables_[name] = std::move(st);
  ++schema_epoch_;
  return {};
}

std::string CrrTables::changes_select(const std::string& clock_where) const {
  refresh_registry();
  std::string sql;
  for (const auto& [name, st] : tables_) {
    const auto& info = st->info;
    if (!sql.empty()) sql += "\nUNION ALL ";
    std::string val = "NULL";
    if (!info.non_pks.empty()) {
      val = "CASE c.col_name";
      for (const auto& col : info.non_pks)
        val += " WHEN " + quote_literal(col) + " THEN b." + quote_ident(col);
      val += " END";
    }
    std::string on;
    for (std::size_t i = 0; i < info.pks.size(); ++i) {
      if (i) on += " AND ";
      on += "b." + quote_ident(info.pks[i]) + " = p." + quote_ident(info.pks[i]);
    }
    const std::string C = quote_ident(name + "__crsql_clock");
    sql += "SELECT " + quote_literal(name) +
           " AS \"table\", p.__crsql_pk AS pk, c.col_name AS cid, " + val +
           " AS val, c.col_version AS col_version, c.db_version AS db_version, "
           "s.site_id AS site_id, COALESCE(c2.col_version, 1) AS cl, c.seq AS seq, c.ts AS ts "
           "FROM " + C + " AS c JOIN " + quote_ident(name + "__crsql_pks") +
           " AS p ON p.__crsql_key = c.key LEFT JOIN " + quote_ident(name) + " AS b ON " + on +
           " LEFT JOIN __patina_sites AS s ON s.ordinal = c.site_id LEFT JOIN " + C +
           " AS c2 ON c2.key = c.key AND c2.col_name = '-1'";
    if (!clock_where.empty()) sql += " WHERE " + clock_where;
  }
  if (sql.empty())
    sql = "SELECT NULL AS \"table\", NULL AS pk, NULL AS cid, NULL AS val, NULL AS col_version, "
          "NULL AS db_version, NULL AS site_id, NULL AS cl, NULL AS seq, NULL AS ts WHERE 0";
  return sql;
}

Result<void> CrrTables::rebuild_changes_view() {
  const std::string create = "CREATE VIEW crsql_changes AS " + changes_select("");
  // Leave an up-to-date view alone: read-only connections open CrrTables too.
  auto same = stored_as(db_, "view", "crsql_changes", create);
  if (!same) return tl::unexpected(same.error());
  if (*same) return {};
  return exec(db_, "DROP VIEW IF EXISTS crsql_changes;\n" + create + ";");
}

Result<void> CrrTables::backfill(detail::TableState& st) {
  const auto& info = st.info;
  auto q = prepare(db_, "SELECT " + join(info.pks, "") + " FROM " + quote_ident(info.name), false);
  if (!q) return tl::unexpected(q.error());
  std::vector<std::vector<Value>> rows;
  while (sqlite3_step(q->get()) == SQLITE_ROW) {
    std::vector<Value> pk;
    for (int i = 0; i < static_cast<int>(info.pks.size()); ++i)
      pk.push_back(column_value(q->get(), i));
    rows.push_back(std::move(pk));
  }
  for (const auto& pk : rows)
    if (auto r = detail::record_local_insert(*this, st, pk); !r) return r;
  return {};
}

}  // namespace patina::crdt
