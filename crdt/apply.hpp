#pragma once
// ChangeApplier: the receive side of replication (SPEC.md §5.6 step 3).
//
// Takes a batch of changesets from peers (full or partial chunks of versions,
// and "empty" version ranges) and, in ONE savepoint, brings the tables and the
// Bookkeeper forward:
//   * a changeset of a version already known (all its seqs) is skipped;
//   * a changeset covering its whole version (seqs 0..last_seq) is merged now
//     and the version recorded as applied (as cleared when nothing survived);
//   * a chunk of a bigger version is buffered; when its version becomes
//     complete the buffered rows are merged in seq order and it is applied;
//   * an empty range is recorded as cleared;
//   * a version that cannot be merged because it names a table or column this
//     node does not have yet (a peer with a newer schema) stays buffered, is
//     reported as deferred, and is merged by retry_deferred() after the
//     schema catches up; the rest of the batch goes on.
// Changes originating from this node are ignored (we are their source).
//
// Invariants: atomic (on error the savepoint is rolled back and the
// Bookkeeper reloaded, so memory and database still agree); nobody ever sees
// half a version, since rows of a version reach the tables only once all of
// its seqs are here.

#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "crdt/bookkeeping.hpp"
#include "crdt/changeset.hpp"
#include "crdt/crr_tables.hpp"
#include "crdt/merge.hpp"

namespace patina::crdt {

struct Incoming {
  // A changeset (chunk) of one version, or, when empty_versions is set, a
  // range of versions of `changeset.actor` known to carry no rows.
  Changeset changeset;
  std::optional<Range> empty_versions;
};

struct ApplyReport {
  std::size_t changes_applied = 0;  // incoming rows that changed local state
  std::size_t changes_noop = 0;     // merged but lost or already known
  std::size_t skipped_known = 0;    // changesets skipped: version already known
  std::vector<std::pair<SiteId, std::int64_t>> versions_applied;  // newly complete
  std::map<std::string, PkSet> changed_rows;  // for subscriptions
  std::vector<std::pair<SiteId, std::int64_t>> deferred;  // complete but not mergeable yet
};

class ChangeApplier {
 public:
  ChangeApplier(CrrTables& tables, Bookkeeper& books) : tables_(tables), books_(books) {}
  Result<ApplyReport> apply(std::span<const Incoming> batch);
  // Tries again every complete version still buffered (after a schema change).
  Result<ApplyReport> retry_deferred();
  // Merges one buffered version (`sync process-buffered-changes`): nullopt
  // when |actor|'s |version| is not buffered with all of its seqs. A version
  // that still names a table or column we lack stays buffered and is
  // reported in `deferred`.
  Result<std::optional<ApplyReport>> apply_buffered(const SiteId& actor, std::int64_t version);

 private:
  Result<void> apply_one(const Incoming& in, ApplyReport& report);
  Result<void> merge_version(const SiteId& actor, std::int64_t version, std::span<const Change> rows,
                             ApplyReport& report, bool buffered);
  // A version buffered with all of its seqs, merged in seq order.
  Result<void> merge_buffered(const SiteId& actor, std::int64_t version, ApplyReport& report);
  Result<ApplyReport> in_savepoint(const std::function<Result<void>(ApplyReport&)>& body);

  CrrTables& tables_;
  Bookkeeper& books_;
};

}  // namespace patina::crdt
