#pragma once
// SyncNeeds: what to ask a peer for, given both sides' bookkeeping (SPEC.md §5.7).
//
// A SyncState summarises a node's Bookkeeper: per actor its head (max
// version), its needed version ranges (gaps) and, for partial versions, the
// seq ranges it is still missing. compute() is a pure function from (our
// state, the peer's state) to requests:
//   for each actor in the peer's heads (not ourselves, head > 0), with the
//   peer's haves = 1..head minus its gaps and its partial versions:
//   (a) our gaps overlapping the peer's haves -> Full{overlap};
//   (b) our partial versions the peer has fully -> Partial{version, our missing
//       seqs}; partial on both sides -> Partial{the seqs the peer has and we lack};
//   (c) head above ours -> Full{our head + 1 .. peer head}.
// Full ranges are split into requests of at most max_versions_per_request
// versions. Which peer serves which request, and deduplication across peers
// in a round, belong to the sync driver.

#include <map>
#include <vector>

#include "crdt/bookkeeping.hpp"
#include "crdt/change.hpp"
#include "crdt/range_set.hpp"

namespace patina::crdt {

struct SyncState {
  SiteId actor{};
  std::map<SiteId, std::int64_t> heads;
  std::map<SiteId, RangeSet> need;
  std::map<SiteId, std::map<std::int64_t, RangeSet>> partial_need;  // missing seqs
  bool operator==(const SyncState&) const = default;

  // From a Bookkeeper; |own_head| is this node's local db_version.
  static SyncState from(const SiteId& self, std::int64_t own_head, const Bookkeeper& books);
};

struct SyncRequest {
  enum class Kind { full, partial };
  Kind kind = Kind::full;
  SiteId actor{};
  Range versions;  // full: the versions; partial: {version, version}
  RangeSet seqs;   // partial only
  bool operator==(const SyncRequest&) const = default;
};

class SyncNeeds {
 public:
  static constexpr std::int64_t max_versions_per_request = 10;
  static std::vector<SyncRequest> compute(const SyncState& ours, const SyncState& theirs);
};

}  // namespace patina::crdt
