#include "crdt/change.hpp"

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

}  // namespace patina::crdt
