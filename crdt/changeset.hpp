#pragma once
// Changesets: reading a node's changes back out, and cutting them into chunks.
//
// A changeset is (actor, version, seq range, last_seq, ts, changes). A version
// is the set of changes one transaction of `actor` made, numbered by seq
// 0..last_seq; changes superseded later are gone, so a version may have
// holes or no rows at all (then it is sent as "empty", see SPEC.md §5.8).
// ChangesetChunker cuts a version into changesets of about max_bytes each,
// whose seq ranges are contiguous and together cover exactly the requested
// range, so a receiver knows it has everything when its ranges cover
// 0..last_seq, holes included.

#include <optional>
#include <vector>

#include "crdt/change.hpp"
#include "crdt/crr_tables.hpp"
#include "crdt/error.hpp"
#include "crdt/range_set.hpp"

namespace patina::crdt {

struct Changeset {
  SiteId actor{};
  std::int64_t version = 0;
  Range seqs;                 // seqs this changeset covers (holes included)
  std::int64_t last_seq = 0;  // of the whole version
  std::uint64_t ts = 0;
  std::vector<Change> changes;  // ordered by seq, all within seqs
  bool operator==(const Changeset&) const = default;
};

class ChangesetChunker {
 public:
  static constexpr std::size_t default_max_bytes = 8 * 1024;

  // Cuts |changes| (all of one actor's |version|, sorted by seq, within
  // |range|) into changesets of at most about |max_bytes| (a single change
  // larger than that gets a changeset of its own). Pure.
  static std::vector<Changeset> chunk(const SiteId& actor, std::int64_t version, Range range,
                                      std::int64_t last_seq, std::uint64_t ts,
                                      std::vector<Change> changes,
                                      std::size_t max_bytes = default_max_bytes);
};

// All changes currently stored for |actor|'s |version|, ordered by seq.
Result<std::vector<Change>> changes_for_version(CrrTables& tables, const SiteId& actor,
                                                std::int64_t version);
// Changes of |actor| with db_version > |after|, ordered by (db_version, seq);
// at most |limit| rows when given.
Result<std::vector<Change>> changes_since(CrrTables& tables, const SiteId& actor, std::int64_t after,
                                          std::optional<std::size_t> limit = std::nullopt);
// Every version of |actor| in |versions| that still has rows.
Result<RangeSet> versions_with_rows(CrrTables& tables, const SiteId& actor, Range versions);

}  // namespace patina::crdt

namespace patina::crdt {

class Bookkeeper;

// What a node sends for a Full{versions} request of |actor| (SPEC.md §5.7
// "Serving"): versions with rows as chunked changesets (newest first is the
// caller's choice; these come oldest first), versions buffered here as
// partials from their buffered rows with the seq ranges received, versions
// known but without rows coalesced into `empty` ranges, and versions this node
// lacks (gaps, above its head) skipped.
struct ServedVersions {
  std::vector<Changeset> changesets;
  RangeSet empty;
};

// |own_head| is this node's local db_version, used when |actor| is this node.
Result<ServedVersions> serve_versions(CrrTables& tables, const Bookkeeper& books, const SiteId& actor,
                                      Range versions,
                                      std::size_t max_bytes = ChangesetChunker::default_max_bytes);
// A Partial{version, seqs} request: the rows of those seqs (stored or buffered).
Result<std::vector<Changeset>> serve_partial(CrrTables& tables, const Bookkeeper& books, const SiteId& actor,
                                             std::int64_t version, const RangeSet& seqs,
                                             std::size_t max_bytes = ChangesetChunker::default_max_bytes);

}  // namespace patina::crdt
