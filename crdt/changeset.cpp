#include "crdt/changeset.hpp"

#include <cstring>
#include <functional>

#include "crdt/detail/sqlite.hpp"

namespace patina::crdt {

using detail::prepare;

std::vector<Changeset> ChangesetChunker::chunk(const SiteId& actor, std::int64_t version, Range range,
                                               std::int64_t last_seq, std::uint64_t ts,
                                               std::vector<Change> changes, std::size_t max_bytes) {
  std::vector<Changeset> out;
  Changeset cur{actor, version, Range{range.start, range.start}, last_seq, ts, {}};
  std::size_t bytes = 0;
  for (auto& c : changes) {
    std::size_t n = estimated_size(c);
    if (!cur.changes.empty() && bytes + n > max_bytes) {
      // Close the chunk right before this change: it covers every seq up to it.
      cur.seqs.end = c.seq - 1;
      out.push_back(std::move(cur));
      cur = Changeset{actor, version, Range{c.seq, c.seq}, last_seq, ts, {}};
      bytes = 0;
    }
    bytes += n;
    cur.changes.push_back(std::move(c));
  }
  cur.seqs.end = range.end;
  out.push_back(std::move(cur));
  return out;
}

namespace {

Result<std::vector<Change>> query(CrrTables& tables, const std::string& where,
                                  const std::function<void(sqlite3_stmt*)>& bind) {
  auto st = prepare(tables.db(),
                    "SELECT \"table\", pk, cid, val, col_version, db_version, site_id, cl, seq, ts "
                    "FROM crsql_changes WHERE " + where,
                    false);
  if (!st) return tl::unexpected(st.error());
  bind(st->get());
  std::vector<Change> out;
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
    sqlite3_stmt* s = st->get();
    Change c;
    c.table = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    auto pk = column_value(s, 1);
    if (auto* b = std::get_if<Bytes>(&pk)) c.pk = std::move(*b);
    c.cid = reinterpret_cast<const char*>(sqlite3_column_text(s, 2));
    c.val = column_value(s, 3);
    c.col_version = sqlite3_column_int64(s, 4);
    c.db_version = sqlite3_column_int64(s, 5);
    if (sqlite3_column_bytes(s, 6) == 16) std::memcpy(c.site_id.data(), sqlite3_column_blob(s, 6), 16);
    c.cl = sqlite3_column_int64(s, 7);
    c.seq = sqlite3_column_int64(s, 8);
    c.ts = std::strtoull(reinterpret_cast<const char*>(sqlite3_column_text(s, 9)), nullptr, 10);
    out.push_back(std::move(c));
  }
  if (rc != SQLITE_DONE) return detail::sqlite_error(tables.db(), "read changes", rc);
  return out;
}

}  // namespace

Result<std::vector<Change>> changes_for_version(CrrTables& tables, const SiteId& actor,
                                                std::int64_t version) {
  return query(tables, "site_id = ?1 AND db_version = ?2 ORDER BY seq", [&](sqlite3_stmt* s) {
    detail::bind_blob(s, 1, actor.data(), actor.size());
    sqlite3_bind_int64(s, 2, version);
  });
}

Result<std::vector<Change>> changes_since(CrrTables& tables, const SiteId& actor, std::int64_t after,
                                          std::optional<std::size_t> limit) {
  std::string where = "site_id = ?1 AND db_version > ?2 ORDER BY db_version, seq";
  if (limit) where += " LIMIT " + std::to_string(*limit);
  return query(tables, where, [&](sqlite3_stmt* s) {
    detail::bind_blob(s, 1, actor.data(), actor.size());
    sqlite3_bind_int64(s, 2, after);
  });
}

Result<RangeSet> versions_with_rows(CrrTables& tables, const SiteId& actor, Range versions) {
  auto st = prepare(tables.db(),
                    "SELECT DISTINCT db_version FROM crsql_changes WHERE site_id = ?1 AND "
                    "db_version BETWEEN ?2 AND ?3",
                    false);
  if (!st) return tl::unexpected(st.error());
  detail::bind_blob(st->get(), 1, actor.data(), actor.size());
  sqlite3_bind_int64(st->get(), 2, versions.start);
  sqlite3_bind_int64(st->get(), 3, versions.end);
  RangeSet out;
  while (sqlite3_step(st->get()) == SQLITE_ROW) out.insert(sqlite3_column_int64(st->get(), 0));
  return out;
}

}  // namespace patina::crdt
