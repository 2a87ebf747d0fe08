#pragma once
// JSON renderings for the admin socket's Sync commands: the node's sync
// state in Corrosion's SyncStateV1 shape (`patina sync generate`) and the
// table digests (`patina sync digest`).

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <boost/json/object.hpp>

#include "crdt/digest.hpp"
#include "crdt/sync_needs.hpp"

namespace patina::tools {

// 16 bytes as a hyphenated lowercase UUID.
std::string uuid_of(const std::array<std::uint8_t, 16>& id);

// {"actor_id", "heads": {actor: v}, "need": {actor: [{"start","end"}]},
//  "partial_need": {actor: {v: [{"start","end"}]}}, "last_cleared_ts": null}
boost::json::object sync_state_json(const crdt::SyncState& state);

// {"actor_id", "tables": {name: {"rows": n, "hash": "..."}}, "digest": "..."}
// where "digest" covers every table, for a one-glance comparison.
boost::json::object digest_json(const std::string& actor_id, const std::vector<crdt::TableDigest>& tables);

}  // namespace patina::tools
