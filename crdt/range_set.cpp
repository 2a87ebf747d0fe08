#include "crdt/range_set.hpp"

#include <algorithm>
#include <limits>

namespace patina::crdt {

void RangeSet::insert(Range r) {
  if (r.start > r.end) return;
  // Merge with any interval that overlaps or touches [start, end].
  auto it = map_.upper_bound(r.start);
  if (it != map_.begin()) {
    auto prev = std::prev(it);
    if (prev->second == std::numeric_limits<std::int64_t>::max() || prev->second + 1 >= r.start) it = prev;
  }
  while (it != map_.end() && (r.end == std::numeric_limits<std::int64_t>::max() || it->first <= r.end + 1)) {
    r.start = std::min(r.start, it->first);
    r.end = std::max(r.end, it->second);
    it = map_.erase(it);
  }
  map_[r.start] = r.end;
}

void RangeSet::remove(Range r) {
  if (r.start > r.end) return;
  auto it = map_.upper_bound(r.start);
  if (it != map_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= r.start) it = prev;
  }
  while (it != map_.end() && it->first <= r.end) {
    auto [s, e] = *it;
    it = map_.erase(it);
    if (s < r.start) map_[s] = r.start - 1;
    if (e > r.end) {
      map_[r.end + 1] = e;
      break;
    }
  }
}

bool RangeSet::contains(std::int64_t v) const { return contains(Range{v, v}); }

bool RangeSet::contains(Range r) const {
  auto it = map_.upper_bound(r.start);
  if (it == map_.begin()) return false;
  --it;
  return it->first <= r.start && it->second >= r.end;
}

bool RangeSet::overlaps(Range r) const { return !intersect(r).empty(); }

std::int64_t RangeSet::count() const {
  std::int64_t n = 0;
  for (const auto& [s, e] : map_) n += e - s + 1;
  return n;
}

RangeSet RangeSet::intersect(Range within) const {
  RangeSet out;
  for (const auto& [s, e] : map_) {
    if (e < within.start) continue;
    if (s > within.end) break;
    out.insert(Range{std::max(s, within.start), std::min(e, within.end)});
  }
  return out;
}

RangeSet RangeSet::gaps(Range within) const {
  RangeSet out;
  if (within.start > within.end) return out;
  out.insert(within);
  for (const auto& r : intersect(within).ranges()) out.remove(r);
  return out;
}

std::vector<Range> RangeSet::ranges() const {
  std::vector<Range> out;
  out.reserve(map_.size());
  for (const auto& [s, e] : map_) out.push_back(Range{s, e});
  return out;
}

}  // namespace patina::crdt
