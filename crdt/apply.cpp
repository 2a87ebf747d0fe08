#include "crdt/apply.hpp"

#include "crdt/detail/sqlite.hpp"

namespace patina::crdt {

Result<void> ChangeApplier::merge_version(const SiteId& actor, std::int64_t version,
                                          std::span<const Change> rows, ApplyReport& report, bool buffered) {
  Merger merger(tables_);
  auto m = merger.apply(rows);  // its own savepoint: a failure leaves nothing
  if (!m) {
    if (m.error().code != ErrorCode::invalid_input) return tl::unexpected(m.error());
    // Unknown table or column: keep the version buffered until our schema
    // catches up, rather than failing everything else in the batch.
    report.deferred.emplace_back(actor, version);
    if (buffered || rows.empty()) return {};
    std::int64_t last = 0;
    for (const auto& c : rows) last = std::max(last, c.seq);
    auto r = books_.record_partial(actor, version, Range{0, last}, last, rows.front().ts, rows);
    if (!r) return tl::unexpected(r.error());
    return {};
  }
  report.changes_applied += m->num_applied();
  report.changes_noop += m->num_noop();
  for (auto& [table, pks] : m->changed_rows) report.changed_rows[table].insert(pks.begin(), pks.end());
  report.versions_applied.emplace_back(actor, version);
  // A version none of whose rows survived anywhere is cleared (SPEC.md §5.6).
  if (m->num_applied() == 0) return books_.record_cleared(actor, Range{version, version});
  return books_.record_applied(actor, Range{version, version});
}

Result<void> ChangeApplier::apply_one(const Incoming& in, ApplyReport& report) {
  const Changeset& cs = in.changeset;
  if (cs.actor == tables_.site_id()) return {};
  if (in.empty_versions) {
    if (in.empty_versions->start < 1 || in.empty_versions->start > in.empty_versions->end)
      return make_error(ErrorCode::invalid_input, "apply: bad empty version range");
    return books_.record_cleared(cs.actor, *in.empty_versions);
  }
  if (cs.version < 1 || cs.seqs.start < 0 || cs.seqs.start > cs.seqs.end || cs.seqs.end > cs.last_seq)
    return make_error(ErrorCode::invalid_input, "apply: bad changeset header");
  for (const auto& c : cs.changes)
    if (c.site_id != cs.actor || c.db_version != cs.version || c.seq < cs.seqs.start || c.seq > cs.seqs.end)
      return make_error(ErrorCode::invalid_input, "apply: change outside its changeset");
  if (books_.contains(cs.actor, cs.version, cs.seqs)) {
    ++report.skipped_known;
    return {};
  }
  const bool whole = cs.seqs.start == 0 && cs.seqs.end == cs.last_seq;
  const ActorBooks* a = books_.actor(cs.actor);
  const bool has_partial = a && a->partials.count(cs.version);
  if (whole && !has_partial) return merge_version(cs.actor, cs.version, cs.changes, report, false);
  auto complete = books_.record_partial(cs.actor, cs.version, cs.seqs, cs.last_seq, cs.ts, cs.changes);
  if (!complete) return tl::unexpected(complete.error());
  if (!*complete) return {};
  return merge_buffered(cs.actor, cs.version, report);
}

Result<void> ChangeApplier::merge_buffered(const SiteId& actor, std::int64_t version, ApplyReport& report) {
  auto rows = books_.buffered(actor, version);
  if (!rows) return tl::unexpected(rows.error());
  return merge_version(actor, version, *rows, report, true);
}

Result<ApplyReport> ChangeApplier::in_savepoint(const std::function<Result<void>(ApplyReport&)>& body) {
  sqlite3* db = tables_.db();
  if (auto r = detail::exec(db, "SAVEPOINT patina_apply"); !r) return tl::unexpected(r.error());
  ApplyReport report;
  if (auto r = body(report); !r) {
    (void)detail::exec(db, "ROLLBACK TO patina_apply; RELEASE patina_apply");
    (void)books_.reload();
    return tl::unexpected(r.error());
  }
  if (auto r = detail::exec(db, "RELEASE patina_apply"); !r) {
    (void)books_.reload();
    return tl::unexpected(r.error());
  }
  return report;
}

Result<ApplyReport> ChangeApplier::apply(std::span<const Incoming> batch) {
  return in_savepoint([&](ApplyReport& report) -> Result<void> {
    for (const auto& in : batch)
      if (auto r = apply_one(in, report); !r) return r;
    return {};
  });
}

Result<ApplyReport> ChangeApplier::retry_deferred() {
  return in_savepoint([&](ApplyReport& report) -> Result<void> {
    std::vector<std::pair<SiteId, std::int64_t>> complete;
    for (const auto& [actor, books] : books_.actors())
      for (const auto& [version, partial] : books.partials)
        if (partial.complete()) complete.emplace_back(actor, version);
    for (const auto& [actor, version] : complete)
      if (auto r = merge_buffered(actor, version, report); !r) return r;
    return {};
  });
}

Result<std::optional<ApplyReport>> ChangeApplier::apply_buffered(const SiteId& actor, std::int64_t version) {
  const ActorBooks* a = books_.actor(actor);
  if (a == nullptr) return std::optional<ApplyReport>();
  auto it = a->partials.find(version);
  if (it == a->partials.end() || !it->second.complete()) return std::optional<ApplyReport>();
  auto report = in_savepoint([&](ApplyReport& r) { return merge_buffered(actor, version, r); });
  if (!report) return tl::unexpected(report.error());
  return std::optional<ApplyReport>(std::move(*report));
}

}  // namespace patina::crdt
