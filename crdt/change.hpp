#pragma once
// One row of crsql_changes: the unit that replicates.
//
// A change says "cell (table, pk, cid) has value val at col_version, written
// by site_id in its db_version at position seq, while the row's causal length
// was cl". cid "-1" is the row sentinel (create/delete/resurrect) and its val
// is always NULL; an odd cl means the row is alive, an even cl deleted.
// (site_id, db_version) is the originator's and never rewritten by a merge.

#include <array>
#include <cstdint>
#include <string>

#include "crdt/value.hpp"

struct sqlite3_stmt;

namespace patina::crdt {

using SiteId = std::array<std::uint8_t, 16>;

inline constexpr std::string_view sentinel_cid = "-1";

struct Change {
  std::string table;
  Bytes pk;  // packed, see packed_pk.hpp
  std::string cid;
  Value val;
  std::int64_t col_version = 0;
  std::int64_t db_version = 0;
  SiteId site_id{};
  std::int64_t cl = 0;
  std::int64_t seq = 0;
  std::uint64_t ts = 0;  // HLC timestamp of the writing transaction (0 when unset)

  bool operator==(const Change&) const = default;
};

std::string to_hex(const SiteId& id);
bool site_id_from_hex(std::string_view hex, SiteId& out);
// Debug rendering of a change, one line.
std::string to_string(const Change& c);
// Reads a change from columns 0..9 of the current row of |s|, in
// crsql_changes order: "table", pk, cid, val, col_version, db_version,
// site_id, cl, seq, ts (ts as decimal text). NULL text reads as empty.
Change change_from_row(sqlite3_stmt* s);
// Rough encoded size, for chunking changesets by bytes.
std::size_t estimated_size(const Change& c);

}  // namespace patina::crdt
