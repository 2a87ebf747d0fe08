#include "crdt/value.hpp"

#include <sqlite3.h>

#include <cstdio>
#include <cstring>
#include <string_view>

namespace patina::crdt {

int type_code(const Value& v) {
  switch (v.index()) {
    case 0: return SQLITE_NULL;
    case 1: return SQLITE_INTEGER;
    case 2: return SQLITE_FLOAT;
    case 3: return SQLITE_TEXT;
    default: return SQLITE_BLOB;
  }
}

namespace {

int compare_bytes(const void* a, std::size_t na, const void* b, std::size_t nb) {
  std::size_t n = na < nb ? na : nb;
  int c = n == 0 ? 0 : std::memcmp(a, b, n);
  if (c != 0) return c < 0 ? -1 : 1;
  if (na == nb) return 0;
  return na < nb ? -1 : 1;
}

// Different storage classes: the lower SQLite type code is the greater value.
int compare_types(int ta, int tb) { return ta < tb ? 1 : -1; }

}  // namespace

int compare_values(const Value& a, const Value& b) {
  int ta = type_code(a), tb = type_code(b);
  if (ta != tb) return compare_types(ta, tb);
  switch (ta) {
    case SQLITE_INTEGER: {
      auto x = std::get<std::int64_t>(a), y = std::get<std::int64_t>(b);
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    case SQLITE_FLOAT: {
      auto x = std::get<double>(a), y = std::get<double>(b);
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    case SQLITE_TEXT: {
      const auto& x = std::get<std::string>(a);
      const auto& y = std::get<std::string>(b);
      return compare_bytes(x.data(), x.size(), y.data(), y.size());
    }
    case SQLITE_BLOB: {
      const auto& x = std::get<Bytes>(a);
      const auto& y = std::get<Bytes>(b);
      return compare_bytes(x.data(), x.size(), y.data(), y.size());
    }
    default: return 0;
  }
}

int compare_values(sqlite3_value* a, sqlite3_value* b) {
  int ta = sqlite3_value_type(a), tb = sqlite3_value_type(b);
  if (ta != tb) return compare_types(ta, tb);
  switch (ta) {
    case SQLITE_INTEGER: {
      auto x = sqlite3_value_int64(a), y = sqlite3_value_int64(b);
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    case SQLITE_FLOAT: {
      auto x = sqlite3_value_double(a), y = sqlite3_value_double(b);
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    case SQLITE_TEXT: {
      const void* pa = sqlite3_value_text(a);
      std::size_t na = static_cast<std::size_t>(sqlite3_value_bytes(a));
      const void* pb = sqlite3_value_text(b);
      std::size_t nb = static_cast<std::size_t>(sqlite3_value_bytes(b));
      return compare_bytes(pa, na, pb, nb);
    }
    case SQLITE_BLOB: {
      const void* pa = sqlite3_value_blob(a);
      std::size_t na = static_cast<std::size_t>(sqlite3_value_bytes(a));
      const void* pb = sqlite3_value_blob(b);
      std::size_t nb = static_cast<std::size_t>(sqlite3_value_bytes(b));
      return compare_bytes(pa, na, pb, nb);
    }
    default: return 0;
  }
}

Value value_from_sqlite(sqlite3_value* v) {
  switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER: return Value{static_cast<std::int64_t>(sqlite3_value_int64(v))};
    case SQLITE_FLOAT: return Value{sqlite3_value_double(v)};
    case SQLITE_TEXT: {
      const char* p = reinterpret_cast<const char*>(sqlite3_value_text(v));
      return Value{std::string(p, static_cast<std::size_t>(sqlite3_value_bytes(v)))};
    }
    case SQLITE_BLOB: {
      const auto* p = static_cast<const std::uint8_t*>(sqlite3_value_blob(v));
      auto n = static_cast<std::size_t>(sqlite3_value_bytes(v));
      return Value{n == 0 ? Bytes{} : Bytes(p, p + n)};
    }
    default: return Value{};
  }
}

Value column_value(sqlite3_stmt* stmt, int col) {
  switch (sqlite3_column_type(stmt, col)) {
    case SQLITE_INTEGER: return Value{static_cast<std::int64_t>(sqlite3_column_int64(stmt, col))};
    case SQLITE_FLOAT: return Value{sqlite3_column_double(stmt, col)};
    case SQLITE_TEXT: {
      const char* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, col));
      return Value{std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt, col)))};
    }
    case SQLITE_BLOB: {
      const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt, col));
      auto n = static_cast<std::size_t>(sqlite3_column_bytes(stmt, col));
      return Value{n == 0 ? Bytes{} : Bytes(p, p + n)};
    }
    default: return Value{};
  }
}

int bind_value(sqlite3_stmt* stmt, int index, const Value& v) {
  switch (v.index()) {
    case 0: return sqlite3_bind_null(stmt, index);
    case 1: return sqlite3_bind_int64(stmt, index, std::get<std::int64_t>(v));
    case 2: return sqlite3_bind_double(stmt, index, std::get<double>(v));
    case 3: {
      const auto& s = std::get<std::string>(v);
      return sqlite3_bind_text64(stmt, index, s.data(), s.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    }
    default: {
      const auto& b = std::get<Bytes>(v);
      // A zero-length blob must stay a blob, not become NULL: pass a valid pointer.
      static const std::uint8_t empty = 0;
      return sqlite3_bind_blob64(stmt, index, b.empty() ? &empty : b.data(), b.size(),
                                 SQLITE_TRANSIENT);
    }
  }
}

std::string to_hex(const std::uint8_t* data, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(digits[data[i] >> 4]);
    out.push_back(digits[data[i] & 0xF]);
  }
  return out;
}

bool from_hex(std::string_view hex, Bytes& out) {
  if (hex.size() % 2 != 0) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out.clear();
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<std::uint8_t>(hi << 4 | lo));
  }
  return true;
}

std::string to_string(const Value& v) {
  switch (v.index()) {
    case 0: return "NULL";
    case 1: return std::to_string(std::get<std::int64_t>(v));
    case 2: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g", std::get<double>(v));
      return std::string(buf) + "(real)";
    }
    case 3: return "'" + std::get<std::string>(v) + "'";
    default: return "x'" + to_hex(std::get<Bytes>(v)) + "'";
  }
}

}  // namespace patina::crdt
