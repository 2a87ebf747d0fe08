// swim/types.hpp — vocabulary shared by every part of the SWIM core.
//
// The core never reads a clock: every entry point receives an |Instant| that
// the driver took from its own monotonic clock (or the simulator's virtual
// one). |Instant| is a time_point over a tag clock that has no now(), so code
// in swim/ cannot call one by accident.
//
// Invariants:
//  (1) An Identity is immutable once created; a node that restarts or rejoins
//      gets a *new* Identity (same id and addr, larger ts).
//  (2) Two identities with the same addr conflict; the larger ts wins
//      (Identity::wins_addr_conflict). Equal ts never wins, so a conflict
//      never flaps.
//  (3) MemberState Down is terminal for an Identity: nothing turns a Down
//      identity back into Alive or Suspect. Only a newer Identity can.
#pragma once

#include <array>
#include <chrono>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace patina::swim {

/// Tag clock for |Instant|. It deliberately has no now().
struct MonotonicTag {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<MonotonicTag, duration>;
  static constexpr bool is_steady = true;
};

using Duration = std::chrono::nanoseconds;
using Instant = MonotonicTag::time_point;
using Bytes = std::vector<std::byte>;

/// 16-byte actor id (a UUID in Corrosion).
using ActorId = std::array<std::uint8_t, 16>;

/// Who a node is, as seen by the cluster (SPEC §5.2 `Actor`).
struct Identity {
  ActorId id{};
  std::string addr;                       ///< "ip:port" the node is reached at.
  std::uint64_t ts = 0;                   ///< NTP64 HLC time of identity creation.
  std::uint16_t cluster_id = 0;
  std::optional<std::uint16_t> member_id; ///< Only peers with an equal member_id are kept.

  auto operator<=>(const Identity&) const = default;
  bool operator==(const Identity&) const = default;

  /// True when |this| replaces |other| at the same address (invariant 2).
  bool wins_addr_conflict(const Identity& other) const { return ts > other.ts; }
};

/// SWIM member state.
///
///     (update: alive, inc > cur)          probe + ping-req unanswered
///        +-------+     ------------------------------>     +---------+
///  ----> | Alive |                                          | Suspect |
///        +-------+     <------------------------------     +---------+
///            |          refuted: alive with inc > cur           |
///            |                                                  | suspect_to_down_after
///            | left / declared down                             v  (handle_timer)
///            +---------------------------------------------> +------+
///                                                             | Down | (terminal, removed
///                                                             +------+  after remove_down_after)
///
/// Alive: the member answered recently or someone vouched for it.
/// Suspect: someone failed to reach it; it is still probed and still counts as
///   active, and has suspect_to_down_after to refute.
/// Down: never probed, never gossiped to, never resurrected (invariant 3).
enum class MemberState : std::uint8_t { alive = 0, suspect = 1, down = 2 };

const char* to_string(MemberState s);

/// One piece of membership news: the unit of dissemination and of snapshots.
struct MemberUpdate {
  Identity id;
  std::uint64_t incarnation = 0;
  MemberState state = MemberState::alive;

  bool operator==(const MemberUpdate&) const = default;
};

}  // namespace patina::swim
