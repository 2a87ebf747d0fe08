#pragma once
// SQLite values as plain C++ data, and cr-sqlite's total order over them.
//
// A Value is exactly one of NULL, INTEGER, REAL, TEXT or BLOB; TEXT and BLOB
// stay distinct (std::string vs Bytes) so a round trip never changes a type.
//
// Invariant of compare_values (FACTS.md §6-9, rule 3): values of different
// storage classes order by SQLite type code, the LOWER code being the GREATER
// value, so NULL < BLOB < TEXT < REAL < INTEGER; within a class integers and
// reals compare numerically and text/blob bytewise (shorter first on a common
// prefix). Merges use it to break ties, local writes use "!= 0" to detect a
// change, so it must be type-sensitive: 1 and 1.0 differ.

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

struct sqlite3_value;
struct sqlite3_stmt;

namespace patina::crdt {

using Bytes = std::vector<std::uint8_t>;
using Null = std::monostate;
using Value = std::variant<Null, std::int64_t, double, std::string, Bytes>;

// SQLite's type code for the value (SQLITE_INTEGER=1 ... SQLITE_NULL=5).
int type_code(const Value& v);

// <0, 0, >0 as a is less than, equal to, or greater than b in cr-sqlite order.
int compare_values(const Value& a, const Value& b);
int compare_values(sqlite3_value* a, sqlite3_value* b);

Value value_from_sqlite(sqlite3_value* v);
Value column_value(sqlite3_stmt* stmt, int col);
// Binds |v| at 1-based |index|; returns the SQLite result code.
int bind_value(sqlite3_stmt* stmt, int index, const Value& v);

// Debug rendering, e.g. NULL, 42, 1.5, 'text', x'00ff'.
std::string to_string(const Value& v);

std::string to_hex(const std::uint8_t* data, std::size_t n);
inline std::string to_hex(const Bytes& b) { return to_hex(b.data(), b.size()); }
// Lowercase or uppercase hex; returns false on odd length or a non-hex digit.
bool from_hex(std::string_view hex, Bytes& out);

}  // namespace patina::crdt
