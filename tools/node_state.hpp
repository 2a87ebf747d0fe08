#pragma once
// What the agent keeps about itself besides replicated data, in the main
// database (Corrosion's __corro_state and __corro_members):
//   __patina_state(key, value)        cluster_id, set by `cluster set-id`
//   __patina_members(actor_id, address, state)
//       SWIM member states (swim/codec.hpp snapshot encoding, one member per
//       row), saved every minute and at shutdown, fed back at start so a
//       restarted node rejoins at once without waiting for bootstrap.
// Writer thread only (inside writer jobs).

#include <cstdint>
#include <vector>

#include "core/result.hpp"
#include "core/sqlite.hpp"
#include "swim/types.hpp"

namespace patina::tools {

class NodeState {
 public:
  static Result<void> create_tables(core::Db& db);
  static Result<std::uint16_t> cluster_id(core::Db& db);
  static Result<void> set_cluster_id(core::Db& db, std::uint16_t id);
  // Replaces every saved member with |members|.
  static Result<void> save_members(core::Db& db, const std::vector<swim::MemberUpdate>& members);
  // Saved members; rows that no longer decode are skipped.
  static Result<std::vector<swim::MemberUpdate>> load_members(core::Db& db);
};

}  // namespace patina::tools
