#include "crdt/change.hpp"

#include <sqlite3.h>

#include <cstdlib>
#include <cstring>

namespace patina::crdt {

std::string to_hex(const SiteId& id) { return to_hex(id.data(), id.size()); }

bool site_id_from_hex(std::string_view hex, SiteId& out) {
  Bytes b;
  if (!from_hex(hex, b) || b.size() != out.size()) return false;
  std::copy(b.begin(), b.end(), out.begin());
  return true;
}

std::string to_string(const Change& c) {
  return c.table + " pk=" + to_hex(c.pk) + " cid=" + c.cid + " val=" + to_string(c.val) +
         " cv=" + std::to_string(c.col_version) + " db=" + std::to_string(c.db_version) +
         " site=" + to_hex(c.site_id) + " cl=" + std::to_string(c.cl) +
         " seq=" + std::to_string(c.seq);
}

std::size_t estimated_size(const Change& c) {
  std::size_t n = c.table.size() + c.pk.size() + c.cid.size() + 16 + 5 * 8 + 8;
  switch (c.val.index()) {
    case 3: n += std::get<std::string>(c.val).size(); break;
    case 4: n += std::get<Bytes>(c.val).size(); break;
    default: n += 9; break;
  }
  return n;
}

namespace {

std::string text_column(sqlite3_stmt* s, int col) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, col));
  return p != nullptr ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, col))) : std::string();
}

}  // namespace

Change change_from_row(sqlite3_stmt* s) {
  Change c;
  c.table = text_column(s, 0);
  auto pk = column_value(s, 1);
  if (auto* b = std::get_if<Bytes>(&pk)) c.pk = std::move(*b);
  c.cid = text_column(s, 2);
  c.val = column_value(s, 3);
  c.col_version = sqlite3_column_int64(s, 4);
  c.db_version = sqlite3_column_int64(s, 5);
  if (sqlite3_column_bytes(s, 6) == 16) std::memcpy(c.site_id.data(), sqlite3_column_blob(s, 6), 16);
  c.cl = sqlite3_column_int64(s, 7);
  c.seq = sqlite3_column_int64(s, 8);
  c.ts = std::strtoull(text_column(s, 9).c_str(), nullptr, 10);
  return c;
}

}  // namespace patina::crdt
