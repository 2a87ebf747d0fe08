#pragma once
// CrdtStore: the API's LocalStore over crdt/ (CrrTables + SchemaManager).
// Lives on the writer thread: open() runs in the writer's init, every other
// call inside writer jobs; only actor_id() is read from other threads (it is
// fixed once open() returned).

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/local_store.hpp"
#include "crdt/apply.hpp"
#include "crdt/bookkeeping.hpp"
#include "crdt/changeset.hpp"
#include "crdt/crr_tables.hpp"
#include "crdt/sync_needs.hpp"
#include "crdt/schema.hpp"

namespace patina::tools {

Error to_error(const crdt::Error& e);

// Now as an NTP64 timestamp (seconds since the Unix epoch << 32 | fraction).
std::uint64_t ntp64_now();

class CrdtStore final : public api::LocalStore {
 public:
  // Makes |db| ready for CRDT use (a new random site id for a new database)
  // and applies |schema|.
  Result<void> open(core::Db& db, const std::vector<crdt::SchemaSource>& schema);
  // Re-applies schema sources (reload); returns what changed.
  Result<crdt::SchemaChanges> apply_schema(const std::vector<crdt::SchemaSource>& schema);

  Result<void> begin_request(core::Db& db) override;
  Result<std::optional<std::int64_t>> finish_request(core::Db& db) override;
  void abort_request(core::Db& db) override;
  std::optional<std::string> refuse_write(std::string_view table) const override;
  Result<std::map<std::string, crdt::PkSet>> migrate(core::Db& db, const std::vector<std::string>& statements) override;
  std::string actor_id() const override { return actor_id_; }

  crdt::CrrTables& tables() { return *tables_; }

  // Replication, on the writer thread: this node's |version| as chunked
  // changesets, and a batch of changesets from peers merged atomically.
  Result<std::vector<crdt::Changeset>> local_changesets(core::Db& db, std::int64_t version) override;
  Result<crdt::ApplyReport> apply_remote(const std::vector<crdt::Incoming>& batch);
  // Per changeset of |batch|: whether it carries (part of) a version the
  // bookkeeping does not know yet. Call before apply_remote.
  std::vector<bool> unknown(const std::vector<crdt::Incoming>& batch) const;

  // Anti-entropy, on the writer thread: our state, and what a peer with
  // |theirs| lacks that we have (at most about |max_bytes| of changesets).
  crdt::SyncState sync_state() const;
  struct Served {
    std::vector<crdt::Changeset> changesets;
    std::vector<std::pair<crdt::SiteId, crdt::Range>> empty;
  };
  Result<Served> serve_sync(const crdt::SyncState& theirs, std::size_t max_bytes);

  // Bookkeeping in memory against the database, and its invariants.
  Result<void> check_books() const;
  // Bookkeeping re-read from the database, after a transaction that may have
  // changed it in memory was rolled back. Writer thread, outside a job.
  Result<void> reload_books();

  // Versions buffered because they named a table or column we lacked,
  // merged now that the schema may have caught up (after a schema reload or
  // a migration). Writer thread, inside a job.
  Result<crdt::ApplyReport> retry_deferred();
  // `sync process-buffered-changes`: one buffered version merged; nullopt
  // when it is not buffered with all of its seqs.
  Result<std::optional<crdt::ApplyReport>> apply_buffered(const crdt::SiteId& actor, std::int64_t version);
  // `sync reconcile-gaps`: every actor's gap rows collapsed (Bookkeeper::collapse_gaps).
  struct GapsReconciled {
    crdt::SiteId actor;
    crdt::Bookkeeper::GapsRewrite rewrite;
  };
  Result<std::vector<GapsReconciled>> reconcile_gaps();
  // `actor version`: what this node holds of |actor|'s |version|.
  struct VersionState {
    enum class Kind { unknown, partial, current, cleared } kind = Kind::unknown;
    crdt::PartialVersion partial;  // Kind::partial
    std::int64_t db_version = 0;   // Kind::current: as recorded in the clocks
    std::int64_t last_seq = 0;     // Kind::current
  };
  Result<VersionState> version_state(const crdt::SiteId& actor, std::int64_t version);

 private:
  std::unique_ptr<crdt::CrrTables> tables_;
  std::optional<crdt::Bookkeeper> books_;
  std::string actor_id_;
  crdt::TxMark mark_{};  // taken when the request in progress began
};

}  // namespace patina::tools
