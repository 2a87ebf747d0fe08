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
  std::string addr;      ///< "ip:port" the node is reached at.
  std::uint64_t ts = 0;  ///< NTP64 HLC time of identity creation.
  std::uint16_t cluster_id = 0;
  std::optional<std::uint16_t> member_id;  ///< Only peers with an equal member_id are kept.

  auto operator<=>(const Identity&) const = default;
  bool operator==(const Identity&) const = default;

  /// True when |this| replaces |other| at the same address (invariant 2).
  bool wins_addr_conflict(const Identity& other) const { return ts > other.ts; }
};

/// SWIM member state, per identity, as one node sees it.
///
///              probe (and ping_req) unanswered by the next probe tick,
///              or gossip "Suspect" with inc >= cur
///   +-------+ ----------------------------------------------> +---------+
///   | Alive |                                                  | Suspect |
///   +-------+ <---------------------------------------------- +---------+
///       |      gossip or header "Alive" with inc > cur (refuted)   |
///       |                                                          |
///       | gossip "Down", inc >= cur (a leave,                      | suspect_to_down_after(n)
///       | or another node's verdict)                               | without refutation
///       v                                                          v
///   +------------------------------------------------------------------+
///   | Down: terminal for this identity; forgotten after remove_down_after |
///   +------------------------------------------------------------------+
///
/// Transitions and the functions that make them (membership.cpp):
///   Alive → Suspect    handle_probe_tick (our probe failed), apply_update
///   Suspect → Alive    apply_update (a higher incarnation: the refutation)
///   Suspect → Down     handle_timer(ChangeSuspectToDown), apply_update
///   Alive → Down       apply_update (gossip "Down", e.g. a graceful leave)
///   any → replaced     replace_identity (same addr, larger ts)
///
/// Guarantees: Alive — answered recently or vouched for; probed in turn.
/// Suspect — still active and probed (out of turn, carrying the suspicion),
/// has suspect_to_down_after(n) to refute. Down — never probed or gossiped to,
/// never resurrected (invariant 3); only a newer identity replaces it.
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
