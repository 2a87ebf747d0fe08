// Replays every oracle case (produced with the real cr-sqlite, see
// /work/shared/oracle-cases/README.md) on fresh replicas and checks, step by
// step: tables after every step, db_version_after and the exact changes of
// every local write, `survived` of every merge, and the final tables and full
// clock state of every replica. The first mismatch of a case is reported with
// enough context to reproduce it.
#include <boost/json/src.hpp>  // header-only Boost.JSON: exactly one TU includes this
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "test_db.hpp"

namespace patina::crdt {
namespace {

namespace json = boost::json;
using testing::TestDb;

std::string oracle_dir() {
  if (const char* d = std::getenv("PATINA_ORACLE_DIR")) return d;
  return PATINA_ORACLE_DIR;
}

std::vector<std::string> case_files() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(oracle_dir()))
    if (e.path().extension() == ".json") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

Value to_value(const json::value& v) {
  if (v.is_null()) return Null{};
  const auto& o = v.as_object();
  if (auto* p = o.if_contains("int")) return p->to_number<std::int64_t>();
  if (auto* p = o.if_contains("real")) return p->to_number<double>();
  if (auto* p = o.if_contains("text")) return std::string(p->as_string());
  Bytes b;
  from_hex(o.at("blob").as_string(), b);
  return b;
}

// Exact, except reals within 1 ulp (the JSON reader may round the last bit).
bool same_value(const Value& a, const Value& b) {
  if (a.index() != b.index()) return false;
  if (std::holds_alternative<double>(a)) {
    double x = std::get<double>(a), y = std::get<double>(b);
    return x == y || std::nextafter(x, y) == y;
  }
  return compare_values(a, b) == 0;
}

Change to_change(const json::value& jv) {
  const auto& o = jv.as_object();
  Change c;
  c.table = std::string(o.at("table").as_string());
  from_hex(o.at("pk").as_string(), c.pk);
  c.cid = std::string(o.at("cid").as_string());
  c.val = to_value(o.at("val"));
  c.col_version = o.at("col_version").to_number<std::int64_t>();
  c.db_version = o.at("db_version").to_number<std::int64_t>();
  site_id_from_hex(o.at("site_id").as_string(), c.site_id);
  c.cl = o.at("cl").to_number<std::int64_t>();
  c.seq = o.at("seq").to_number<std::int64_t>();
  c.ts = std::stoull(std::string(o.at("ts").as_string()));
  return c;
}

bool same_change(const Change& a, const Change& b, bool with_seq = true) {
  return a.table == b.table && a.pk == b.pk && a.cid == b.cid && same_value(a.val, b.val) &&
         a.col_version == b.col_version && a.db_version == b.db_version && a.site_id == b.site_id &&
         a.cl == b.cl && (!with_seq || a.seq == b.seq);
}

std::string list(const std::vector<Change>& cs) {
  std::string out;
  for (const auto& c : cs) out += "\n    " + to_string(c);
  return out.empty() ? " (none)" : out;
}

class Replay {
 public:
  explicit Replay(const json::object& c) : case_(c) {
    bool mev = c.at("config").at("merge_equal_values").as_bool();
    for (const auto& r : c.at("replicas").as_array()) {
      SiteId site;
      site_id_from_hex(r.at("site_id").as_string(), site);
      auto db = std::make_unique<TestDb>(site, mev);
      for (const auto& s : c.at("schema").as_array()) db->exec(std::string(s.as_string()));
      for (const auto& t : c.at("crr_tables").as_array()) db->crr_table(std::string(t.as_string()));
      replicas_.push_back(std::move(db));
    }
    for (const auto& [t, sql] : c.at("snapshot_sql").as_object())
      snapshot_sql_.emplace_back(std::string(t), std::string(sql.as_string()));
  }

  // Returns "" on success, else a description of the first mismatch.
  std::string run() {
    for (const auto& sv : case_.at("steps").as_array()) {
      const auto& s = sv.as_object();
      step_ = "step " + std::to_string(s.at("i").to_number<int>()) + " (" +
              std::string(s.at("kind").as_string()) +
              (s.contains("op") ? " " + std::string(s.at("op").as_string()) : "") + ")";
      std::string err = s.at("kind").as_string() == "op" ? op(s) : merge(s);
      if (!err.empty()) return step_ + ": " + err;
    }
    step_ = "final";
    const auto& f = case_.at("final").as_object();
    for (std::size_t i = 0; i < replicas_.size(); ++i) {
      if (auto e = tables(*replicas_[i], f.at("tables").as_object()); !e.empty())
        return "final replica " + std::to_string(i) + ": " + e;
    }
    for (const auto& rv : f.at("replicas").as_array()) {
      const auto& r = rv.as_object();
      auto& db = *replicas_[r.at("replica").to_number<std::size_t>()];
      if (db.crr->db_version() != r.at("crsql_db_version").to_number<std::int64_t>())
        return "final: crsql_db_version " + std::to_string(db.crr->db_version());
      std::vector<Change> want;
      for (const auto& c : r.at("changes").as_array()) want.push_back(to_change(c));
      auto got = db.changes();
      std::sort(got.begin(), got.end(), [](const Change& a, const Change& b) {
        return std::tie(a.table, a.pk, a.cid) < std::tie(b.table, b.pk, b.cid);
      });
      if (auto e = diff(want, got, true); !e.empty())
        return "final clocks of replica " + std::to_string(r.at("replica").to_number<int>()) + ": " + e;
    }
    return "";
  }

 private:
  std::string op(const json::object& s) {
    auto& db = *replicas_[s.at("replica").to_number<std::size_t>()];
    db.exec("BEGIN");
    for (const auto& stv : s.at("statements").as_array()) {
      const auto& st = stv.as_object();
      std::string sql(st.at("sql").as_string());
      sqlite3_stmt* stmt = nullptr;
      if (sqlite3_prepare_v2(db.db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK)
        return "prepare " + sql + ": " + sqlite3_errmsg(db.db);
      int i = 1;
      for (const auto& p : st.at("params").as_array()) bind_value(stmt, i++, to_value(p));
      int rc;
      while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      }
      sqlite3_finalize(stmt);
      if (rc != SQLITE_DONE) {
        std::string e = sqlite3_errmsg(db.db);
        db.exec("ROLLBACK");
        return "statement failed: " + sql + ": " + e;
      }
    }
    db.exec("COMMIT");
    auto want_v = s.at("db_version_after").to_number<std::int64_t>();
    if (db.crr->db_version() != want_v)
      return "db_version_after " + std::to_string(db.crr->db_version()) + ", want " +
             std::to_string(want_v);
    std::vector<Change> want;
    for (const auto& c : s.at("changes").as_array()) want.push_back(to_change(c));
    std::vector<Change> got;
    if (want_v != s.at("db_version_before").to_number<std::int64_t>())
      got = db.changes("site_id = x'" + to_hex(db.crr->site_id()) + "' AND db_version = " +
                           std::to_string(want_v),
                       "seq");
    if (auto e = diff(want, got, true); !e.empty()) return "changes: " + e;
    return tables(db, s.at("tables_after").as_object());
  }

  std::string merge(const json::object& s) {
    auto& db = *replicas_[s.at("dst").to_number<std::size_t>()];
    std::vector<Change> batch;
    for (const auto& c : s.at("changes").as_array()) batch.push_back(to_change(c));
    Merger m(*db.crr);
    auto r = m.apply(batch);
    if (!r) return "merge failed: " + r.error().message;
    if (auto e = tables(db, s.at("tables_after").as_object()); !e.empty()) return e;
    const auto& survived = s.at("survived").as_array();
    auto all = db.changes();
    for (std::size_t i = 0; i < batch.size(); ++i) {
      bool found = false;
      for (const auto& c : all) found = found || same_change(c, batch[i], false);
      if (found != survived[i].as_bool())
        return "survived[" + std::to_string(i) + "] is " + (found ? "true" : "false") +
               " for " + to_string(batch[i]) + "\n  dst has:" + list(all);
    }
    return "";
  }

  std::string tables(TestDb& db, const json::object& want) {
    for (const auto& [t, sql] : snapshot_sql_) {
      auto got = db.rows(sql);
      const auto& w = want.at(t).as_array();
      bool same = got.size() == w.size();
      for (std::size_t i = 0; same && i < got.size(); ++i) {
        const auto& wr = w[i].as_array();
        same = wr.size() == got[i].size();
        for (std::size_t j = 0; same && j < wr.size(); ++j) same = same_value(got[i][j], to_value(wr[j]));
      }
      if (!same) return "table " + t + " is " + db.dump(sql) + "\n  want " + json::serialize(w);
    }
    return "";
  }

  static std::string diff(const std::vector<Change>& want, const std::vector<Change>& got,
                          bool with_seq) {
    bool same = want.size() == got.size();
    for (std::size_t i = 0; same && i < want.size(); ++i) same = same_change(want[i], got[i], with_seq);
    if (same) return "";
    return "\n  want:" + list(want) + "\n  got:" + list(got);
  }

  const json::object& case_;
  std::vector<std::unique_ptr<TestDb>> replicas_;
  std::vector<std::pair<std::string, std::string>> snapshot_sql_;
  std::string step_;
};

class OracleCase : public ::testing::TestWithParam<std::string> {};

TEST_P(OracleCase, ReplaysExactly) {
  std::ifstream in(GetParam());
  ASSERT_TRUE(in) << GetParam();
  std::stringstream ss;
  ss << in.rdbuf();
  json::value v = json::parse(ss.str());
  Replay replay(v.as_object());
  std::string err = replay.run();
  EXPECT_EQ(err, "") << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Oracle, OracleCase, ::testing::ValuesIn(case_files()),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           return std::filesystem::path(p.param).stem().string();
                         });

}  // namespace
}  // namespace patina::crdt
