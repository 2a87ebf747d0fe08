#pragma once
// Statements as Corrosion's API encodes them (SPEC.md §1.2), and SQLite
// values as its JSON renders them.
//
// A Statement is untagged JSON, tried in this order:
//   {"query": "...", "params": [...], "named_params": {...}}
//   "SELECT 1"
//   ["INSERT ... (?, ?)", [1, "a"]]
//   ["SELECT ... :id", {":id": 1}]
// Parameter values: null -> NULL, bool -> 1/0, integer in i64 -> INTEGER,
// other numbers -> REAL, string -> TEXT, array of integers 0..255 -> BLOB,
// anything else -> TEXT holding the raw JSON.

#include <string>
#include <utility>
#include <vector>

#include <boost/json/value.hpp>

#include "core/result.hpp"
#include "core/sqlite.hpp"

namespace patina::api {

struct Statement {
  std::string sql;
  std::vector<core::SqlValue> params;
  std::vector<std::pair<std::string, core::SqlValue>> named_params;
};

// Errc::invalid_argument when |v| has none of the accepted shapes.
Result<Statement> parse_statement(const boost::json::value& v);
Result<std::vector<Statement>> parse_statements(const boost::json::value& v);

core::SqlValue value_from_json(const boost::json::value& v);
boost::json::value value_to_json(const core::SqlValue& v);

// Prepares |st| on |db| and binds its parameters. Named parameters must
// carry their sigil (":id", "$id", "@id").
Result<core::Stmt> prepare_bound(core::Db& db, const Statement& st);
// The same with the connection's statement cache (Db::cached): the statement
// stays valid until the next cached() call on |db|.
Result<core::Stmt*> prepare_bound_cached(core::Db& db, const Statement& st);

}  // namespace patina::api
