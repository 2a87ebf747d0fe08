#pragma once
// tests/sim/checkers.hpp — what must hold, after every event and at the end.
//
// After every event (on the node that handled it):
//  (1) a live node never believes itself down (never Defunct, never lists
//      its own address as a member);
//  (2) its own (identity ts, incarnation) never goes back, across restarts;
//  (3) within one life, the incarnation it holds for a member identity never
//      goes back, and an address's identity never gets older;
//  (4) a version (actor, version) is never applied twice by one node, across
//      restarts (the persisted bookkeeping must remember it);
//  (5) no node relays one changeset chunk twice, across restarts (the
//      origin's own broadcast of its chunk counts as its one relay);
//  (6) nothing the node did failed (apply, serve, decode).
//
// At the end of the liveness phase (everything healed and restarted):
//  (7) equal membership views: every node sees exactly the other nodes'
//      current identities, all Alive;
//  (8) empty queues: apply queues, broadcast batches, SWIM updates waiting
//      to be piggy-backed;
//  (9) complete bookkeeping: every node knows every version of every actor
//      up to that actor's db_version, no gaps, no partials;
// (10) identical contents: per-table digests equal on every node;
// (11) every acknowledged write is present or superseded per the merge
//      rules (a larger cl; or, at equal cl, a larger col_version, or an equal
//      col_version with a value at least as large);
// (12) Bookkeeper::check(): memory equals database, invariants hold.

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "crdt/changeset.hpp"
#include "tests/sim/sim_node.hpp"

namespace patina::sim {

/// A write the client got a commit for.
struct AckedWrite {
  std::uint32_t node = 0;
  std::int64_t version = 0;
  Instant at{};
  std::vector<crdt::Change> changes;
};

class Checkers {
 public:
  explicit Checkers(std::size_t nodes);

  /// Per-event invariants (1)-(6); returns the first violation, or "".
  std::string after_event(const SimNode& node, const Outbox& out);
  /// A node restarted: per-life state (3) starts again.
  void restarted(std::uint32_t node);

  /// (7)-(9): why the cluster has not converged yet, or "" when it has.
  static std::string pending(std::vector<std::unique_ptr<SimNode>>& nodes);
  /// (10)-(12), once pending() is empty.
  static std::string final_checks(std::vector<std::unique_ptr<SimNode>>& nodes,
                                   const std::vector<AckedWrite>& acked);

  std::size_t versions_applied() const { return applied_count_; }
  /// (3) walks every member a node holds: O(n) per event. Large clusters
  /// check it on every |period|-th event of each node instead.
  void set_member_check_period(std::size_t period) { member_check_period_ = std::max<std::size_t>(period, 1); }

 private:
  struct PerNode {
    std::pair<std::uint64_t, std::uint64_t> self_seen{0, 0};
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> incarnation_seen;
    std::set<std::pair<crdt::SiteId, std::int64_t>> applied;
    std::set<ChunkKey> forwarded;
    std::size_t events = 0;
  };
  std::vector<PerNode> nodes_;
  std::size_t applied_count_ = 0;
  std::size_t member_check_period_ = 1;
};

}  // namespace patina::sim
