#pragma once
// RangeSet: a set of int64 held as disjoint, non-adjacent closed intervals.
//
// Used for version ranges (applied, gaps, cleared) and seq ranges of partial
// versions. Invariant: intervals are sorted, each has start <= end, and no two
// touch or overlap (inserting [1,2] and [3,4] yields [1,4]), so equality of
// two sets is equality of their interval lists.

#include <cstdint>
#include <map>
#include <vector>

namespace patina::crdt {

struct Range {
  std::int64_t start = 0;
  std::int64_t end = 0;  // inclusive
  bool operator==(const Range&) const = default;
  std::int64_t size() const { return end - start + 1; }
};

class RangeSet {
 public:
  RangeSet() = default;
  RangeSet(std::initializer_list<Range> ranges) {
    for (const auto& r : ranges) insert(r);
  }

  void insert(Range r);
  void insert(std::int64_t v) { insert(Range{v, v}); }
  void remove(Range r);
  void remove(const RangeSet& other) {
    for (const auto& r : other.ranges()) remove(r);
  }
  bool contains(std::int64_t v) const;
  bool contains(Range r) const;  // every value of r
  bool overlaps(Range r) const;
  bool empty() const { return map_.empty(); }
  void clear() { map_.clear(); }
  std::int64_t count() const;  // number of values
  // The parts of |within| not in this set.
  RangeSet gaps(Range within) const;
  // The parts of |within| in this set.
  RangeSet intersect(Range within) const;
  std::vector<Range> ranges() const;
  bool operator==(const RangeSet&) const = default;

 private:
  std::map<std::int64_t, std::int64_t> map_;  // start -> end
};

}  // namespace patina::crdt
