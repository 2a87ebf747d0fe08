#pragma once
// Reads an oracle case file ("crsql-oracle-case/1", see the README beside the
// cases) into crdt::ReplayCase. Header-only; the including program must
// compile Boost.JSON once (`#include <boost/json/src.hpp>` in one TU). Kept
// out of crdt/ so the library stays JSON-free; `patina debug replay-case` can
// include it too.
#include <boost/json.hpp>

#include <fstream>
#include <sstream>
#include <string>

#include "crdt/replay.hpp"

namespace patina::crdt::oracle {

namespace json = boost::json;

inline Value to_value(const json::value& v) {
  if (v.is_null()) return Null{};
  const auto& o = v.as_object();
  if (auto* p = o.if_contains("int")) return p->to_number<std::int64_t>();
  if (auto* p = o.if_contains("real")) return p->to_number<double>();
  if (auto* p = o.if_contains("text")) return std::string(p->as_string());
  Bytes b;
  from_hex(std::string_view(o.at("blob").as_string()), b);
  return b;
}

inline Change to_change(const json::value& jv) {
  const auto& o = jv.as_object();
  Change c;
  c.table = std::string(o.at("table").as_string());
  from_hex(std::string_view(o.at("pk").as_string()), c.pk);
  c.cid = std::string(o.at("cid").as_string());
  c.val = to_value(o.at("val"));
  c.col_version = o.at("col_version").to_number<std::int64_t>();
  c.db_version = o.at("db_version").to_number<std::int64_t>();
  site_id_from_hex(std::string_view(o.at("site_id").as_string()), c.site_id);
  c.cl = o.at("cl").to_number<std::int64_t>();
  c.seq = o.at("seq").to_number<std::int64_t>();
  c.ts = std::stoull(std::string(o.at("ts").as_string()));
  return c;
}

inline std::vector<Change> to_changes(const json::value& v) {
  std::vector<Change> out;
  for (const auto& c : v.as_array()) out.push_back(to_change(c));
  return out;
}

inline std::map<std::string, TableSnapshot> to_tables(const json::value& v) {
  std::map<std::string, TableSnapshot> out;
  for (const auto& [name, rows] : v.as_object()) {
    auto& t = out[std::string(name)];
    for (const auto& row : rows.as_array()) {
      std::vector<Value> r;
      for (const auto& cell : row.as_array()) r.push_back(to_value(cell));
      t.push_back(std::move(r));
    }
  }
  return out;
}

// Throws (boost::system::system_error, std::exception) on malformed input.
inline ReplayCase parse_case(const std::string& text, const std::string& name) {
  json::value root = json::parse(text);
  const auto& c = root.as_object();
  ReplayCase rc;
  rc.name = name;
  for (const auto& r : c.at("replicas").as_array()) {
    SiteId s{};
    site_id_from_hex(std::string_view(r.at("site_id").as_string()), s);
    rc.sites.push_back(s);
  }
  rc.merge_equal_values = c.at("config").at("merge_equal_values").as_bool();
  for (const auto& s : c.at("schema").as_array()) rc.schema.emplace_back(s.as_string());
  for (const auto& t : c.at("crr_tables").as_array()) rc.crr_tables.emplace_back(t.as_string());
  for (const auto& [t, sql] : c.at("snapshot_sql").as_object())
    rc.snapshot_sql.emplace_back(std::string(t), std::string(sql.as_string()));
  for (const auto& sv : c.at("steps").as_array()) {
    const auto& s = sv.as_object();
    ReplayStep step;
    step.index = s.at("i").to_number<int>();
    if (s.at("kind").as_string() == "op") {
      step.kind = ReplayStep::Kind::op;
      step.op = std::string(s.at("op").as_string());
      step.replica = s.at("replica").to_number<int>();
      for (const auto& st : s.at("statements").as_array()) {
        ReplayStatement stmt;
        stmt.sql = std::string(st.at("sql").as_string());
        for (const auto& p : st.at("params").as_array()) stmt.params.push_back(to_value(p));
        step.statements.push_back(std::move(stmt));
      }
      step.db_version_before = s.at("db_version_before").to_number<std::int64_t>();
      step.db_version_after = s.at("db_version_after").to_number<std::int64_t>();
    } else {
      step.kind = ReplayStep::Kind::merge;
      step.src = s.at("src").to_number<int>();
      step.dst = s.at("dst").to_number<int>();
      for (const auto& b : s.at("survived").as_array()) step.survived.push_back(b.as_bool());
    }
    step.changes = to_changes(s.at("changes"));
    step.tables_after = to_tables(s.at("tables_after"));
    rc.steps.push_back(std::move(step));
  }
  const auto& f = c.at("final").as_object();
  rc.final_tables = to_tables(f.at("tables"));
  for (const auto& rv : f.at("replicas").as_array()) {
    ReplayFinalReplica fr;
    fr.replica = rv.at("replica").to_number<int>();
    fr.db_version = rv.at("crsql_db_version").to_number<std::int64_t>();
    fr.changes = to_changes(rv.at("changes"));
    rc.final_replicas.push_back(std::move(fr));
  }
  return rc;
}

inline ReplayCase read_case(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_case(ss.str(), path);
}

}  // namespace patina::crdt::oracle

#include <ostream>

namespace patina::crdt::oracle {

// The body of `patina debug replay-case FILE.json...`: one line per case
// ("PASS path" or "FAIL path" followed by the first mismatch, indented), then
// "N passed, M failed". Returns the process exit code (0 only if all passed).
inline int replay_files(const std::vector<std::string>& files, std::ostream& out) {
  int passed = 0, failed = 0;
  for (const auto& f : files) {
    std::string why;
    try {
      auto outcome = replay_case(read_case(f));
      if (!outcome) why = "replay error: " + outcome.error().message;
      else if (!outcome->passed) why = outcome->mismatch;
    } catch (const std::exception& e) {
      why = std::string("cannot read case: ") + e.what();
    }
    if (why.empty()) {
      ++passed;
      out << "PASS " << f << "\n";
    } else {
      ++failed;
      out << "FAIL " << f << "\n  " << why << "\n";
    }
  }
  out << passed << " passed, " << failed << " failed\n";
  return failed == 0 && passed > 0 ? 0 : 1;
}

}  // namespace patina::crdt::oracle
