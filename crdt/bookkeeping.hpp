#pragma once
// Bookkeeper: which versions of each actor this node has (Corrosion's "bookie").
//
// Per actor: `max`, the highest version known to exist; `needed`, the gaps
// below max not yet received; `partials`, versions received in part (their
// seq ranges so far, last_seq and ts), whose rows wait in the buffer until
// every seq of 0..last_seq is there; `cleared`, versions known to carry no
// rows (superseded, or empty when received).
//
// A version v is known iff v <= max, v is not needed and v is not partial;
// (v, seqs) is known iff v is known, or v is partial and has all those seqs.
// Recording versions V: max = max(max, end(V)); if start(V) > max + 1 the
// versions in between become needed; V leaves `needed`.
//
// Persistence: __patina_bookkeeping_heads (max), __patina_bookkeeping_gaps
// (needed), __patina_bookkeeping_cleared, __patina_seq_bookkeeping (partial
// seq ranges), __patina_buffered_changes (rows of partials). Each mutation
// writes the database and memory together; call it inside the same SQLite
// transaction as the changes it describes. If that transaction rolls back,
// call reload() so memory matches the database again. check() compares the
// two and the invariants.

#include <map>
#include <memory>
#include <optional>
#include <span>

#include "crdt/change.hpp"
#include "crdt/error.hpp"
#include "crdt/range_set.hpp"

struct sqlite3;

namespace patina::crdt {
namespace detail {
class StmtCache;
}

struct PartialVersion {
  RangeSet seqs;
  std::int64_t last_seq = 0;
  std::uint64_t ts = 0;
  bool complete() const { return seqs.contains(Range{0, last_seq}); }
  bool operator==(const PartialVersion&) const = default;
};

struct ActorBooks {
  std::int64_t max = 0;
  RangeSet needed;
  RangeSet cleared;
  std::map<std::int64_t, PartialVersion> partials;
  bool operator==(const ActorBooks&) const = default;
};

class Bookkeeper {
 public:
  // Creates the tables if needed and loads them.
  static Result<Bookkeeper> open(sqlite3* db);

  const std::map<SiteId, ActorBooks>& actors() const { return actors_; }
  const ActorBooks* actor(const SiteId& id) const;
  bool contains_version(const SiteId& actor, std::int64_t version) const;
  bool contains(const SiteId& actor, std::int64_t version, Range seqs) const;

  // Versions fully applied (their rows merged).
  Result<void> record_applied(const SiteId& actor, Range versions);
  // Versions known to carry no rows (Empty changesets, or nothing impacted).
  Result<void> record_cleared(const SiteId& actor, Range versions);
  // Part of a version: buffers |rows| (all of |actor|'s |version|, within
  // |seqs|) and records the seq range. Returns true when the version is now
  // complete: take it with buffered() and finish with record_applied().
  Result<bool> record_partial(const SiteId& actor, std::int64_t version, Range seqs,
                              std::int64_t last_seq, std::uint64_t ts, std::span<const Change> rows);
  // Buffered rows of a partial version, ordered by seq.
  Result<std::vector<Change>> buffered(const SiteId& actor, std::int64_t version) const;

  // `sync reconcile-gaps`: |actor|'s gap rows rewritten as the fewest ranges
  // (overlapping and adjacent rows merged), and taken as its gaps in memory:
  // the database is the durable record. Rows deleted and inserted; both 0
  // when the rows were already minimal and memory agreed.
  struct GapsRewrite {
    std::size_t deleted = 0;
    std::size_t inserted = 0;
  };
  Result<GapsRewrite> collapse_gaps(const SiteId& actor);
  // Actors with at least one gap row in the database.
  Result<std::vector<SiteId>> actors_with_gaps() const;

  // Re-reads everything from the database (after a rollback).
  Result<void> reload();
  // Verifies memory == database and the invariants; the error names the first
  // difference.
  Result<void> check() const;

 private:
  explicit Bookkeeper(sqlite3* db);
  static Result<std::map<SiteId, ActorBooks>> load(sqlite3* db);
  Result<void> mark_versions(const SiteId& actor, Range versions);
  Result<void> persist_actor(const SiteId& actor);
  Result<void> drop_partial(const SiteId& actor, std::int64_t version);

  sqlite3* db_;
  std::shared_ptr<detail::StmtCache> statements_;  // writes run once per applied version
  std::map<SiteId, ActorBooks> actors_;
};

}  // namespace patina::crdt
