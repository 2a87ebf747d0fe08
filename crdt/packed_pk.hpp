#pragma once
// Packed primary keys in cr-sqlite's format (FACTS.md §2, SPEC.md §4.4).
//
// A packed pk is one byte holding the number of columns, then per column a
// type byte `(n << 3) | type` (type 1 INTEGER, 2 REAL, 3 TEXT, 4 BLOB, 5 NULL)
// and a payload:
//   INTEGER  n big-endian bytes; a non-negative value uses the fewest bytes
//            that hold it unsigned (0 takes none), a negative one always 8.
//   REAL     n = 0, then the 8-byte big-endian IEEE-754 double.
//   TEXT/BLOB n bytes of big-endian length (none when empty), then the bytes.
//   NULL     no payload.
// Columns are in PRIMARY KEY order, and the values are the stored ones (after
// affinity), so a pk packs to the same bytes on every node: the blob is the
// row's identity on the wire and in crsql_changes.
//
// Invariant: unpack(pack(v)) == v for every Value (type included), and
// unpack rejects any blob pack could not have produced a prefix of (truncated
// payloads, unknown types, trailing bytes).

#include <cstdint>
#include <span>

#include "crdt/error.hpp"
#include "crdt/value.hpp"

struct sqlite3_value;

namespace patina::crdt {

class PackedPk {
 public:
  static constexpr std::size_t max_columns = 255;

  // Packs |values| (at most 255) in order.
  static Bytes pack(std::span<const Value> values);
  // Packs |n| sqlite3_values (the trigger arguments) without copying them.
  static Bytes pack(sqlite3_value** values, int n);
  // Decodes a packed pk; fails on anything malformed.
  static Result<std::vector<Value>> unpack(std::span<const std::uint8_t> packed);
};

}  // namespace patina::crdt
