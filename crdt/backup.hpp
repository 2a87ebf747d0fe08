#pragma once
// BackupCleaner: node-neutral snapshots and identity on restore (SPEC.md §7.1-7.2).
//
// Clock rows name their writer by an ordinal into __patina_sites, where
// ordinal 0 means "this node". A backup must not carry a "this node", or every
// node restored from it would claim the writes of the node that made it:
// make_node_neutral() moves the site at ordinal 0 to a fresh ordinal and
// rewrites the clocks to match, so they name that site explicitly. The site's
// versions stay known (bookkeeping heads), so a restored node does not fetch
// them again.
//
// On restore, adopt_identity() does the reverse for a chosen site id (keeping
// a node's identity and history); without it, CrrTables::open() on the
// neutral snapshot gives the node a fresh identity.
//
// Both work on a plain connection to the copy (no CrrTables needed), inside a
// SAVEPOINT: all or nothing. Both are idempotent.

#include <span>
#include <string>

#include "crdt/change.hpp"
#include "crdt/error.hpp"

struct sqlite3;

namespace patina::crdt {

class BackupCleaner {
 public:
  // |clear_tables|: node-local tables to empty in the copy (e.g. members).
  static Result<void> make_node_neutral(sqlite3* copy, std::span<const std::string> clear_tables = {});
  // Makes |site| the identity (ordinal 0) of |snapshot|; any other identity the
  // snapshot still has is made neutral first.
  static Result<void> adopt_identity(sqlite3* snapshot, const SiteId& site);
};

}  // namespace patina::crdt
