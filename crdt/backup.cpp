#include "crdt/backup.hpp"

#include <cstring>
#include <functional>
#include <optional>
#include <vector>

#include "crdt/detail/sqlite.hpp"

namespace patina::crdt {

using detail::exec;
using detail::prepare;
using detail::quote_ident;

namespace {

Result<std::vector<std::string>> crr_names(sqlite3* db) {
  std::vector<std::string> out;
  auto st = prepare(db, "SELECT name FROM __patina_crrs", false);
  if (!st) return tl::unexpected(st.error());
  while (sqlite3_step(st->get()) == SQLITE_ROW)
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0)));
  return out;
}

bool table_exists(sqlite3* db, const std::string& name) {
  auto st = prepare(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", false);
  if (!st) return false;
  detail::bind_text(st->get(), 1, name);
  return sqlite3_step(st->get()) == SQLITE_ROW;
}

Result<void> rewrite_clocks(sqlite3* db, std::int64_t from, std::int64_t to) {
  auto names = crr_names(db);
  if (!names) return tl::unexpected(names.error());
  for (const auto& t : *names)
    if (auto r = exec(db, "UPDATE " + quote_ident(t + "__crsql_clock") + " SET site_id = " +
                              std::to_string(to) + " WHERE site_id = " + std::to_string(from));
        !r)
      return r;
  return {};
}

Result<void> in_savepoint(sqlite3* db, const std::function<Result<void>()>& body) {
  if (auto r = exec(db, "SAVEPOINT patina_backup"); !r) return r;
  if (auto r = body(); !r) {
    (void)exec(db, "ROLLBACK TO patina_backup; RELEASE patina_backup");
    return r;
  }
  return exec(db, "RELEASE patina_backup");
}

Result<void> neutralize(sqlite3* db) {
  std::optional<SiteId> self;
  {
    auto st = prepare(db, "SELECT site_id FROM __patina_sites WHERE ordinal = 0", false);
    if (!st) return tl::unexpected(st.error());
    if (sqlite3_step(st->get()) == SQLITE_ROW && sqlite3_column_bytes(st->get(), 0) == 16) {
      self.emplace();
      std::memcpy(self->data(), sqlite3_column_blob(st->get(), 0), 16);
    }
  }
  if (!self) return {};  // already neutral
  if (auto r = exec(db, "UPDATE __patina_sites SET ordinal = (SELECT MAX(ordinal) + 1 FROM __patina_sites) "
                        "WHERE ordinal = 0");
      !r)
    return r;
  std::int64_t ord = 0;
  {
    auto st = prepare(db, "SELECT ordinal FROM __patina_sites WHERE site_id = ?", false);
    if (!st) return tl::unexpected(st.error());
    detail::bind_blob(st->get(), 1, self->data(), self->size());
    if (sqlite3_step(st->get()) != SQLITE_ROW) return make_error(ErrorCode::corrupt, "site moved away");
    ord = sqlite3_column_int64(st->get(), 0);
  }
  if (auto r = rewrite_clocks(db, 0, ord); !r) return r;
  // The old identity's versions stay known to whoever restores this copy.
  if (table_exists(db, "__patina_bookkeeping_heads")) {
    auto st = prepare(db,
                      "INSERT INTO __patina_bookkeeping_heads (actor_id, max) "
                      "SELECT site_id, db_version FROM __patina_db_versions WHERE site_id = ?1 "
                      "ON CONFLICT (actor_id) DO UPDATE SET max = MAX(max, excluded.max)",
                      false);
    if (!st) return tl::unexpected(st.error());
    detail::bind_blob(st->get(), 1, self->data(), self->size());
    if (auto r = detail::step_done(db, st->get(), "record own head"); !r) return r;
  }
  return {};
}

}  // namespace

Result<void> BackupCleaner::make_node_neutral(sqlite3* copy, std::span<const std::string> clear_tables) {
  return in_savepoint(copy, [&]() -> Result<void> {
    if (auto r = neutralize(copy); !r) return r;
    for (const auto& t : clear_tables)
      if (table_exists(copy, t))
        if (auto r = exec(copy, "DELETE FROM " + quote_ident(t)); !r) return r;
    return {};
  });
}

Result<void> BackupCleaner::adopt_identity(sqlite3* snapshot, const SiteId& site) {
  return in_savepoint(snapshot, [&]() -> Result<void> {
    {
      auto st = prepare(snapshot, "SELECT site_id FROM __patina_sites WHERE ordinal = 0", false);
      if (!st) return tl::unexpected(st.error());
      if (sqlite3_step(st->get()) == SQLITE_ROW && sqlite3_column_bytes(st->get(), 0) == 16 &&
          std::memcmp(sqlite3_column_blob(st->get(), 0), site.data(), 16) == 0)
        return {};  // already ours
    }
    if (auto r = neutralize(snapshot); !r) return r;
    auto st = prepare(snapshot, "SELECT ordinal FROM __patina_sites WHERE site_id = ?", false);
    if (!st) return tl::unexpected(st.error());
    detail::bind_blob(st->get(), 1, site.data(), site.size());
    if (sqlite3_step(st->get()) == SQLITE_ROW) {
      std::int64_t ord = sqlite3_column_int64(st->get(), 0);
      st->reset();
      if (auto r = exec(snapshot, "UPDATE __patina_sites SET ordinal = 0 WHERE ordinal = " + std::to_string(ord)); !r)
        return r;
      return rewrite_clocks(snapshot, ord, 0);
    }
    auto ins = prepare(snapshot, "INSERT INTO __patina_sites (ordinal, site_id) VALUES (0, ?)", false);
    if (!ins) return tl::unexpected(ins.error());
    detail::bind_blob(ins->get(), 1, site.data(), site.size());
    return detail::step_done(snapshot, ins->get(), "adopt identity");
  });
}

}  // namespace patina::crdt
