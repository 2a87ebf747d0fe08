#pragma once
// Per-table prepared statements of a replicated table, private to crdt/.
// Built by CrrTables when a table is loaded; used by change capture and Merger.

#include <vector>

#include "crdt/crr_tables.hpp"
#include "crdt/detail/sqlite.hpp"

namespace patina::crdt::detail {

struct TableState {
  TableInfo info;
  // Key lookaside (T__crsql_pks).
  Stmt select_key;  // (pk blob) -> key
  Stmt insert_key;  // (pk blob, pk values...); changes() == 0 when it exists
  Stmt insert_all_clocks;   // per non-pk (key, col, db_version, seq, ts): a new row's columns
  // Local writes.
  Stmt mark_created;        // (key, db_version, seq, ts)
  Stmt reinsert_sentinel;   // (db_version, seq, ts, key)
  Stmt mark_deleted;        // (key, db_version, seq, ts)
  Stmt drop_clocks;         // (key)
  Stmt update_clock;        // (db_version, seq, ts, key, col)
  Stmt insert_clock;        // (key, col, db_version, seq, ts)
  Stmt move_col;            // (new key, db_version, seq, ts, old key, col)
  // Merges.
  Stmt local_cl;            // (key) -> cl or NULL
  Stmt clock_get;           // (key, col) -> col_version, site ordinal
  Stmt set_winner;          // (key, col, col_version, db_version, seq, site, ts)
  Stmt zero_clocks;         // (key)
  Stmt merge_delete;        // (pk values...)
  Stmt merge_pk_only;       // (pk values...)
  Stmt row_exists;          // (pk values...)
  std::vector<Stmt> merge_col;  // per non-pk: (pk values..., val)
  std::vector<Stmt> col_value;  // per non-pk: (pk values...) -> val

  int non_pk_index(std::string_view col) const {
    for (std::size_t i = 0; i < info.non_pks.size(); ++i)
      if (info.non_pks[i] == col) return static_cast<int>(i);
    return -1;
  }
};

}  // namespace patina::crdt::detail
