#pragma once
// Oracle-case replay: runs a recorded cr-sqlite session on fresh replicas and
// reports the first place Patina differs (README of the oracle cases).
//
// The case arrives as plain data (ReplayCase): parsing the JSON files is the
// caller's business (tests/crdt/oracle_json.hpp does it with Boost.JSON), so
// crdt/ stays free of JSON. Checked, in order: tables after every step;
// db_version_after and the exact changes (cid, val, col_version, db_version,
// site_id, cl, seq) of every local write; `survived` of every merge; final
// tables; final crsql_db_version and every clock entry of every replica.

#include <map>
#include <string>
#include <vector>

#include "crdt/change.hpp"
#include "crdt/error.hpp"

namespace patina::crdt {

using TableSnapshot = std::vector<std::vector<Value>>;

struct ReplayStatement {
  std::string sql;
  std::vector<Value> params;
};

struct ReplayStep {
  enum class Kind { op, merge };
  int index = 0;
  Kind kind = Kind::op;
  std::string op;  // insert, update, tx, ... (ops only, for messages)
  int replica = 0;  // op: where it runs
  int src = 0, dst = 0;  // merge
  std::vector<ReplayStatement> statements;  // op: run in one transaction
  std::int64_t db_version_before = 0, db_version_after = 0;
  std::vector<Change> changes;  // op: what it recorded; merge: what is sent
  std::vector<bool> survived;   // merge
  std::map<std::string, TableSnapshot> tables_after;
};

struct ReplayFinalReplica {
  int replica = 0;
  std::int64_t db_version = 0;
  std::vector<Change> changes;  // sorted by (table, pk, cid)
};

struct ReplayCase {
  std::string name;
  std::vector<SiteId> sites;
  bool merge_equal_values = true;
  std::vector<std::string> schema;
  std::vector<std::string> crr_tables;
  std::vector<std::pair<std::string, std::string>> snapshot_sql;  // table -> SELECT
  std::vector<ReplayStep> steps;
  std::map<std::string, TableSnapshot> final_tables;
  std::vector<ReplayFinalReplica> final_replicas;
};

struct ReplayOutcome {
  bool passed = false;
  std::string mismatch;  // the first difference, readable; empty when passed
};

// Replays |c| on in-memory replicas. An Error means the replay itself could
// not run (e.g. SQLite failed to open); a mismatch is an outcome.
Result<ReplayOutcome> replay_case(const ReplayCase& c);

}  // namespace patina::crdt
