#pragma once
// Table digests: a fingerprint of every replicated table's contents, so two
// nodes can be compared (`patina sync digest`, convergence tests, the
// simulator). Only user-visible rows count — not clocks, sites or
// bookkeeping — so converged nodes agree whatever path their changes took.
//
// Rows are read in primary-key order and each cell is hashed with its type
// tag (1 and 1.0 and '1' differ), with 64-bit FNV-1a twice over
// (two offsets) for a 128-bit value: a comparison, not a security, hash.
// Works on any connection, read-only included.

#include <cstdint>
#include <string>
#include <vector>

#include "crdt/error.hpp"

struct sqlite3;

namespace patina::crdt {

struct TableDigest {
  std::string table;
  std::int64_t rows = 0;
  std::string hash;  // 32 hex digits
  bool operator==(const TableDigest&) const = default;
};

// Every replicated table (from __patina_crrs), sorted by name.
Result<std::vector<TableDigest>> digest_tables(sqlite3* db);

}  // namespace patina::crdt
