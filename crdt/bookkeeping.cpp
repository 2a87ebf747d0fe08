#include "crdt/bookkeeping.hpp"

#include <algorithm>
#include <cstring>

#include "crdt/detail/sqlite.hpp"

namespace patina::crdt {

using detail::exec;
using detail::prepare;
using detail::Reset;

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS __patina_bookkeeping_heads (
  actor_id BLOB PRIMARY KEY, max INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS __patina_bookkeeping_gaps (
  actor_id BLOB NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
  PRIMARY KEY (actor_id, start));
CREATE TABLE IF NOT EXISTS __patina_bookkeeping_cleared (
  actor_id BLOB NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
  PRIMARY KEY (actor_id, start));
CREATE TABLE IF NOT EXISTS __patina_seq_bookkeeping (
  site_id BLOB NOT NULL, db_version INTEGER NOT NULL, start_seq INTEGER NOT NULL,
  end_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, ts TEXT NOT NULL,
  PRIMARY KEY (site_id, db_version, start_seq));
CREATE TABLE IF NOT EXISTS __patina_buffered_changes (
  "table" TEXT NOT NULL, pk BLOB NOT NULL, cid TEXT NOT NULL, val, col_version INTEGER NOT NULL,
  db_version INTEGER NOT NULL, site_id BLOB NOT NULL, cl INTEGER NOT NULL, seq INTEGER NOT NULL,
  ts TEXT NOT NULL, PRIMARY KEY (site_id, db_version, seq));
)sql";

SiteId site_from(sqlite3_stmt* s, int col) {
  SiteId id{};
  if (sqlite3_column_bytes(s, col) == 16) std::memcpy(id.data(), sqlite3_column_blob(s, col), 16);
  return id;
}

}  // namespace

Bookkeeper::Bookkeeper(sqlite3* db) : db_(db), statements_(std::make_shared<detail::StmtCache>()) {}

Result<Bookkeeper> Bookkeeper::open(sqlite3* db) {
  if (auto r = exec(db, kSchema); !r) return tl::unexpected(r.error());
  Bookkeeper b(db);
  if (auto r = b.reload(); !r) return tl::unexpected(r.error());
  return b;
}

Result<std::map<SiteId, ActorBooks>> Bookkeeper::load(sqlite3* db) {
  std::map<SiteId, ActorBooks> out;
  auto q = [&](const char* sql, auto&& row) -> Result<void> {
    auto st = prepare(db, sql, false);
    if (!st) return tl::unexpected(st.error());
    int rc;
    while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) row(st->get());
    if (rc != SQLITE_DONE) return detail::sqlite_error(db, "load bookkeeping", rc);
    return {};
  };
  if (auto r = q("SELECT actor_id, max FROM __patina_bookkeeping_heads",
                 [&](sqlite3_stmt* s) { out[site_from(s, 0)].max = sqlite3_column_int64(s, 1); });
      !r)
    return tl::unexpected(r.error());
  if (auto r = q("SELECT actor_id, start, \"end\" FROM __patina_bookkeeping_gaps",
                 [&](sqlite3_stmt* s) {
                   out[site_from(s, 0)].needed.insert(
                       Range{sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2)});
                 });
      !r)
    return tl::unexpected(r.error());
  if (auto r = q("SELECT actor_id, start, \"end\" FROM __patina_bookkeeping_cleared",
                 [&](sqlite3_stmt* s) {
                   out[site_from(s, 0)].cleared.insert(
                       Range{sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2)});
                 });
      !r)
    return tl::unexpected(r.error());
  if (auto r = q("SELECT site_id, db_version, start_seq, end_seq, last_seq, ts FROM __patina_seq_bookkeeping",
                 [&](sqlite3_stmt* s) {
                   auto& p = out[site_from(s, 0)].partials[sqlite3_column_int64(s, 1)];
                   p.seqs.insert(Range{sqlite3_column_int64(s, 2), sqlite3_column_int64(s, 3)});
                   p.last_seq = sqlite3_column_int64(s, 4);
                   p.ts = std::stoull(reinterpret_cast<const char*>(sqlite3_column_text(s, 5)));
                 });
      !r)
    return tl::unexpected(r.error());
  return out;
}

Result<void> Bookkeeper::reload() {
  auto m = load(db_);
  if (!m) return tl::unexpected(m.error());
  actors_ = std::move(*m);
  return {};
}

const ActorBooks* Bookkeeper::actor(const SiteId& id) const {
  auto it = actors_.find(id);
  return it == actors_.end() ? nullptr : &it->second;
}

bool Bookkeeper::contains_version(const SiteId& actor, std::int64_t version) const {
  const auto* a = this->actor(actor);
  return a && version >= 1 && version <= a->max && !a->needed.contains(version) &&
         a->partials.find(version) == a->partials.end();
}

bool Bookkeeper::contains(const SiteId& actor, std::int64_t version, Range seqs) const {
  const auto* a = this->actor(actor);
  if (!a || version < 1 || version > a->max || a->needed.contains(version)) return false;
  auto it = a->partials.find(version);
  return it == a->partials.end() || it->second.seqs.contains(seqs);
}

Result<void> Bookkeeper::mark_versions(const SiteId& actor, Range versions) {
  auto& a = actors_[actor];
  if (versions.start > a.max + 1) a.needed.insert(Range{a.max + 1, versions.start - 1});
  a.max = std::max(a.max, versions.end);
  a.needed.remove(versions);
  return {};
}

Result<void> Bookkeeper::persist_actor(const SiteId& actor) {
  const auto& a = actors_[actor];
  auto run = [&](const std::string& sql, auto&& bind) -> Result<void> {
    auto st = statements_->get(db_, sql);
    if (!st) return tl::unexpected(st.error());
    Reset reset(*st);
    detail::bind_blob(*st, 1, actor.data(), actor.size());
    bind(*st);
    return detail::step_done(db_, *st, "persist bookkeeping");
  };
  if (auto r = run("INSERT OR REPLACE INTO __patina_bookkeeping_heads (actor_id, max) VALUES (?, ?)",
                   [&](sqlite3_stmt* s) { sqlite3_bind_int64(s, 2, a.max); });
      !r)
    return r;
  for (const char* table : {"__patina_bookkeeping_gaps", "__patina_bookkeeping_cleared"}) {
    const RangeSet& set = std::string_view(table) == "__patina_bookkeeping_gaps" ? a.needed : a.cleared;
    std::string del = std::string("DELETE FROM ") + table + " WHERE actor_id = ?";
    if (auto r = run(del, [](sqlite3_stmt*) {}); !r) return r;
    std::string ins = std::string("INSERT INTO ") + table + " (actor_id, start, \"end\") VALUES (?, ?, ?)";
    for (const auto& range : set.ranges())
      if (auto r = run(ins, [&](sqlite3_stmt* s) {
            sqlite3_bind_int64(s, 2, range.start);
            sqlite3_bind_int64(s, 3, range.end);
          });
          !r)
        return r;
  }
  return {};
}

Result<Bookkeeper::GapsRewrite> Bookkeeper::collapse_gaps(const SiteId& actor) {
  auto st = prepare(db_, "SELECT start, \"end\" FROM __patina_bookkeeping_gaps WHERE actor_id = ?", false);
  if (!st) return tl::unexpected(st.error());
  detail::bind_blob(st->get(), 1, actor.data(), actor.size());
  RangeSet stored;
  std::size_t rows = 0;
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
    stored.insert(Range{sqlite3_column_int64(st->get(), 0), sqlite3_column_int64(st->get(), 1)});
    ++rows;
  }
  if (rc != SQLITE_DONE) return detail::sqlite_error(db_, "read gaps", rc);
  const auto collapsed = stored.ranges().size();
  auto it = actors_.find(actor);
  const bool agrees = it == actors_.end() ? rows == 0 : it->second.needed == stored;
  if (rows == collapsed && agrees) return GapsRewrite{};
  actors_[actor].needed = std::move(stored);
  if (auto r = persist_actor(actor); !r) return tl::unexpected(r.error());
  return GapsRewrite{rows, collapsed};
}

Result<std::vector<SiteId>> Bookkeeper::actors_with_gaps() const {
  auto st = prepare(db_, "SELECT DISTINCT actor_id FROM __patina_bookkeeping_gaps ORDER BY actor_id", false);
  if (!st) return tl::unexpected(st.error());
  std::vector<SiteId> out;
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) out.push_back(site_from(st->get(), 0));
  if (rc != SQLITE_DONE) return detail::sqlite_error(db_, "list actors with gaps", rc);
  return out;
}

Result<void> Bookkeeper::drop_partial(const SiteId& actor, std::int64_t version) {
  actors_[actor].partials.erase(version);
  for (const char* sql : {"DELETE FROM __patina_seq_bookkeeping WHERE site_id = ? AND db_version = ?",
                          "DELETE FROM __patina_buffered_changes WHERE site_id = ? AND db_version = ?"}) {
    auto st = statements_->get(db_, sql);
    if (!st) return tl::unexpected(st.error());
    Reset reset(*st);
    detail::bind_blob(*st, 1, actor.data(), actor.size());
    sqlite3_bind_int64(*st, 2, version);
    if (auto r = detail::step_done(db_, *st, "drop partial"); !r) return r;
  }
  return {};
}

Result<void> Bookkeeper::record_applied(const SiteId& actor, Range versions) {
  if (versions.start < 1 || versions.start > versions.end)
    return make_error(ErrorCode::invalid_input, "bookkeeping: bad version range");
  if (auto r = mark_versions(actor, versions); !r) return r;
  auto& a = actors_[actor];
  std::vector<std::int64_t> done;
  for (auto it = a.partials.lower_bound(versions.start); it != a.partials.end() && it->first <= versions.end; ++it)
    done.push_back(it->first);
  for (auto v : done)
    if (auto r = drop_partial(actor, v); !r) return r;
  return persist_actor(actor);
}

Result<void> Bookkeeper::record_cleared(const SiteId& actor, Range versions) {
  if (auto r = record_applied(actor, versions); !r) return r;
  actors_[actor].cleared.insert(versions);
  return persist_actor(actor);
}

Result<bool> Bookkeeper::record_partial(const SiteId& actor, std::int64_t version, Range seqs,
                                        std::int64_t last_seq, std::uint64_t ts,
                                        std::span<const Change> rows) {
  if (version < 1 || seqs.start < 0 || seqs.start > seqs.end || seqs.end > last_seq)
    return make_error(ErrorCode::invalid_input, "bookkeeping: bad partial version");
  if (contains_version(actor, version)) return false;  // already fully applied
  auto ins = prepare(db_,
                     "INSERT INTO __patina_buffered_changes (\"table\", pk, cid, val, col_version, "
                     "db_version, site_id, cl, seq, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                     "ON CONFLICT DO NOTHING");
  if (!ins) return tl::unexpected(ins.error());
  for (const auto& c : rows) {
    if (c.site_id != actor || c.db_version != version || c.seq < seqs.start || c.seq > seqs.end)
      return make_error(ErrorCode::invalid_input, "bookkeeping: buffered row outside its partial");
    sqlite3_stmt* s = ins->get();
    Reset reset(s);
    detail::bind_text(s, 1, c.table);
    detail::bind_blob(s, 2, c.pk.data(), c.pk.size());
    detail::bind_text(s, 3, c.cid);
    bind_value(s, 4, c.val);
    sqlite3_bind_int64(s, 5, c.col_version);
    sqlite3_bind_int64(s, 6, c.db_version);
    detail::bind_blob(s, 7, c.site_id.data(), c.site_id.size());
    sqlite3_bind_int64(s, 8, c.cl);
    sqlite3_bind_int64(s, 9, c.seq);
    detail::bind_text(s, 10, std::to_string(c.ts));
    if (auto r = detail::step_done(db_, s, "buffer change"); !r) return tl::unexpected(r.error());
  }
  if (auto r = mark_versions(actor, Range{version, version}); !r) return tl::unexpected(r.error());
  auto& p = actors_[actor].partials[version];
  p.seqs.insert(seqs);
  // A server that stores the version complete but lost its superseded tail
  // seqs reports a smaller last_seq than the origin did: keep the larger one,
  // so seqs already held never lie beyond last_seq.
  p.last_seq = std::max(p.last_seq, last_seq);
  p.ts = ts;
  {
    auto del = prepare(db_, "DELETE FROM __patina_seq_bookkeeping WHERE site_id = ? AND db_version = ?");
    if (!del) return tl::unexpected(del.error());
    detail::bind_blob(del->get(), 1, actor.data(), actor.size());
    sqlite3_bind_int64(del->get(), 2, version);
    if (auto r = detail::step_done(db_, del->get(), "rewrite seq ranges"); !r) return tl::unexpected(r.error());
    auto put = prepare(db_,
                       "INSERT INTO __patina_seq_bookkeeping (site_id, db_version, start_seq, end_seq, "
                       "last_seq, ts) VALUES (?, ?, ?, ?, ?, ?)");
    if (!put) return tl::unexpected(put.error());
    for (const auto& r : p.seqs.ranges()) {
      sqlite3_stmt* s = put->get();
      Reset reset(s);
      detail::bind_blob(s, 1, actor.data(), actor.size());
      sqlite3_bind_int64(s, 2, version);
      sqlite3_bind_int64(s, 3, r.start);
      sqlite3_bind_int64(s, 4, r.end);
      sqlite3_bind_int64(s, 5, p.last_seq);
      detail::bind_text(s, 6, std::to_string(p.ts));
      if (auto e = detail::step_done(db_, s, "record seq range"); !e) return tl::unexpected(e.error());
    }
  }
  if (auto r = persist_actor(actor); !r) return tl::unexpected(r.error());
  return p.complete();
}

Result<std::vector<Change>> Bookkeeper::buffered(const SiteId& actor, std::int64_t version) const {
  auto st = prepare(db_,
                    "SELECT \"table\", pk, cid, val, col_version, db_version, site_id, cl, seq, ts "
                    "FROM __patina_buffered_changes WHERE site_id = ? AND db_version = ? ORDER BY seq",
                    false);
  if (!st) return tl::unexpected(st.error());
  detail::bind_blob(st->get(), 1, actor.data(), actor.size());
  sqlite3_bind_int64(st->get(), 2, version);
  std::vector<Change> out;
  while (sqlite3_step(st->get()) == SQLITE_ROW) {
    sqlite3_stmt* s = st->get();
    out.push_back(change_from_row(s));
  }
  return out;
}

Result<void> Bookkeeper::check() const {
  auto stored = load(db_);
  if (!stored) return tl::unexpected(stored.error());
  auto differ = [](const std::string& what) {
    return make_error(ErrorCode::corrupt, "bookkeeping: " + what);
  };
  for (const auto& [id, a] : actors_) {
    const std::string who = "actor " + to_hex(id) + ": ";
    auto it = stored->find(id);
    bool trivially_empty = a == ActorBooks{};
    if (it == stored->end()) {
      if (trivially_empty) continue;
      return differ(who + "in memory but not in the database");
    }
    const auto& s = it->second;
    if (s.max != a.max) return differ(who + "max " + std::to_string(a.max) + " in memory, " + std::to_string(s.max) + " stored");
    if (!(s.needed == a.needed)) return differ(who + "gaps differ between memory and database");
    if (!(s.cleared == a.cleared)) return differ(who + "cleared versions differ between memory and database");
    if (!(s.partials == a.partials)) return differ(who + "partial versions differ between memory and database");
    for (const auto& r : a.needed.ranges())
      if (r.start < 1 || r.end > a.max) return differ(who + "a gap lies outside 1..max");
    for (const auto& [v, p] : a.partials) {
      if (v > a.max || a.needed.contains(v)) return differ(who + "partial version " + std::to_string(v) + " is also a gap or above max");
      for (const auto& r : p.seqs.ranges())
        if (r.start < 0 || r.end > p.last_seq) return differ(who + "partial seqs outside 0..last_seq");
    }
  }
  for (const auto& [id, s] : *stored)
    if (actors_.find(id) == actors_.end() && !(s == ActorBooks{}))
      return differ("actor " + to_hex(id) + " in the database but not in memory");
  return {};
}

}  // namespace patina::crdt
