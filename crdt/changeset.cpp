#include "crdt/changeset.hpp"

#include <algorithm>
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

// Reads changes of |actor| straight from the clock tables (not through the
// view, whose site_id is a join result and cannot use the index).
Result<std::vector<Change>> query(CrrTables& tables, const SiteId& actor, const std::string& clock_where,
                                  const std::string& tail, const std::function<void(sqlite3_stmt*)>& bind) {
  auto ord = tables.site_ordinal(actor, false);
  if (!ord) return tl::unexpected(ord.error());
  if (!*ord) return std::vector<Change>{};
  // The site ordinal is ?9 so one prepared statement serves every actor:
  // this runs after every local commit (broadcast) and per sync request.
  auto st = tables.cached_statement("changes:" + clock_where + "|" + tail, [&] {
    return "SELECT \"table\", pk, cid, val, col_version, db_version, site_id, cl, seq, ts FROM (" +
           tables.changes_select("c.site_id = ?9 AND " + clock_where) + ") " + tail;
  });
  if (!st) return tl::unexpected(st.error());
  detail::Reset reset(*st);
  bind(*st);
  sqlite3_bind_int64(*st, 9, **ord);
  std::vector<Change> out;
  int rc;
  while ((rc = sqlite3_step(*st)) == SQLITE_ROW) out.push_back(change_from_row(*st));
  if (rc != SQLITE_DONE) return detail::sqlite_error(tables.db(), "read changes", rc);
  return out;
}

}  // namespace

Result<std::vector<Change>> changes_for_version(CrrTables& tables, const SiteId& actor,
                                                std::int64_t version) {
  // Sorted here rather than by SQLite: an ORDER BY builds a temporary b-tree
  // per call, and this runs after every local commit (a fifth of a one-row
  // API write's time on the writer went to this query with it).
  auto rows = query(tables, actor, "c.db_version = ?1", "",
                    [&](sqlite3_stmt* s) { sqlite3_bind_int64(s, 1, version); });
  if (rows) std::sort(rows->begin(), rows->end(), [](const Change& a, const Change& b) { return a.seq < b.seq; });
  return rows;
}

Result<std::vector<Change>> changes_since(CrrTables& tables, const SiteId& actor, std::int64_t after,
                                          std::optional<std::size_t> limit) {
  std::string tail = "ORDER BY db_version, seq";
  if (limit) tail += " LIMIT " + std::to_string(*limit);  // few distinct limits: cached per value
  return query(tables, actor, "c.db_version > ?1", tail,
               [&](sqlite3_stmt* s) { sqlite3_bind_int64(s, 1, after); });
}

Result<RangeSet> versions_with_rows(CrrTables& tables, const SiteId& actor, Range versions) {
  RangeSet out;
  auto ord = tables.site_ordinal(actor, false);
  if (!ord) return tl::unexpected(ord.error());
  if (!*ord) return out;
  for (const auto& name : tables.crr_names()) {
    auto st = prepare(tables.db(),
                      "SELECT DISTINCT db_version FROM " + detail::quote_ident(name + "__crsql_clock") +
                          " WHERE site_id = ?1 AND db_version BETWEEN ?2 AND ?3",
                      false);
    if (!st) return tl::unexpected(st.error());
    sqlite3_bind_int64(st->get(), 1, **ord);
    sqlite3_bind_int64(st->get(), 2, versions.start);
    sqlite3_bind_int64(st->get(), 3, versions.end);
    while (sqlite3_step(st->get()) == SQLITE_ROW) out.insert(sqlite3_column_int64(st->get(), 0));
  }
  return out;
}

}  // namespace patina::crdt

#include "crdt/bookkeeping.hpp"

namespace patina::crdt {

namespace {

Result<std::int64_t> head_of(const CrrTables& tables, const Bookkeeper& books, const SiteId& actor) {
  // Our own head from the database: this may be a reader connection.
  if (actor == tables.site_id()) return tables.stored_db_version();
  const auto* a = books.actor(actor);
  return a ? a->max : 0;
}

// Stored rows of a version, and the version's last seq as far as we can tell:
// the highest seq still stored (superseded tail seqs are covered by the last
// chunk's range).
std::int64_t last_seq_of(const std::vector<Change>& rows) {
  std::int64_t m = 0;
  for (const auto& c : rows) m = std::max(m, c.seq);
  return m;
}

std::uint64_t ts_of(const std::vector<Change>& rows) { return rows.empty() ? 0 : rows.front().ts; }

}  // namespace

Result<ServedVersions> serve_versions(CrrTables& tables, const Bookkeeper& books, const SiteId& actor,
                                      Range versions, std::size_t max_bytes) {
  ServedVersions out;
  const bool self = actor == tables.site_id();
  const ActorBooks* a = self ? nullptr : books.actor(actor);
  auto head = head_of(tables, books, actor);
  if (!head) return tl::unexpected(head.error());
  Range r{std::max<std::int64_t>(versions.start, 1), std::min(versions.end, *head)};
  if (r.start > r.end) return out;
  auto with_rows = versions_with_rows(tables, actor, r);
  if (!with_rows) return tl::unexpected(with_rows.error());
  for (std::int64_t v = r.start; v <= r.end; ++v) {
    if (a && a->needed.contains(v)) continue;  // we lack it too
    if (a) {
      if (auto it = a->partials.find(v); it != a->partials.end()) {
        auto rows = books.buffered(actor, v);
        if (!rows) return tl::unexpected(rows.error());
        for (const auto& seqs : it->second.seqs.ranges()) {
          std::vector<Change> part;
          for (const auto& c : *rows)
            if (c.seq >= seqs.start && c.seq <= seqs.end) part.push_back(c);
          auto chunks = ChangesetChunker::chunk(actor, v, seqs, it->second.last_seq, it->second.ts,
                                                std::move(part), max_bytes);
          for (auto& c : chunks) out.changesets.push_back(std::move(c));
        }
        continue;
      }
    }
    if (!with_rows->contains(v)) {
      out.empty.insert(v);
      continue;
    }
    auto rows = changes_for_version(tables, actor, v);
    if (!rows) return tl::unexpected(rows.error());
    const std::int64_t last = last_seq_of(*rows);
    const std::uint64_t ts = ts_of(*rows);
    auto chunks = ChangesetChunker::chunk(actor, v, Range{0, last}, last, ts, std::move(*rows), max_bytes);
    for (auto& c : chunks) out.changesets.push_back(std::move(c));
  }
  return out;
}

Result<std::vector<Changeset>> serve_partial(CrrTables& tables, const Bookkeeper& books, const SiteId& actor,
                                             std::int64_t version, const RangeSet& seqs, std::size_t max_bytes) {
  std::vector<Change> rows;
  std::int64_t last = 0;
  std::uint64_t ts = 0;
  const ActorBooks* a = actor == tables.site_id() ? nullptr : books.actor(actor);
  if (a && a->partials.count(version)) {
    const auto& p = a->partials.at(version);
    auto b = books.buffered(actor, version);
    if (!b) return tl::unexpected(b.error());
    rows = std::move(*b);
    last = p.last_seq;
    ts = p.ts;
  } else {
    auto stored = changes_for_version(tables, actor, version);
    if (!stored) return tl::unexpected(stored.error());
    rows = std::move(*stored);
    // The version is complete here, but its superseded tail seqs are gone, so
    // the highest stored seq may be below the real last_seq. The requester
    // knows the real one (its partial's) and never asks beyond it: serve the
    // whole requested range, holes included, or a requester that lacks only
    // superseded tail seqs would never complete (found by tests/sim seed 9).
    last = last_seq_of(rows);
    if (!seqs.empty()) last = std::max(last, seqs.ranges().back().end);
    ts = ts_of(rows);
  }
  std::vector<Changeset> out;
  for (const auto& want : seqs.ranges()) {
    Range r{want.start, std::min(want.end, last)};
    if (r.start > r.end) continue;
    std::vector<Change> part;
    for (const auto& c : rows)
      if (c.seq >= r.start && c.seq <= r.end) part.push_back(c);
    auto chunks = ChangesetChunker::chunk(actor, version, r, last, ts, std::move(part), max_bytes);
    for (auto& c : chunks) out.push_back(std::move(c));
  }
  return out;
}

}  // namespace patina::crdt
