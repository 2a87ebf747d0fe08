#include "tools/node_state.hpp"

#include <cstring>
#include <span>

#include "swim/codec.hpp"
#include "tools/sync_report.hpp"

namespace patina::tools {

Result<void> NodeState::create_tables(core::Db& db) {
  return db.exec(
      "CREATE TABLE IF NOT EXISTS __patina_state (key TEXT NOT NULL PRIMARY KEY, value ANY);"
      "CREATE TABLE IF NOT EXISTS __patina_members (actor_id TEXT NOT NULL PRIMARY KEY, address TEXT NOT NULL, "
      "state BLOB NOT NULL)");
}

Result<std::uint16_t> NodeState::cluster_id(core::Db& db) {
  auto v = db.query_value("SELECT value FROM __patina_state WHERE key = 'cluster_id'");
  if (!v) return tl::unexpected(v.error());
  if (!*v) return std::uint16_t{0};
  const auto* n = std::get_if<std::int64_t>(&**v);
  if (n == nullptr || *n < 0 || *n > 65535) {
    return make_error(Errc::invalid_argument, "__patina_state.cluster_id is not a number in 0..65535");
  }
  return static_cast<std::uint16_t>(*n);
}

Result<void> NodeState::set_cluster_id(core::Db& db, std::uint16_t id) {
  auto st = db.prepare("INSERT INTO __patina_state (key, value) VALUES ('cluster_id', ?) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  if (!st) return tl::unexpected(st.error());
  if (auto r = st->bind(1, std::int64_t{id}); !r) return r;
  return st->run();
}

Result<void> NodeState::save_members(core::Db& db, const std::vector<swim::MemberUpdate>& members) {
  if (auto r = db.exec("DELETE FROM __patina_members"); !r) return r;
  auto st = db.prepare("INSERT OR REPLACE INTO __patina_members (actor_id, address, state) VALUES (?, ?, ?)");
  if (!st) return tl::unexpected(st.error());
  for (const auto& m : members) {
    auto bytes = swim::encode_snapshot(std::span<const swim::MemberUpdate>(&m, 1));
    core::Blob blob;
    blob.bytes.resize(bytes.size());
    std::memcpy(blob.bytes.data(), bytes.data(), bytes.size());
    st->reset();  // SQLite refuses to bind a statement stepped since its last reset
    if (auto r = st->bind(1, uuid_of(m.id.id)); !r) return r;
    if (auto r = st->bind(2, m.id.addr); !r) return r;
    if (auto r = st->bind(3, std::move(blob)); !r) return r;
    if (auto r = st->run(); !r) return r;
  }
  return {};
}

Result<std::vector<swim::MemberUpdate>> NodeState::load_members(core::Db& db) {
  auto st = db.prepare("SELECT state FROM __patina_members ORDER BY actor_id");
  if (!st) return tl::unexpected(st.error());
  std::vector<swim::MemberUpdate> out;
  for (;;) {
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    auto v = st->column(0);
    const auto* blob = std::get_if<core::Blob>(&v);
    if (blob == nullptr) continue;
    std::vector<std::byte> bytes(blob->bytes.size());
    std::memcpy(bytes.data(), blob->bytes.data(), blob->bytes.size());
    auto decoded = swim::decode_snapshot(bytes);
    if (!decoded) continue;
    for (auto& m : *decoded) out.push_back(std::move(m));
  }
  return out;
}

}  // namespace patina::tools
