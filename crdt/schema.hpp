#pragma once
// SchemaManager: the replicated schema, declared in .sql files, applied as a diff.
//
// Input: db.schema_paths, each a file or a folder of *.sql files (sorted by
// name), read in path order. Only CREATE TABLE (not TEMP, not AS SELECT),
// CREATE INDEX and DROP INDEX IF EXISTS are accepted; the statements are
// validated by SQLite itself on a scratch in-memory database, then each table
// against the CRR rules (non-null pk, defaults on NOT NULL columns, no unique
// index besides the pk, no foreign key, no AUTOINCREMENT).
//
// Diff against the live database (SPEC.md §7.4): a table in the input
// replaces the stored definition of that table; tables absent from the input
// are kept. New table -> created and made replicated; existing table -> added
// columns via ALTER TABLE ADD COLUMN, indexes dropped/created/recreated to
// match. Removing or changing a column or changing the pk is refused with an
// error naming the file, table and column.
//
// Invariants: apply() runs in one SAVEPOINT: on any error nothing is applied
// (tables, indexes, triggers and the CrrTables registry are as before). Adding
// a column records no change at all: unwritten cells read as col_version 0
// with the column default, so no row is re-gossiped and no cell is stamped
// with an old version.

#include <map>
#include <string>
#include <vector>

#include "crdt/crr_tables.hpp"
#include "crdt/error.hpp"

namespace patina::crdt {

struct SchemaSource {
  std::string path;  // where it came from, for error messages
  std::string sql;
};

struct ColumnDef {
  std::string name;
  std::string type;
  bool not_null = false;
  std::string default_sql;  // as written; empty when none
  int pk = 0;               // position in the PRIMARY KEY, 0 if not a pk column
  bool operator==(const ColumnDef&) const = default;
};

struct TableDef {
  std::string name;
  std::string source;  // file that declared it
  std::string sql;     // CREATE TABLE statement
  std::vector<ColumnDef> columns;
  std::map<std::string, std::string> indexes;  // name -> CREATE INDEX sql
};

struct Schema {
  std::map<std::string, TableDef> tables;
  std::vector<std::string> dropped_indexes;  // DROP INDEX IF EXISTS names
};

// What apply() did, for logs.
struct SchemaChanges {
  std::vector<std::string> created_tables;
  std::vector<std::string> added_columns;  // "table.column"
  std::vector<std::string> created_indexes;
  std::vector<std::string> dropped_indexes;
  bool empty() const {
    return created_tables.empty() && added_columns.empty() && created_indexes.empty() &&
           dropped_indexes.empty();
  }
};

class SchemaManager {
 public:
  // Reads the files (folders: their *.sql files sorted by name), in path order.
  static Result<std::vector<SchemaSource>> read_paths(const std::vector<std::string>& paths);
  // Parses and validates; errors name the file (and table/column when known).
  static Result<Schema> parse(const std::vector<SchemaSource>& sources);

  explicit SchemaManager(CrrTables& tables) : tables_(tables) {}
  // Computes and applies the difference between |schema| and the live
  // database, atomically.
  Result<SchemaChanges> apply(const Schema& schema);

 private:
  CrrTables& tables_;
};

}  // namespace patina::crdt
