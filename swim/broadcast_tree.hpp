// swim/broadcast_tree.hpp — the "tree" broadcast: who forwards a payload to
// whom so that every member receives it once.
//
// The epidemic rounds of dissemination.hpp deliver each payload to a member
// several times (bench/cluster_bench at 32 nodes: ~7 receptions per member
// and change, 30x the payload in bytes). Here every member sits at a position
// on a 16-bit ring (a hash of its address, the same on every node), and a
// payload travels with the ring range its receiver is responsible for:
//  - the origin owns the whole ring; it splits the members of its range
//    (itself and the sender left out) into at most fanout(n) groups of
//    consecutive positions and sends to one member of each group — the
//    nearest by RTT ring, the first in ring order on ties — together with
//    that group's range;
//  - a receiver does the same with the range it was given; a range holding
//    no other member ends the walk.
// Ranges only shrink, so a walk ends whatever the members' views are (two
// hops when they agree: see fanout()). Views that differ
// (a member not known yet, or already gone) cost a missed member or a
// duplicate, which anti-entropy sync repairs; a send that fails is re-planned
// to another member of the same range (next_head).
//
// Invariants:
//  (1) The groups of one plan are disjoint, inside the given range, and
//      together hold every candidate; members at one position share a group.
//  (2) Each head lies in its own group's range.
//  (3) Choices depend only on the inputs (no randomness, no clock).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "swim/dissemination.hpp"

namespace patina::swim {

/// Inclusive range of ring positions; first > last means empty.
struct TreeRange {
  std::uint16_t first = 1;
  std::uint16_t last = 0;

  static constexpr TreeRange whole() { return TreeRange{0, 0xffff}; }
  bool empty() const { return first > last; }
  bool contains(std::uint16_t pos) const { return !empty() && pos >= first && pos <= last; }
  bool operator==(const TreeRange&) const = default;
};

struct TreeSend {
  std::string to;
  TreeRange range;  ///< what |to| forwards to (itself excluded)
};

class BroadcastTree {
 public:
  /// A member's ring position: FNV-1a of its gossip address, folded to 16 bits.
  static std::uint16_t position(std::string_view addr);

  /// Groups per hop in a cluster of |members| (this node's view, itself
  /// excluded): max(6, ceil(sqrt(members + 1))). A group then holds at most
  /// fanout members, so its head reaches the rest directly: two hops cover
  /// the cluster when the views agree, and no member receives twice.
  static std::size_t fanout(std::size_t members);

  /// The sends for a payload whose receiver (this node) owns |range|:
  /// one per group of the active |peers| inside it, |exclude| left out (the
  /// sender; this node is not among |peers|).
  static std::vector<TreeSend> plan(std::span<const Peer> peers, TreeRange range,
                                    std::span<const std::string> exclude = {});

  /// After a send to a group's head failed: another member of |range|
  /// (none of |failed|) to take the group over, nearest first.
  static std::optional<std::string> next_head(std::span<const Peer> peers, TreeRange range,
                                              std::span<const std::string> failed);
};

}  // namespace patina::swim
