#include "crdt/replay.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <tuple>

#include "crdt/crr_tables.hpp"
#include "crdt/detail/sqlite.hpp"
#include "crdt/merge.hpp"

namespace patina::crdt {
namespace {

struct Replica {
  sqlite3* db = nullptr;
  std::unique_ptr<CrrTables> crr;
  ~Replica() {
    crr.reset();
    if (db) sqlite3_close_v2(db);
  }
};

// Exact, except reals within one ulp (a JSON reader may round the last bit).
bool same_value(const Value& a, const Value& b) {
  if (a.index() != b.index()) return false;
  if (std::holds_alternative<double>(a)) {
    double x = std::get<double>(a), y = std::get<double>(b);
    return x == y || std::nextafter(x, y) == y;
  }
  return compare_values(a, b) == 0;
}

bool same_change(const Change& a, const Change& b, bool with_seq) {
  return a.table == b.table && a.pk == b.pk && a.cid == b.cid && same_value(a.val, b.val) &&
         a.col_version == b.col_version && a.db_version == b.db_version && a.site_id == b.site_id &&
         a.cl == b.cl && (!with_seq || a.seq == b.seq);
}

std::string list(const std::vector<Change>& cs) {
  std::string out;
  for (const auto& c : cs) out += "\n    " + to_string(c);
  return out.empty() ? " (none)" : out;
}

std::string diff(const std::vector<Change>& want, const std::vector<Change>& got) {
  bool same = want.size() == got.size();
  for (std::size_t i = 0; same && i < want.size(); ++i) same = same_change(want[i], got[i], true);
  if (same) return "";
  return "\n  want:" + list(want) + "\n  got:" + list(got);
}

std::string render(const TableSnapshot& rows) {
  std::string out;
  for (const auto& r : rows) {
    out += "(";
    for (std::size_t i = 0; i < r.size(); ++i) out += (i ? ", " : "") + to_string(r[i]);
    out += ") ";
  }
  return out.empty() ? "(empty)" : out;
}

Result<std::vector<Change>> read_changes(sqlite3* db, const std::string& where, const std::string& order) {
  auto st = detail::prepare(db,
                            "SELECT \"table\", pk, cid, val, col_version, db_version, site_id, cl, seq, ts "
                            "FROM crsql_changes WHERE " + where + " ORDER BY " + order,
                            false);
  if (!st) return tl::unexpected(st.error());
  std::vector<Change> out;
  while (sqlite3_step(st->get()) == SQLITE_ROW) {
    sqlite3_stmt* s = st->get();
    out.push_back(change_from_row(s));
  }
  return out;
}

Result<TableSnapshot> snapshot(sqlite3* db, const std::string& sql) {
  auto st = detail::prepare(db, sql, false);
  if (!st) return tl::unexpected(st.error());
  TableSnapshot out;
  while (sqlite3_step(st->get()) == SQLITE_ROW) {
    std::vector<Value> row;
    for (int i = 0; i < sqlite3_column_count(st->get()); ++i) row.push_back(column_value(st->get(), i));
    out.push_back(std::move(row));
  }
  return out;
}

class Replayer {
 public:
  explicit Replayer(const ReplayCase& c) : c_(c) {}

  Result<ReplayOutcome> run() {
    for (const auto& site : c_.sites) {
      auto r = std::make_unique<Replica>();
      if (sqlite3_open(":memory:", &r->db) != SQLITE_OK)
        return make_error(ErrorCode::sqlite, "cannot open an in-memory database");
      auto crr = CrrTables::open(r->db, CrrOptions{site, c_.merge_equal_values});
      if (!crr) return tl::unexpected(crr.error());
      r->crr = std::move(*crr);
      for (const auto& sql : c_.schema)
        if (auto e = detail::exec(r->db, sql); !e) return tl::unexpected(e.error());
      for (const auto& t : c_.crr_tables)
        if (auto e = r->crr->make_crr(t); !e) return tl::unexpected(e.error());
      replicas_.push_back(std::move(r));
    }
    for (const auto& s : c_.steps) {
      std::string where = "step " + std::to_string(s.index) +
                          (s.kind == ReplayStep::Kind::op ? " (op " + s.op + " on replica " + std::to_string(s.replica) + ")"
                                                          : " (merge " + std::to_string(s.src) + " -> " + std::to_string(s.dst) + ")");
      auto err = s.kind == ReplayStep::Kind::op ? op(s) : merge(s);
      if (!err) return tl::unexpected(err.error());
      if (!err->empty()) return ReplayOutcome{false, where + ": " + *err};
    }
    for (std::size_t i = 0; i < replicas_.size(); ++i) {
      auto err = tables(*replicas_[i], c_.final_tables);
      if (!err) return tl::unexpected(err.error());
      if (!err->empty()) return ReplayOutcome{false, "final tables of replica " + std::to_string(i) + ": " + *err};
    }
    for (const auto& f : c_.final_replicas) {
      auto* r = replica(f.replica);
      if (!r) return make_error(ErrorCode::invalid_input, "final: no replica " + std::to_string(f.replica));
      if (r->crr->db_version() != f.db_version)
        return ReplayOutcome{false, "final: replica " + std::to_string(f.replica) + " crsql_db_version " +
                                        std::to_string(r->crr->db_version()) + ", want " + std::to_string(f.db_version)};
      auto got = read_changes(r->db, "1", "1");
      if (!got) return tl::unexpected(got.error());
      std::sort(got->begin(), got->end(), [](const Change& a, const Change& b) {
        return std::tie(a.table, a.pk, a.cid) < std::tie(b.table, b.pk, b.cid);
      });
      if (auto d = diff(f.changes, *got); !d.empty())
        return ReplayOutcome{false, "final clocks of replica " + std::to_string(f.replica) + ":" + d};
    }
    return ReplayOutcome{true, ""};
  }

 private:
  Replica* replica(int i) {
    return i >= 0 && static_cast<std::size_t>(i) < replicas_.size() ? replicas_[static_cast<std::size_t>(i)].get() : nullptr;
  }

  Result<std::string> op(const ReplayStep& s) {
    auto* r = replica(s.replica);
    if (!r) return make_error(ErrorCode::invalid_input, "no replica " + std::to_string(s.replica));
    if (auto e = r->crr->begin(); !e) return tl::unexpected(e.error());
    for (const auto& st : s.statements) {
      auto stmt = detail::prepare(r->db, st.sql, false);
      if (!stmt) {
        (void)r->crr->rollback();
        return "prepare failed: " + stmt.error().message;
      }
      for (std::size_t i = 0; i < st.params.size(); ++i) bind_value(stmt->get(), static_cast<int>(i) + 1, st.params[i]);
      if (auto e = detail::step_done(r->db, stmt->get(), st.sql); !e) {
        (void)r->crr->rollback();
        return "statement failed: " + e.error().message;
      }
    }
    auto commit = r->crr->commit();
    if (!commit) return tl::unexpected(commit.error());
    if (r->crr->db_version() != s.db_version_after)
      return "db_version_after " + std::to_string(r->crr->db_version()) + ", want " + std::to_string(s.db_version_after);
    std::vector<Change> got;
    if (commit->db_version) {
      auto rows = read_changes(r->db,
                               "site_id = x'" + to_hex(r->crr->site_id()) + "' AND db_version = " +
                                   std::to_string(*commit->db_version),
                               "seq");
      if (!rows) return tl::unexpected(rows.error());
      got = std::move(*rows);
    }
    if (auto d = diff(s.changes, got); !d.empty()) return "changes differ:" + d;
    return tables(*r, s.tables_after);
  }

  Result<std::string> merge(const ReplayStep& s) {
    auto* r = replica(s.dst);
    if (!r) return make_error(ErrorCode::invalid_input, "no replica " + std::to_string(s.dst));
    Merger m(*r->crr);
    auto report = m.apply(s.changes);
    if (!report) return "merge failed: " + report.error().message;
    auto t = tables(*r, s.tables_after);
    if (!t || !t->empty()) return t;
    auto all = read_changes(r->db, "1", "\"table\", pk, cid");
    if (!all) return tl::unexpected(all.error());
    for (std::size_t i = 0; i < s.changes.size() && i < s.survived.size(); ++i) {
      bool found = std::any_of(all->begin(), all->end(),
                               [&](const Change& c) { return same_change(c, s.changes[i], false); });
      if (found != s.survived[i])
        return "survived[" + std::to_string(i) + "] is " + (found ? "true" : "false") + " for " +
               to_string(s.changes[i]) + "\n  dst has:" + list(*all);
    }
    return std::string();
  }

  Result<std::string> tables(Replica& r, const std::map<std::string, TableSnapshot>& want) {
    for (const auto& [t, sql] : c_.snapshot_sql) {
      auto it = want.find(t);
      if (it == want.end()) continue;
      auto got = snapshot(r.db, sql);
      if (!got) return tl::unexpected(got.error());
      const auto& w = it->second;
      bool same = got->size() == w.size();
      for (std::size_t i = 0; same && i < w.size(); ++i) {
        same = w[i].size() == (*got)[i].size();
        for (std::size_t j = 0; same && j < w[i].size(); ++j) same = same_value(w[i][j], (*got)[i][j]);
      }
      if (!same) return "table " + t + " is " + render(*got) + "\n  want " + render(w);
    }
    return std::string();
  }

  const ReplayCase& c_;
  std::vector<std::unique_ptr<Replica>> replicas_;
};

}  // namespace

Result<ReplayOutcome> replay_case(const ReplayCase& c) { return Replayer(c).run(); }

}  // namespace patina::crdt
