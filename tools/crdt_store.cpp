#include "tools/crdt_store.hpp"

#include <chrono>
#include <random>
#include <set>

#include <fmt/format.h>

#include "core/sqlite.hpp"

namespace patina::tools {

Error to_error(const crdt::Error& e) {
  switch (e.code) {
    case crdt::ErrorCode::sqlite: {
      Error out = core::sqlite_error(e.sqlite_code, nullptr);
      out.message = e.message;
      return out;
    }
    case crdt::ErrorCode::invalid_input:
    case crdt::ErrorCode::schema: return Error{Errc::invalid_argument, e.message};
    case crdt::ErrorCode::not_found: return Error{Errc::not_found, e.message};
    case crdt::ErrorCode::corrupt: return Error{Errc::internal, e.message};
  }
  return Error{Errc::internal, e.message};
}

std::uint64_t ntp64_now() {
  auto since = std::chrono::system_clock::now().time_since_epoch();
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
  auto frac = std::chrono::duration_cast<std::chrono::nanoseconds>(since - secs).count();
  auto fraction = static_cast<std::uint64_t>((static_cast<unsigned __int128>(frac) << 32) / 1'000'000'000u);
  return (static_cast<std::uint64_t>(secs.count()) << 32) | fraction;
}

Result<void> CrdtStore::open(core::Db& db, const std::vector<crdt::SchemaSource>& schema) {
  crdt::CrrOptions options;
  std::random_device rd;
  for (auto& b : options.new_site_id) b = static_cast<std::uint8_t>(rd());
  auto tables = crdt::CrrTables::open(db.get(), options);
  if (!tables) return tl::unexpected(to_error(tables.error()));
  tables_ = std::move(*tables);
  actor_id_ = crdt::to_hex(tables_->site_id());
  auto books = crdt::Bookkeeper::open(db.get());
  if (!books) return tl::unexpected(to_error(books.error()));
  books_.emplace(std::move(*books));
  auto changes = apply_schema(schema);
  if (!changes) return tl::unexpected(changes.error());
  // The schema files may have changed while we were stopped.
  if (auto merged = retry_deferred(); !merged) return tl::unexpected(merged.error());
  return {};
}

Result<crdt::SchemaChanges> CrdtStore::apply_schema(const std::vector<crdt::SchemaSource>& schema) {
  auto parsed = crdt::SchemaManager::parse(schema);
  if (!parsed) return tl::unexpected(to_error(parsed.error()));
  crdt::SchemaManager manager(*tables_);
  auto applied = manager.apply(*parsed);
  if (!applied) return tl::unexpected(to_error(applied.error()));
  return *applied;
}

Result<std::vector<crdt::Changeset>> CrdtStore::local_changesets(core::Db&, std::int64_t version) {
  auto changes = crdt::changes_for_version(*tables_, tables_->site_id(), version);
  if (!changes) return tl::unexpected(to_error(changes.error()));
  if (changes->empty()) return std::vector<crdt::Changeset>{};
  std::int64_t last_seq = changes->back().seq;
  std::uint64_t ts = changes->front().ts;
  return crdt::ChangesetChunker::chunk(tables_->site_id(), version, crdt::Range{0, last_seq}, last_seq, ts,
                                       std::move(*changes));
}

Result<crdt::ApplyReport> CrdtStore::apply_remote(const std::vector<crdt::Incoming>& batch) {
  crdt::ChangeApplier applier(*tables_, *books_);
  auto r = applier.apply(batch);
  if (!r) return tl::unexpected(to_error(r.error()));
  return *r;
}

std::vector<bool> CrdtStore::unknown(const std::vector<crdt::Incoming>& batch) const {
  std::vector<bool> out;
  out.reserve(batch.size());
  for (const auto& in : batch) {
    if (in.changeset.actor == tables_->site_id()) {
      out.push_back(false);  // our own versions are never news to us
      continue;
    }
    if (in.empty_versions) {
      // Known iff below max, in no gap, and no partial inside the range.
      const crdt::Range r = *in.empty_versions;
      const crdt::ActorBooks* a = books_->actor(in.changeset.actor);
      bool known = a != nullptr && a->max >= r.end && !a->needed.overlaps(r);
      if (known) {
        auto p = a->partials.lower_bound(r.start);
        known = p == a->partials.end() || p->first > r.end;
      }
      out.push_back(!known);
    } else {
      out.push_back(!books_->contains(in.changeset.actor, in.changeset.version, in.changeset.seqs));
    }
  }
  return out;
}

Result<void> CrdtStore::check_books() const {
  if (auto r = books_->check(); !r) {
    return tl::unexpected(Error{Errc::internal, "bookkeeping inconsistent: " + r.error().message});
  }
  return {};
}

Result<void> CrdtStore::reload_books() {
  if (auto r = books_->reload(); !r) return tl::unexpected(to_error(r.error()));
  return {};
}

Result<crdt::ApplyReport> CrdtStore::retry_deferred() {
  crdt::ChangeApplier applier(*tables_, *books_);
  auto r = applier.retry_deferred();
  if (!r) return tl::unexpected(to_error(r.error()));
  return *r;
}

Result<std::optional<crdt::ApplyReport>> CrdtStore::apply_buffered(const crdt::SiteId& actor, std::int64_t version) {
  crdt::ChangeApplier applier(*tables_, *books_);
  auto r = applier.apply_buffered(actor, version);
  if (!r) return tl::unexpected(to_error(r.error()));
  return *r;
}

Result<std::vector<CrdtStore::GapsReconciled>> CrdtStore::reconcile_gaps() {
  auto stored = books_->actors_with_gaps();
  if (!stored) return tl::unexpected(to_error(stored.error()));
  // Gaps only memory holds are reconciled too (the database has none for them).
  std::set<crdt::SiteId> actors(stored->begin(), stored->end());
  for (const auto& [actor, books] : books_->actors())
    if (!books.needed.empty()) actors.insert(actor);
  std::vector<GapsReconciled> out;
  for (const auto& actor : actors) {
    auto r = books_->collapse_gaps(actor);
    if (!r) return tl::unexpected(to_error(r.error()));
    out.push_back(GapsReconciled{actor, *r});
  }
  return out;
}

Result<CrdtStore::VersionState> CrdtStore::version_state(const crdt::SiteId& actor, std::int64_t version) {
  VersionState out;
  const crdt::ActorBooks* books = books_->actor(actor);
  if (books != nullptr) {
    if (auto it = books->partials.find(version); it != books->partials.end()) {
      out.kind = VersionState::Kind::partial;
      out.partial = it->second;
      return out;
    }
  }
  // Our own versions are not in the bookkeeping: the clocks say what exists.
  const bool ours = actor == tables_->site_id();
  if (!ours && !books_->contains_version(actor, version)) return out;
  if (ours && (version < 1 || version > tables_->db_version())) return out;
  auto changes = crdt::changes_for_version(*tables_, actor, version);
  if (!changes) return tl::unexpected(to_error(changes.error()));
  if (changes->empty()) {
    out.kind = VersionState::Kind::cleared;
    return out;
  }
  out.kind = VersionState::Kind::current;
  out.db_version = changes->back().db_version;
  out.last_seq = changes->back().seq;
  return out;
}

crdt::SyncState CrdtStore::sync_state() const {
  return crdt::SyncState::from(tables_->site_id(), tables_->db_version(), *books_);
}

Result<CrdtStore::Served> CrdtStore::serve_sync(const crdt::SyncState& theirs, std::size_t max_bytes) {
  Served out;
  std::size_t bytes = 0;
  for (const auto& req : crdt::SyncNeeds::compute(theirs, sync_state())) {
    if (bytes >= max_bytes) break;  // the peer asks again next round
    if (req.kind == crdt::SyncRequest::Kind::full) {
      auto served = crdt::serve_versions(*tables_, *books_, req.actor, req.versions);
      if (!served) return tl::unexpected(to_error(served.error()));
      for (auto& cs : served->changesets) {
        for (const auto& c : cs.changes) bytes += crdt::estimated_size(c);
        out.changesets.push_back(std::move(cs));
      }
      for (const auto& r : served->empty.ranges()) out.empty.emplace_back(req.actor, r);
    } else {
      auto served = crdt::serve_partial(*tables_, *books_, req.actor, req.versions.start, req.seqs);
      if (!served) return tl::unexpected(to_error(served.error()));
      for (auto& cs : *served) {
        for (const auto& c : cs.changes) bytes += crdt::estimated_size(c);
        out.changesets.push_back(std::move(cs));
      }
    }
  }
  return out;
}

Result<void> CrdtStore::begin_request(core::Db&) {
  // Requests share group-committed transactions: each takes its own version
  // from the mark on (see CrrTables::mark).
  mark_ = tables_->mark();
  tables_->set_ts(ntp64_now());
  return {};
}

Result<std::optional<std::int64_t>> CrdtStore::finish_request(core::Db&) {
  return tables_->end_version().db_version;
}

void CrdtStore::abort_request(core::Db&) {
  // The writer rolls the request's savepoint back; the version it had taken
  // goes back to the next request.
  tables_->restore(mark_);
}

std::optional<std::string> CrdtStore::refuse_write(std::string_view table) const {
  auto starts = [&](std::string_view p) { return table.substr(0, p.size()) == p; };
  if (starts("__patina") || starts("__corro") || starts("crsql_") || starts("sqlite_") ||
      table.find("__crsql_") != std::string_view::npos) {
    return fmt::format("table {} is internal to Patina and cannot be written through the API", table);
  }
  if (!tables_->is_crr(table)) {
    return fmt::format("table {} is not replicated (it is not declared in the schema), so writes to it would "
                       "never reach other nodes",
                       table);
  }
  return std::nullopt;
}

Result<std::map<std::string, crdt::PkSet>> CrdtStore::migrate(core::Db&, const std::vector<std::string>& statements) {
  std::string sql;
  for (const auto& s : statements) sql += s + ";\n";
  std::vector<crdt::SchemaSource> sources{{"POST /v1/migrations", sql}};
  auto r = apply_schema(sources);
  if (!r) return tl::unexpected(r.error());
  // Inside the migration's writer job: if merging the waiting versions
  // fails, the migration is refused too, and nothing is half-applied.
  auto merged = retry_deferred();
  if (!merged) return tl::unexpected(merged.error());
  return std::move(merged->changed_rows);
}

}  // namespace patina::tools
