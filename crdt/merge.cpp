#include "crdt/merge.hpp"

#include <cstring>

#include "crdt/detail/capture.hpp"
#include "crdt/detail/sqlite.hpp"
#include "crdt/detail/table_state.hpp"
#include "crdt/packed_pk.hpp"

namespace patina::crdt {

using detail::Reset;
using detail::TableState;

bool BytesLess::operator()(const Bytes& a, const Bytes& b) const {
  std::size_t n = std::min(a.size(), b.size());
  int c = n == 0 ? 0 : std::memcmp(a.data(), b.data(), n);
  return c != 0 ? c < 0 : a.size() < b.size();
}

std::size_t MergeReport::num_applied() const {
  std::size_t n = 0;
  for (bool b : applied) n += b ? 1 : 0;
  return n;
}

namespace {

struct Ctx {
  CrrTables& t;
  TableState& st;
  const Change& c;
  const std::vector<Value>& pks;
  const Bytes& packed;
  std::int64_t key;
  sqlite3* db() const { return t.db(); }
  void bind_pks(sqlite3_stmt* s, int first = 1) const {
    for (std::size_t i = 0; i < pks.size(); ++i) bind_value(s, first + static_cast<int>(i), pks[i]);
  }
};

Result<void> set_winner_clock(const Ctx& x, std::string_view col, std::int64_t col_version) {
  auto ord = x.t.site_ordinal(x.c.site_id, true);
  if (!ord) return tl::unexpected(ord.error());
  sqlite3_stmt* s = x.st.set_winner.get();
  Reset reset(s);
  sqlite3_bind_int64(s, 1, x.key);
  detail::bind_text(s, 2, col);
  sqlite3_bind_int64(s, 3, col_version);
  sqlite3_bind_int64(s, 4, x.c.db_version);
  sqlite3_bind_int64(s, 5, x.c.seq);
  sqlite3_bind_int64(s, 6, **ord);
  detail::bind_text(s, 7, std::to_string(x.c.ts));
  return detail::step_done(x.db(), s, "set winner clock");
}

// Inserts the bare row if absent, zeroes the other columns' clocks (their
// values predate the delete this resurrection follows) and sets the sentinel.
Result<bool> resurrect(const Ctx& x, std::int64_t col_version) {
  bool inserted;
  {
    CrrTables::CaptureSuspension quiet(x.t);
    sqlite3_stmt* s = x.st.merge_pk_only.get();
    Reset reset(s);
    x.bind_pks(s);
    if (auto r = detail::step_done(x.db(), s, "resurrect row"); !r) return tl::unexpected(r.error());
    inserted = sqlite3_changes(x.db()) > 0;
  }
  {
    sqlite3_stmt* s = x.st.zero_clocks.get();
    Reset reset(s);
    sqlite3_bind_int64(s, 1, x.key);
    if (auto r = detail::step_done(x.db(), s, "zero clocks"); !r) return tl::unexpected(r.error());
  }
  if (auto r = set_winner_clock(x, sentinel_cid, col_version); !r) return tl::unexpected(r.error());
  return inserted;
}

struct LocalClock {
  std::int64_t col_version;
  std::int64_t site_ordinal;
};

Result<std::optional<LocalClock>> local_clock(const Ctx& x, std::string_view col) {
  sqlite3_stmt* s = x.st.clock_get.get();
  Reset reset(s);
  sqlite3_bind_int64(s, 1, x.key);
  detail::bind_text(s, 2, col);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW)
    return std::optional<LocalClock>(LocalClock{sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1)});
  if (rc != SQLITE_DONE) return detail::sqlite_error(x.db(), "select clock", rc);
  return std::optional<LocalClock>();
}

// Rule 4: does the incoming site id beat the one on the local entry?
Result<bool> site_wins(const Ctx& x, std::int64_t local_ordinal) {
  auto local_site = x.t.site_for_ordinal(local_ordinal);
  if (!local_site) return tl::unexpected(local_site.error());
  return std::memcmp(x.c.site_id.data(), local_site->data(), local_site->size()) > 0;
}

// Rules 2-4 for a column change at the same causal length.
Result<bool> column_wins(const Ctx& x, int col_index) {
  auto clock = local_clock(x, x.c.cid);
  if (!clock) return tl::unexpected(clock.error());
  if (!*clock) return true;
  if (x.c.col_version != (*clock)->col_version) return x.c.col_version > (*clock)->col_version;
  sqlite3_stmt* s = x.st.col_value[static_cast<std::size_t>(col_index)].get();
  Reset reset(s);
  x.bind_pks(s);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) return true;  // clock without a row: take the incoming value
  if (rc != SQLITE_ROW) return detail::sqlite_error(x.db(), "select local value", rc);
  int cmp = compare_values(x.c.val, column_value(s, 0));
  if (cmp == 0 && x.t.merge_equal_values()) return site_wins(x, (*clock)->site_ordinal);
  return cmp > 0;
}

Result<std::int64_t> local_cl(const Ctx& x) {
  sqlite3_stmt* s = x.st.local_cl.get();
  Reset reset(s);
  sqlite3_bind_int64(s, 1, x.key);
  int rc = sqlite3_step(s);
  if (rc != SQLITE_ROW) return detail::sqlite_error(x.db(), "select causal length", rc);
  return sqlite3_column_type(s, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(s, 0);
}

}  // namespace

namespace {

// Rule 1 for an even cl: a higher one deletes the row; an equal one is a
// concurrent delete, settled by site id only with merge-equal-values.
Result<bool> merge_delete(const Ctx& x, std::int64_t local, PkSet& rows) {
  if (x.c.cl == local) {
    if (!x.t.merge_equal_values()) return false;
    auto clock = local_clock(x, sentinel_cid);
    if (!clock) return tl::unexpected(clock.error());
    if (!*clock) return false;
    auto wins = site_wins(x, (*clock)->site_ordinal);
    if (!wins) return tl::unexpected(wins.error());
    if (!*wins) return false;
    if (auto r = set_winner_clock(x, sentinel_cid, x.c.col_version); !r) return tl::unexpected(r.error());
    return true;  // metadata only: the row is gone on both sides
  }
  {
    CrrTables::CaptureSuspension quiet(x.t);
    sqlite3_stmt* s = x.st.merge_delete.get();
    Reset reset(s);
    x.bind_pks(s);
    if (auto r = detail::step_done(x.db(), s, "merge delete"); !r) return tl::unexpected(r.error());
    if (sqlite3_changes(x.db()) > 0) rows.insert(x.packed);
  }
  // The sentinel first, then drop the column clocks (cr-sqlite's order).
  if (auto r = set_winner_clock(x, sentinel_cid, x.c.col_version); !r) return tl::unexpected(r.error());
  sqlite3_stmt* d = x.st.drop_clocks.get();
  Reset reset(d);
  sqlite3_bind_int64(d, 1, x.key);
  if (auto r = detail::step_done(x.db(), d, "drop clocks"); !r) return tl::unexpected(r.error());
  return true;
}

// A column change (odd cl >= local): resurrect first if it comes from a later
// life of the row, then rules 2-4 unless the resurrection already decided.
Result<bool> merge_column(const Ctx& x, int col_index, std::int64_t local, PkSet& rows) {
  const bool needs_resurrect = x.c.cl > local;
  const bool row_exists = local != 0;
  if (needs_resurrect && (row_exists || x.c.cl > 1)) {
    // The sentinel takes this change's cl and stamp.
    auto inserted = resurrect(x, x.c.cl);
    if (!inserted) return tl::unexpected(inserted.error());
    if (*inserted) rows.insert(x.packed);
  }
  bool wins = needs_resurrect || !row_exists;
  if (!wins) {
    auto w = column_wins(x, col_index);
    if (!w) return tl::unexpected(w.error());
    wins = *w;
  }
  if (!wins) return false;
  {
    CrrTables::CaptureSuspension quiet(x.t);
    sqlite3_stmt* s = x.st.merge_col[static_cast<std::size_t>(col_index)].get();
    Reset reset(s);
    x.bind_pks(s);
    bind_value(s, static_cast<int>(x.pks.size()) + 1, x.c.val);
    if (auto r = detail::step_done(x.db(), s, "merge column"); !r) return tl::unexpected(r.error());
    rows.insert(x.packed);
  }
  if (auto r = set_winner_clock(x, x.c.cid, x.c.col_version); !r) return tl::unexpected(r.error());
  return true;
}

}  // namespace

Result<bool> Merger::merge_one(const Change& c, MergeReport& report) {
  TableState* st = tables_.state(c.table);
  if (st == nullptr) return make_error(ErrorCode::invalid_input, "merge: unknown table " + c.table);
  auto pks = PackedPk::unpack(c.pk);
  if (!pks) return tl::unexpected(pks.error());
  if (pks->size() != st->info.pks.size())
    return make_error(ErrorCode::invalid_input, "merge: pk of " + c.table + " has " +
                                                    std::to_string(pks->size()) + " columns, expected " +
                                                    std::to_string(st->info.pks.size()));
  const bool is_sentinel = c.cid == sentinel_cid;
  const int col_index = is_sentinel ? -1 : st->non_pk_index(c.cid);
  if (!is_sentinel && col_index < 0)
    return make_error(ErrorCode::invalid_input, "merge: unknown column " + c.table + "." + c.cid);
  if (c.cl < 1) return make_error(ErrorCode::invalid_input, "merge: causal length must be >= 1");

  // Re-pack so a non-canonical encoding from a peer cannot create a second key
  // for the same row.
  const Bytes packed = PackedPk::pack(*pks);
  auto key = detail::get_or_create_key(tables_.db(), *st, packed, [&](sqlite3_stmt* s, int first) {
    for (std::size_t i = 0; i < pks->size(); ++i) bind_value(s, first + static_cast<int>(i), (*pks)[i]);
  });
  if (!key) return tl::unexpected(key.error());
  Ctx x{tables_, *st, c, *pks, packed, key->first};

  auto local = local_cl(x);
  if (!local) return tl::unexpected(local.error());
  if (c.cl < *local) return false;  // rule 1: an older life of the row
  auto& rows = report.changed_rows[c.table];
  if (c.cl % 2 == 0) return merge_delete(x, *local, rows);
  if (is_sentinel) {
    // An equal live sentinel is not tie-broken, even with merge-equal-values.
    if (c.cl == *local) return false;
    auto inserted = resurrect(x, c.col_version);
    if (!inserted) return tl::unexpected(inserted.error());
    if (*inserted) rows.insert(packed);
    return true;
  }
  return merge_column(x, col_index, *local, rows);
}

Result<MergeReport> Merger::apply(std::span<const Change> changes) {
  sqlite3* db = tables_.db();
  if (auto r = detail::exec(db, "SAVEPOINT patina_merge"); !r) return tl::unexpected(r.error());
  MergeReport report;
  report.applied.reserve(changes.size());
  std::map<SiteId, std::int64_t> max_seen;
  for (const auto& c : changes) {
    auto r = merge_one(c, report);
    if (!r) {
      (void)detail::exec(db, "ROLLBACK TO patina_merge; RELEASE patina_merge");
      return tl::unexpected(r.error());
    }
    report.applied.push_back(*r);
    auto& m = max_seen[c.site_id];
    m = std::max(m, c.db_version);
  }
  // Versions seen per site, whether their changes won or not.
  for (const auto& [site, version] : max_seen) {
    if (auto r = tables_.note_db_version(site, version); !r) {
      (void)detail::exec(db, "ROLLBACK TO patina_merge; RELEASE patina_merge");
      return tl::unexpected(r.error());
    }
  }
  for (auto it = report.changed_rows.begin(); it != report.changed_rows.end();)
    it = it->second.empty() ? report.changed_rows.erase(it) : std::next(it);
  if (auto r = detail::exec(db, "RELEASE patina_merge"); !r) return tl::unexpected(r.error());
  return report;
}

}  // namespace patina::crdt
