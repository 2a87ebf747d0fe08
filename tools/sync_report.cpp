#include "tools/sync_report.hpp"

#include <fmt/format.h>

#include <boost/json/array.hpp>

namespace patina::tools {

namespace json = boost::json;

std::string uuid_of(const std::array<std::uint8_t, 16>& id) {
  std::string h;
  for (auto b : id) h += fmt::format("{:02x}", b);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

namespace {

json::array ranges_json(const crdt::RangeSet& set) {
  json::array out;
  for (const auto& r : set.ranges()) out.push_back(json::object{{"start", r.start}, {"end", r.end}});
  return out;
}

}  // namespace

json::object sync_state_json(const crdt::SyncState& state) {
  json::object heads, need, partial;
  for (const auto& [actor, head] : state.heads) heads[uuid_of(actor)] = head;
  for (const auto& [actor, gaps] : state.need) need[uuid_of(actor)] = ranges_json(gaps);
  for (const auto& [actor, versions] : state.partial_need) {
    json::object per_version;
    for (const auto& [v, seqs] : versions) per_version[std::to_string(v)] = ranges_json(seqs);
    partial[uuid_of(actor)] = std::move(per_version);
  }
  json::object out;
  out["actor_id"] = uuid_of(state.actor);
  out["heads"] = std::move(heads);
  out["need"] = std::move(need);
  out["partial_need"] = std::move(partial);
  out["last_cleared_ts"] = nullptr;
  return out;
}

json::object digest_json(const std::string& actor_id, const std::vector<crdt::TableDigest>& tables) {
  json::object per_table;
  std::string all;
  for (const auto& t : tables) {
    per_table[t.table] = json::object{{"rows", t.rows}, {"hash", t.hash}};
    all += fmt::format("{}:{}:{};", t.table, t.rows, t.hash);
  }
  // The overall digest: FNV-1a over the per-table lines (order is by name).
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : all) h = (h ^ c) * 0x100000001b3ULL;
  json::object out;
  out["actor_id"] = actor_id;
  out["tables"] = std::move(per_table);
  out["digest"] = fmt::format("{:016x}", h);
  return out;
}

}  // namespace patina::tools
