#pragma once
// Merger: applies changes from other sites with cr-sqlite's rules.
//
// For each incoming change, against the local clock entry of the same
// (table, pk, cid), the first rule that differs decides (FACTS.md §6-9):
//   1. causal length: a higher cl wins whatever else; a lower one is ignored.
//      An even cl deletes the row (its column clocks are dropped); an odd cl
//      above the local one resurrects it (other columns' clocks drop to cv 0,
//      so anything newer from the resurrecting site wins).
//   2. same cl: the higher col_version wins.
//   3. same col_version: the greater value (value.hpp order) wins.
//   4. same value: with merge-equal-values on, the greater site id wins (which
//      only rewrites clock metadata); off, the local entry stays.
// A winning change takes the originator's (db_version, site_id, seq) into the
// clock; the local db_version never moves.
//
// Invariants: apply() is atomic (a SAVEPOINT: all of the batch or none of it);
// applying a change twice changes nothing the second time; any order of the
// same set of changes yields the same table contents (the rules above are a
// join on each cell). Change capture is suspended while merging, so merged
// rows are never re-recorded as local writes.

#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "crdt/change.hpp"
#include "crdt/crr_tables.hpp"
#include "crdt/error.hpp"

namespace patina::crdt {

// Orders packed pks bytewise (memcmp, then length).
struct BytesLess {
  bool operator()(const Bytes& a, const Bytes& b) const;
};
using PkSet = std::set<Bytes, BytesLess>;

struct MergeReport {
  // Per input change, in order: true if it changed local state (a row or a
  // clock entry); false for a no-op (lost the conflict, or already known).
  std::vector<bool> applied;
  // Table -> packed pks of rows whose content was inserted, updated or deleted.
  std::map<std::string, PkSet> changed_rows;

  std::size_t num_applied() const;
  std::size_t num_noop() const { return applied.size() - num_applied(); }
};

class Merger {
 public:
  explicit Merger(CrrTables& tables) : tables_(tables) {}

  // Applies |changes| in order inside one SAVEPOINT (nested in the caller's
  // transaction if one is open). On error nothing of the batch remains.
  Result<MergeReport> apply(std::span<const Change> changes);

 private:
  Result<bool> merge_one(const Change& c, MergeReport& report);

  CrrTables& tables_;
};

}  // namespace patina::crdt
