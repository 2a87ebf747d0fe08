#include "crdt/sync_needs.hpp"

namespace patina::crdt {

SyncState SyncState::from(const SiteId& self, std::int64_t own_head, const Bookkeeper& books) {
  SyncState s;
  s.actor = self;
  if (own_head > 0) s.heads[self] = own_head;
  for (const auto& [id, a] : books.actors()) {
    if (id == self) continue;
    if (a.max > 0) s.heads[id] = a.max;
    if (!a.needed.empty()) s.need[id] = a.needed;
    for (const auto& [v, p] : a.partials) {
      auto missing = p.seqs.gaps(Range{0, p.last_seq});
      if (!missing.empty()) s.partial_need[id][v] = missing;
    }
  }
  return s;
}

namespace {

void add_full(std::vector<SyncRequest>& out, const SiteId& actor, Range r) {
  for (std::int64_t v = r.start; v <= r.end; v += SyncNeeds::max_versions_per_request) {
    std::int64_t end = std::min(r.end, v + SyncNeeds::max_versions_per_request - 1);
    out.push_back(SyncRequest{SyncRequest::Kind::full, actor, Range{v, end}, {}});
  }
}

}  // namespace

std::vector<SyncRequest> SyncNeeds::compute(const SyncState& ours, const SyncState& theirs) {
  std::vector<SyncRequest> out;
  for (const auto& [actor, head] : theirs.heads) {
    if (actor == ours.actor || head <= 0) continue;
    RangeSet haves{Range{1, head}};
    if (auto it = theirs.need.find(actor); it != theirs.need.end()) haves.remove(it->second);
    const std::map<std::int64_t, RangeSet>* their_partials = nullptr;
    if (auto it = theirs.partial_need.find(actor); it != theirs.partial_need.end()) {
      their_partials = &it->second;
      for (const auto& [v, missing] : it->second) haves.remove(Range{v, v});
    }
    auto our_head_it = ours.heads.find(actor);
    const std::int64_t our_head = our_head_it == ours.heads.end() ? 0 : our_head_it->second;
    // (a) our gaps the peer can fill.
    if (auto it = ours.need.find(actor); it != ours.need.end())
      for (const auto& gap : it->second.ranges())
        for (const auto& r : haves.intersect(gap).ranges()) add_full(out, actor, r);
    // (b) our partial versions.
    if (auto it = ours.partial_need.find(actor); it != ours.partial_need.end()) {
      for (const auto& [v, missing] : it->second) {
        if (v > head) continue;
        if (haves.contains(v)) {
          out.push_back(SyncRequest{SyncRequest::Kind::partial, actor, Range{v, v}, missing});
        } else if (their_partials) {
          auto pit = their_partials->find(v);
          if (pit == their_partials->end()) continue;
          RangeSet wanted = missing;
          wanted.remove(pit->second);  // they lack those too
          if (!wanted.empty())
            out.push_back(SyncRequest{SyncRequest::Kind::partial, actor, Range{v, v}, wanted});
        }
      }
    }
    // (c) everything above our head.
    if (head > our_head) add_full(out, actor, Range{our_head + 1, head});
  }
  return out;
}

}  // namespace patina::crdt
