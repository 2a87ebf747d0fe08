#include "crdt/digest.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cstring>

#include "crdt/detail/sqlite.hpp"

namespace patina::crdt {

using detail::prepare;
using detail::quote_ident;

namespace {

// Two independent FNV-1a 64 streams (different offset bases) make 128 bits.
class Fnv128 {
 public:
  void add(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i) {
      a_ = (a_ ^ p[i]) * prime;
      b_ = (b_ ^ p[i]) * prime;
    }
  }
  void add_u64(std::uint64_t v) {
    unsigned char bytes[8];
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(v >> (8 * i));
    add(bytes, 8);
  }
  void add_tag(unsigned char tag) { add(&tag, 1); }
  std::string hex() const {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (std::uint64_t v : {a_, b_}) {
      for (int i = 15; i >= 0; --i) out += digits[(v >> (4 * i)) & 0xF];
    }
    return out;
  }

 private:
  static constexpr std::uint64_t prime = 0x100000001b3ULL;
  std::uint64_t a_ = 0xcbf29ce484222325ULL;
  std::uint64_t b_ = 0x84222325cbf29ce4ULL;
};

Result<std::vector<std::string>> replicated_tables(sqlite3* db) {
  std::vector<std::string> out;
  auto st = prepare(db, "SELECT name FROM __patina_crrs ORDER BY name", false);
  if (!st) return tl::unexpected(st.error());
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0)));
  }
  if (rc != SQLITE_DONE) return detail::sqlite_error(db, "list replicated tables", rc);
  return out;
}

// The primary-key columns of |table| in key order: the digest's row order.
Result<std::vector<std::string>> pk_columns(sqlite3* db, const std::string& table) {
  auto st = prepare(db, "SELECT name, pk FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", false);
  if (!st) return tl::unexpected(st.error());
  detail::bind_text(st->get(), 1, table);
  std::vector<std::string> out;
  while (sqlite3_step(st->get()) == SQLITE_ROW) {
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0)));
  }
  if (out.empty()) return make_error(ErrorCode::schema, "table " + table + " has no primary key");
  return out;
}

Result<TableDigest> digest_table(sqlite3* db, const std::string& table) {
  auto pks = pk_columns(db, table);
  if (!pks) return tl::unexpected(pks.error());
  std::string order;
  for (const auto& c : *pks) order += (order.empty() ? "" : ", ") + quote_ident(c);
  auto st = prepare(db, "SELECT * FROM " + quote_ident(table) + " ORDER BY " + order, false);
  if (!st) return tl::unexpected(st.error());
  sqlite3_stmt* s = st->get();
  TableDigest out;
  out.table = table;
  Fnv128 h;
  const int n = sqlite3_column_count(s);
  for (int i = 0; i < n; ++i) {
    const char* name = sqlite3_column_name(s, i);
    h.add(name, std::strlen(name) + 1);
  }
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    ++out.rows;
    h.add_tag(0xFF);  // row boundary
    for (int i = 0; i < n; ++i) {
      int type = sqlite3_column_type(s, i);
      h.add_tag(static_cast<unsigned char>(type));
      switch (type) {
        case SQLITE_INTEGER: h.add_u64(static_cast<std::uint64_t>(sqlite3_column_int64(s, i))); break;
        case SQLITE_FLOAT: {
          double d = sqlite3_column_double(s, i);
          std::uint64_t bits;
          std::memcpy(&bits, &d, sizeof bits);
          h.add_u64(bits);
          break;
        }
        case SQLITE_TEXT:
        case SQLITE_BLOB: {
          const void* p = type == SQLITE_TEXT ? static_cast<const void*>(sqlite3_column_text(s, i))
                                              : sqlite3_column_blob(s, i);
          auto len = static_cast<std::size_t>(sqlite3_column_bytes(s, i));
          h.add_u64(len);
          if (len > 0) h.add(p, len);
          break;
        }
        default: break;  // NULL: the tag says it all
      }
    }
  }
  if (rc != SQLITE_DONE) return detail::sqlite_error(db, "digest " + table, rc);
  out.hash = h.hex();
  return out;
}

}  // namespace

Result<std::vector<TableDigest>> digest_tables(sqlite3* db) {
  auto names = replicated_tables(db);
  if (!names) return tl::unexpected(names.error());
  std::vector<TableDigest> out;
  for (const auto& t : *names) {
    auto d = digest_table(db, t);
    if (!d) return tl::unexpected(d.error());
    out.push_back(std::move(*d));
  }
  return out;
}

}  // namespace patina::crdt
