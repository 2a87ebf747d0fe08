#pragma once
// How a subscription's query is maintained (SPEC.md §6, DESIGN.md
// "Subscriptions"): which replicated tables it reads, and the SQL that
// re-evaluates it for a handful of changed primary keys.
//
// Two modes, chosen when the subscription is created:
//  * incremental — SELECT [ALL] ... FROM <tables and joins> [WHERE ...]
//    [ORDER BY ...]: every table instance's pk is appended to the result
//    columns, so each result row has an identity, and a change to table T
//    re-evaluates only the result rows whose pks it touched: the query is
//    restricted to those pks of T, then to the affected pks of the first
//    (root) table. Work is proportional to the changed rows, not the table.
//  * full — everything else SQLite can run read-only (aggregates, GROUP
//    BY, DISTINCT, LIMIT, compound selects, subqueries, window functions,
//    CTEs, RIGHT/FULL joins): the whole query re-runs when a table it reads
//    changes and the result is diffed. Slower, never wrong (Corrosion gives
//    wrong results for these, #326).
//
// Refused with a clear error: more than one statement, anything that is
// not a read-only SELECT, queries reading no replicated table or reading
// tables that are not replicated (their changes are never seen).

#include <cstddef>
#include <set>
#include <string>
#include <vector>

#include "api/statement.hpp"
#include "core/result.hpp"
#include "core/sqlite.hpp"

namespace patina::api {

// One table instance in the FROM clause of an incremental query.
struct SubTable {
  std::string table;            // replicated table name
  std::string ref;              // how the query names it (alias or table), SQL-quoted
  std::vector<std::string> pk;  // pk column names, in pk order
};

class SubPlan {
 public:
  enum class Mode { incremental, full };

  // Analyzes |st| on |db| (a connection to the main database). Parameters
  // are inlined first (sqlite3_expanded_sql): the expanded text is the
  // subscription's identity. Errc::invalid_argument for refused queries.
  static Result<SubPlan> make(core::Db& db, const Statement& st, const std::set<std::string>& replicated);

  const std::string& sql() const { return sql_; }
  Mode mode() const { return mode_; }
  // Why a query is in full mode ("GROUP BY", "aggregate function count()").
  const std::string& full_reason() const { return full_reason_; }
  const std::vector<std::string>& columns() const { return columns_; }
  // Every replicated table the query reads (in any clause or subquery).
  const std::set<std::string>& watched() const { return watched_; }

  // Incremental mode: the table instances, the root first.
  const std::vector<SubTable>& tables() const { return tables_; }
  // The query with every instance's pk appended after the result columns
  // (columns().size() + pk_width() columns); ORDER BY kept. In full mode,
  // the query itself.
  const std::string& full_sql() const { return full_sql_; }
  std::size_t pk_width() const { return pk_width_; }
  // Offset of instance |i|'s first pk column in a row of full_sql().
  std::size_t pk_offset(std::size_t i) const;
  // The full query restricted to |n| pk tuples of instance |i| (bound as
  // n * tables()[i].pk.size() parameters, tuple by tuple); no ORDER BY.
  std::string restricted_sql(std::size_t i, std::size_t n) const;

 private:
  std::string sql_;
  Mode mode_ = Mode::full;
  std::string full_reason_;
  std::vector<std::string> columns_;
  std::set<std::string> watched_;
  std::vector<SubTable> tables_;
  std::string full_sql_;
  std::size_t pk_width_ = 0;
  // Offsets into sql_ for the rewrite.
  std::size_t from_start_ = 0;     // the FROM keyword
  std::size_t where_body_ = 0;     // just after WHERE, or npos
  std::size_t clause_end_ = 0;     // ORDER BY or the end of the text
};

// |table|'s primary-key columns in pk order (empty: no declared pk).
Result<std::vector<std::string>> pk_columns(core::Db& db, const std::string& table);

// Quotes an SQL identifier: "a""b".
std::string quote_ident(std::string_view name);

}  // namespace patina::api
