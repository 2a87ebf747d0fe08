#pragma once
// Change capture internals, shared by CrrTables (registration, backfill) and
// Merger (key lookaside). See change_capture.cpp.

#include <functional>
#include <span>
#include <utility>

#include "crdt/crr_tables.hpp"
#include "crdt/detail/table_state.hpp"

namespace patina::crdt::detail {

// Binds the pk values of the row at parameters first, first+1, ... of stmt.
using PkBinder = std::function<void(sqlite3_stmt* stmt, int first)>;

// Registers patina_crr_insert/update/delete, the functions the triggers call.
Result<void> register_capture_functions(sqlite3* db, CrrTables* tables);

// The row's lookaside key; second is true when it already existed.
Result<std::pair<std::int64_t, bool>> get_or_create_key(sqlite3* db, TableState& st,
                                                        const Bytes& packed,
                                                        const PkBinder& bind_pks);

// Records an insert of the row with these pk values as a local write (backfill).
Result<void> record_local_insert(CrrTables& t, TableState& st, std::span<const Value> pks);

}  // namespace patina::crdt::detail
