#pragma once
// CrrTables: one SQLite connection made ready for CRDT use (cr-sqlite semantics).
//
// open() creates the bookkeeping tables if needed, loads or persists the
// node's 16-byte site id (given by the caller: crdt/ never draws randomness),
// registers the change-capture SQL functions and the commit/rollback hooks,
// and loads the replicated ("CRR") tables. make_crr() turns a plain table into
// a replicated one.
//
// Storage, per replicated table T (names as cr-sqlite's, so operators who know
// Corrosion find them):
//   T__crsql_pks(__crsql_key INTEGER PRIMARY KEY, __crsql_pk BLOB UNIQUE, <pk cols>)
//       maps a row's packed pk to a small integer key; kept after a delete so
//       the tombstone keeps its identity.
//   T__crsql_clock(key, col_name, col_version, db_version, site_id, seq, ts)
//       one entry per written cell plus the '-1' sentinel entry of the row;
//       site_id is an ordinal into __patina_sites (0 = this node).
// Global: __patina_sites(ordinal, site_id), __patina_db_versions(site_id,
// db_version) (the highest version seen per site; this node's row is its local
// db_version), __patina_crdt_config(key, value), __patina_crrs(name), and the
// read-only view crsql_changes("table", pk, cid, val, col_version, db_version,
// site_id, cl, seq, ts).
//
// Invariants:
//  (1) A transaction that records at least one change gets exactly one new
//      db_version = last committed + 1; one that records nothing leaves the
//      version alone. seq counts 0,1,2,... over the changes recorded in that
//      transaction (superseded ones leave gaps). With group commit, each job
//      closed by end_version() is its own version instead (see mark()).
//  (2) Merged changes keep their originator's (site_id, db_version, seq); only
//      local writes advance the local db_version.
//  (3) Clock writes happen inside the statement that changed the row, so a
//      failing statement or a rolled-back transaction leaves no stray clock.
//  (4) One CrrTables per connection, used from one thread. The writer's owns
//      the connection's commit and rollback hooks (do not install others).
//      Read-only connections may open one too, to read and serve changes.
//
// INSERT OR REPLACE over a live row: with PRAGMA recursive_triggers OFF (the
// default, and what the oracle cases and DESIGN.md assume) it bumps every
// column's col_version and keeps cl; with it ON, SQLite fires the delete
// trigger first and the row comes back as a resurrection (cl + 2, cv 1), as
// cr-sqlite does. Both converge; OFF is the intended setting.
//
// Why triggers and not the preupdate hook: the preupdate hook must not write to
// the database, so clock rows would have to be written later from a log, and a
// statement that fails half-way (a multi-row INSERT hitting a constraint, an
// OR ROLLBACK conflict) would need that log unwound by hand. AFTER triggers that
// call our C++ functions run inside the statement itself: SQLite rolls their
// writes back together with the row change, for free. They also make writes from
// a connection that lacks our functions fail loudly ("no such function")
// instead of silently bypassing capture (Corrosion issue #366).

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crdt/change.hpp"
#include "crdt/error.hpp"

namespace patina::crdt {

namespace detail {
struct TableState;
}

struct CrrOptions {
  // Identity to persist when the database has none yet (a fresh file, or a
  // cleaned backup). Ignored when the database already has one.
  SiteId new_site_id{};
  // When set, stored in the database; otherwise the stored setting (default
  // on, as in Corrosion) is used.
  std::optional<bool> merge_equal_values;
};

struct TableInfo {
  std::string name;
  std::vector<std::string> pks;      // in PRIMARY KEY order (the packing order)
  std::vector<std::string> non_pks;  // in declaration order
};

// Where the open transaction stands, to undo one group-committed job.
struct TxMark {
  std::int64_t pending = -1;
  std::int64_t seq = 0;
  std::int64_t floor = -1;
  std::uint64_t schema_epoch = 0;
};

// What a local transaction recorded, as seen right before it commits.
struct LocalCommit {
  std::optional<std::int64_t> db_version;  // nullopt: nothing recorded (no-op)
  std::int64_t last_seq = -1;              // highest seq used, -1 if none
};

class CrrTables {
 public:
  static Result<std::unique_ptr<CrrTables>> open(sqlite3* db, const CrrOptions& options);
  ~CrrTables();
  CrrTables(const CrrTables&) = delete;
  CrrTables& operator=(const CrrTables&) = delete;

  // Makes |table| replicated (like crsql_as_crr). Validates the table (non-null
  // pk, defaults on NOT NULL columns, no unique index besides the pk, no foreign
  // key, no AUTOINCREMENT). Rows already present are recorded as one new local
  // version. Calling it again on a CRR re-reads its columns (after ADD COLUMN)
  // and records nothing.
  Result<void> make_crr(std::string_view table);
  // Checks a table against the CRR rules without changing anything.
  static Result<TableInfo> inspect(sqlite3* db, std::string_view table);

  // Re-reads the registry of replicated tables from the database. Done
  // automatically (on next use) after a rollback, or a restore(), that undid a
  // schema change; call it yourself after rolling back to a savepoint of your
  // own that did.
  Result<void> reload();

  bool is_crr(std::string_view table) const;
  const TableInfo* table_info(std::string_view table) const;
  std::vector<std::string> crr_names() const;

  sqlite3* db() const { return db_; }
  const SiteId& site_id() const { return site_id_; }
  // Last committed local db_version (0 on a fresh database). Kept current by
  // the commit hook on the connection that writes; on a read-only connection
  // it is as of open(): use stored_db_version() there.
  std::int64_t db_version() const { return db_version_; }
  // This node's db_version as the database says now (what this connection sees).
  Result<std::int64_t> stored_db_version() const;
  // The version the current (or next) local transaction gets; does not consume it.
  std::int64_t peek_next_db_version() const {
    return pending_ >= 0 ? pending_ : std::max(db_version_, floor_) + 1;
  }
  // State of the open transaction: what it would commit as right now.
  LocalCommit current_tx() const;

  // Group commit: several jobs (API requests) in one SQLite transaction, each
  // its own version. Before a job's SAVEPOINT take mark(); after it succeeds
  // call end_version(), which returns what the job recorded and makes the next
  // recorded change open a new version (seq from 0); after ROLLBACK TO its
  // savepoint call restore(mark) so the version it had taken is reused. The
  // COMMIT then publishes the highest version.
  TxMark mark() const { return TxMark{pending_, seq_, floor_, schema_epoch_}; }
  void restore(const TxMark& m) {
    pending_ = m.pending;
    seq_ = m.seq;
    floor_ = m.floor;
    // A schema change made by the undone job is gone from the database too.
    if (schema_epoch_ != m.schema_epoch) registry_stale_ = true;
  }
  LocalCommit end_version();

  // HLC timestamp stamped on local changes from now on (crsql_set_ts).
  void set_ts(std::uint64_t ts) {
    ts_ = ts;
    ts_text_ = std::to_string(ts);
  }
  const std::string& ts_text() const { return ts_text_; }
  std::uint64_t ts() const { return ts_; }

  bool merge_equal_values() const { return merge_equal_values_; }
  Result<void> set_merge_equal_values(bool on);

  // Local transactions for the writer: BEGIN IMMEDIATE ... COMMIT. commit()
  // returns what the transaction recorded (db_version nullopt for a no-op).
  Result<void> begin();
  Result<LocalCommit> commit();
  Result<void> rollback();

  // Site ordinal bookkeeping (0 = this node). create=false returns nullopt for
  // an unknown site.
  Result<std::optional<std::int64_t>> site_ordinal(const SiteId& site, bool create);
  Result<SiteId> site_for_ordinal(std::int64_t ordinal);

  // Highest db_version seen per site (this node's entry is db_version()).
  Result<std::map<SiteId, std::int64_t>> db_versions();

  // Suspends change capture (used while merging remote changes into tables).
  class CaptureSuspension {
   public:
    explicit CaptureSuspension(CrrTables& t) : t_(t), was_(t.capture_suspended_) {
      t.capture_suspended_ = true;
    }
    ~CaptureSuspension() { t_.capture_suspended_ = was_; }
    CaptureSuspension(const CaptureSuspension&) = delete;
    CaptureSuspension& operator=(const CaptureSuspension&) = delete;

   private:
    CrrTables& t_;
    bool was_;
  };

  // SELECT over every replicated table's clock with crsql_changes' columns,
  // filtered by |clock_where| on the clock alias `c` (e.g. "c.site_id = ?1"),
  // so the filter can use the clock's (site_id, db_version) index. Empty
  // |clock_where| selects everything (that is the crsql_changes view).
  std::string changes_select(const std::string& clock_where) const;

  // Internal: |sql| prepared once and kept while the registry stays the same
  // (any schema change clears the cache), for the queries replication runs
  // after every commit. The caller resets it after use. At most
  // statement_cache_max are kept.
  Result<sqlite3_stmt*> cached_statement(const std::string& sql);
  // The same, found by a short key: |build| makes the SQL only when the key is
  // not cached (the changes query spans every table and runs after each
  // local commit, so building it each time cost more than running it).
  Result<sqlite3_stmt*> cached_statement(const std::string& key, const std::function<std::string()>& build);
  static constexpr std::size_t statement_cache_max = 64;

  // Internal: per-table prepared statements, shared with Merger and capture.
  detail::TableState* state(std::string_view table);
  // Internal: records that |site| has been seen up to |db_version|.
  Result<void> note_db_version(const SiteId& site, std::int64_t db_version);
  // Internal: the local db_version for the open transaction (assigned on first use).
  Result<std::int64_t> next_db_version();
  std::int64_t bump_seq() { return seq_++; }
  bool capture_suspended() const { return capture_suspended_; }

 private:
  explicit CrrTables(sqlite3* db);
  Result<void> init(const CrrOptions& options);
  Result<void> init_body(const CrrOptions& options);
  Result<void> prepare_shared();
  Result<void> load_identity(const CrrOptions& options);
  Result<void> load_table(const std::string& name);
  Result<void> create_triggers(const TableInfo& info);
  Result<void> rebuild_changes_view();
  Result<void> backfill(detail::TableState& st);

  static int on_commit(void* self);
  static void on_rollback(void* self);

  sqlite3* db_;
  SiteId site_id_{};
  std::int64_t db_version_ = 0;
  std::int64_t pending_ = -1;  // db_version of the open transaction, -1 if none yet
  std::int64_t seq_ = 0;       // next seq in the open transaction
  std::int64_t floor_ = -1;    // last version closed by end_version() in this transaction
  std::uint64_t ts_ = 0;
  std::string ts_text_ = "0";
  bool merge_equal_values_ = true;
  bool capture_suspended_ = false;
  std::uint64_t schema_epoch_ = 0;     // bumped by every registry change
  std::uint64_t committed_epoch_ = 0;  // schema_epoch_ when the last transaction ended
  bool registry_stale_ = false;
  void refresh_registry() const;
  std::map<std::string, std::unique_ptr<detail::TableState>, std::less<>> tables_;
  struct StmtFinalizer {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
  };
  std::map<std::string, std::unique_ptr<sqlite3_stmt, StmtFinalizer>, std::less<>> statement_cache_;
  std::uint64_t statement_cache_epoch_ = 0;
  struct Shared;
  std::unique_ptr<Shared> shared_;
};

}  // namespace patina::crdt
