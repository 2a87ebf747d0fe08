#pragma once
// The materialized result of one subscription and the diff that turns a
// re-evaluation into change events (SPEC.md §6 "Diffing").
//
// Each result row has an identity — in incremental mode the pks of every
// table instance that produced it, in full mode its cells plus an
// occurrence number — and a rowid that stays the row's for the life of the
// subscription. A re-evaluation yields the new rows for some identities;
// comparing them with the stored rows gives insert, update and delete
// events, numbered by contiguous change ids.
//
// Not thread-safe: one job at a time (the subscription's loop serializes
// them on the matcher pool).

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "api/sub_plan.hpp"
#include "core/result.hpp"
#include "core/sqlite.hpp"
#include "crdt/value.hpp"

namespace patina::api {

struct SubChange {
  enum Type { insert = 0, update = 1, remove = 2 } type;
  std::int64_t rowid;
  std::string cells;  // JSON array text
  std::int64_t change_id;

  // {"change":["insert",rowid,[cells],change_id]}
  std::string event() const;
};

// A packed pk per changed row, by table (as crdt reports them).
using ChangedRows = std::map<std::string, std::vector<std::vector<std::uint8_t>>>;

class SubState {
 public:
  explicit SubState(SubPlan plan) : plan_(std::move(plan)) {}

  const SubPlan& plan() const { return plan_; }

  // Runs the query and stores its rows (rowids in query order).
  Result<void> initialize(core::Db& db);
  // Re-evaluates the rows |changed| can affect and returns the events.
  Result<std::vector<SubChange>> match(core::Db& db, const ChangedRows& changed);
  // Re-runs the whole query and diffs it with the stored rows.
  Result<std::vector<SubChange>> refresh(core::Db& db);

  // Every row as a {"row":[rowid,[cells]]} line, by rowid.
  std::vector<std::string> snapshot() const;
  std::size_t size() const { return rows_.size(); }
  std::int64_t last_change_id() const { return last_change_id_; }

  // Persistence in a SQLite file of its own: the rows, the counters, the
  // caller's meta and the retained change events. save() writes a new file
  // and renames it over |path|, so a crash leaves the old one or none.
  struct Saved {
    std::map<std::string, std::string> meta;
    std::vector<std::pair<std::int64_t, std::string>> log;  // change id, event line
  };
  Result<void> save(const std::string& path, const Saved& saved) const;
  // Loads rows saved for the same plan.
  Result<Saved> load(const std::string& path);

 private:
  struct Row {
    std::int64_t rowid;
    std::string cells;
  };
  using NewRows = std::vector<std::pair<std::string, std::string>>;  // identity, cells

  Result<void> read_rows(core::Stmt& stmt, NewRows& out) const;
  // Applies |fresh| for the identities in |old| (plus any new ones).
  std::vector<SubChange> diff(const std::vector<std::string>& old, NewRows& fresh);
  void insert_row(const std::string& identity, Row row);
  void erase_row(const std::string& identity);
  Result<void> run_restricted(core::Db& db, std::size_t instance,
                              const std::map<std::string, std::vector<core::SqlValue>>& keys,
                              const std::function<void(core::Stmt&)>& on_row) const;

  SubPlan plan_;
  std::unordered_map<std::string, Row> rows_;
  // Incremental joins: root key -> identities, and for every other
  // instance its key -> root key -> count of rows.
  std::unordered_map<std::string, std::unordered_set<std::string>> by_root_;
  std::vector<std::unordered_map<std::string, std::unordered_map<std::string, int>>> by_instance_;
  std::int64_t next_rowid_ = 1;
  std::int64_t last_change_id_ = 0;
};

// A crdt value (an unpacked pk) as SQLite binds it.
core::SqlValue to_sql_value(const crdt::Value& v);

// Canonical bytes of pk values (used as keys), and back.
std::string encode_key(const std::vector<core::SqlValue>& values);
std::vector<core::SqlValue> decode_key(std::string_view key);

}  // namespace patina::api
