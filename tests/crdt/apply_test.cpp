// The receive pipeline: chunked versions out of order with duplicates, empty
// ranges, skipping what is known, atomicity on a bad batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "crdt/apply.hpp"
#include "test_db.hpp"

namespace patina::crdt {
namespace {

using testing::site_of;
using testing::TestDb;

struct Node {
  TestDb db;
  Bookkeeper books;
  explicit Node(SiteId s) : db(s), books(open_books(db)) {}
  static Bookkeeper open_books(TestDb& d) {
    d.exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER)");
    d.crr_table("t");
    return *Bookkeeper::open(d.db);
  }
};

std::vector<Incoming> everything_from(TestDb& src, std::size_t max_bytes) {
  std::vector<Incoming> out;
  for (std::int64_t v = 1; v <= src.crr->db_version(); ++v) {
    auto rows = *changes_for_version(*src.crr, src.crr->site_id(), v);
    if (rows.empty()) {
      out.push_back(Incoming{Changeset{src.crr->site_id(), 0, {}, 0, 0, {}}, Range{v, v}});
      continue;
    }
    std::int64_t last = 0;
    for (const auto& c : rows) last = std::max(last, c.seq);
    for (auto& cs : ChangesetChunker::chunk(src.crr->site_id(), v, Range{0, last}, last, 0, rows, max_bytes))
      out.push_back(Incoming{std::move(cs), std::nullopt});
  }
  return out;
}

TEST(ChangeApplier, OutOfOrderChunksWithDuplicatesConverge) {
  Node a{site_of(0xa1)}, b{site_of(0xb2)};
  a.db.exec("BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) "
            "INSERT INTO t SELECT i, printf('%.50c', 'v'), i FROM n; COMMIT");
  a.db.exec("INSERT INTO t VALUES (1000, 'x', 1)");
  a.db.exec("UPDATE t SET a = 'y', b = 2 WHERE id = 1000");  // version 2 becomes empty
  a.db.exec("DELETE FROM t WHERE id = 5");
  auto batch = everything_from(a.db, 1024);
  ASSERT_GT(batch.size(), 10u);
  auto dup = batch;
  batch.insert(batch.end(), dup.begin(), dup.begin() + 5);
  std::mt19937_64 rng(7);
  std::shuffle(batch.begin(), batch.end(), rng);
  // Deliver in three batches.
  std::size_t third = batch.size() / 3;
  std::size_t applied_versions = 0;
  for (std::size_t start = 0; start < batch.size(); start += third) {
    std::span<const Incoming> part(batch.data() + start, std::min(third, batch.size() - start));
    ChangeApplier applier(*b.db.crr, b.books);
    auto r = applier.apply(part);
    ASSERT_TRUE(r) << r.error().message;
    applied_versions += r->versions_applied.size();
  }
  EXPECT_EQ(applied_versions, 3u);  // versions 1, 3, 4 (2 arrives as empty)
  const std::string q = "SELECT id, a, b FROM t ORDER BY id";
  EXPECT_EQ(b.db.dump(q), a.db.dump(q));
  for (std::int64_t v = 1; v <= 4; ++v) EXPECT_TRUE(b.books.contains_version(a.db.crr->site_id(), v)) << v;
  EXPECT_TRUE(b.books.actor(a.db.crr->site_id())->partials.empty());
  EXPECT_TRUE(b.books.check()) << b.books.check().error().message;
  // Everything again: all skipped.
  ChangeApplier applier(*b.db.crr, b.books);
  auto again = applier.apply(batch);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->changes_applied, 0u);
  EXPECT_TRUE(again->versions_applied.empty());
}

TEST(ChangeApplier, BadBatchLeavesNothingBehind) {
  Node a{site_of(0xa1)}, b{site_of(0xb2)};
  a.db.exec("INSERT INTO t VALUES (1, 'x', 1)");
  a.db.exec("INSERT INTO t VALUES (2, 'y', 2)");
  auto batch = everything_from(a.db, 8192);
  ASSERT_EQ(batch.size(), 2u);
  batch[1].changeset.changes[0].seq = 99;  // outside its changeset: the batch fails
  ChangeApplier applier(*b.db.crr, b.books);
  auto r = applier.apply(batch);
  ASSERT_FALSE(r);
  EXPECT_EQ(b.db.dump("SELECT count(*) FROM t"), "(0) ");
  EXPECT_EQ(b.books.actor(a.db.crr->site_id()), nullptr);
  EXPECT_TRUE(b.books.check());
}

}  // namespace
}  // namespace patina::crdt

namespace patina::crdt {
namespace {

TEST(ChangeApplier, VersionsFromANewerSchemaWaitForIt) {
  Node a{testing::site_of(0xa1)}, b{testing::site_of(0xb2)};
  a.db.exec("ALTER TABLE t ADD COLUMN extra TEXT");
  ASSERT_TRUE(a.db.crr->make_crr("t"));
  a.db.exec("INSERT INTO t VALUES (1, 'x', 1, 'new')");  // v1 names a column b lacks
  a.db.exec("INSERT INTO t (id, a) VALUES (2, 'y')");     // v2 too (every column is recorded)
  a.db.exec("CREATE TABLE other (id INTEGER PRIMARY KEY NOT NULL)");
  ASSERT_TRUE(a.db.crr->make_crr("other"));
  a.db.exec("INSERT INTO other VALUES (7)");              // v3: a table b lacks
  auto batch = everything_from(a.db, 8192);
  ChangeApplier applier(*b.db.crr, b.books);
  auto r = applier.apply(batch);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->deferred.size(), 3u);
  EXPECT_EQ(b.db.dump("SELECT count(*) FROM t"), "(0) ");
  EXPECT_FALSE(b.books.contains_version(a.db.crr->site_id(), 1));
  EXPECT_TRUE(b.books.check());
  // The schema catches up: the buffered versions go in.
  b.db.exec("ALTER TABLE t ADD COLUMN extra TEXT");
  ASSERT_TRUE(b.db.crr->make_crr("t"));
  b.db.exec("CREATE TABLE other (id INTEGER PRIMARY KEY NOT NULL)");
  ASSERT_TRUE(b.db.crr->make_crr("other"));
  auto again = applier.retry_deferred();
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(again->deferred.empty());
  EXPECT_EQ(again->versions_applied.size(), 3u);
  EXPECT_EQ(b.db.dump("SELECT * FROM t ORDER BY id"), a.db.dump("SELECT * FROM t ORDER BY id"));
  EXPECT_EQ(b.db.dump("SELECT * FROM other"), "(7) ");
  for (std::int64_t v = 1; v <= 3; ++v) EXPECT_TRUE(b.books.contains_version(a.db.crr->site_id(), v));
  EXPECT_TRUE(b.books.check());
}

TEST(ChangeApplier, OneBufferedVersionIsMergedOnRequestOnceItsSchemaIsHere) {
  Node a{testing::site_of(0xa1)}, b{testing::site_of(0xb2)};
  a.db.exec("CREATE TABLE other (id INTEGER PRIMARY KEY NOT NULL)");
  ASSERT_TRUE(a.db.crr->make_crr("other"));
  a.db.exec("INSERT INTO other VALUES (7)");  // v1
  a.db.exec("INSERT INTO other VALUES (8)");  // v2
  const SiteId& actor = a.db.crr->site_id();
  ChangeApplier applier(*b.db.crr, b.books);
  ASSERT_TRUE(applier.apply(everything_from(a.db, 8192)));
  // Unknown versions, and versions not buffered at all, are refused.
  auto none = applier.apply_buffered(actor, 9);
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_FALSE(none->has_value());
  // Still no table: the version stays buffered, and says so.
  auto early = applier.apply_buffered(actor, 1);
  ASSERT_TRUE(early) << early.error().message;
  ASSERT_TRUE(early->has_value());
  EXPECT_EQ((*early)->deferred.size(), 1u);
  EXPECT_FALSE(b.books.contains_version(actor, 1));
  b.db.exec("CREATE TABLE other (id INTEGER PRIMARY KEY NOT NULL)");
  ASSERT_TRUE(b.db.crr->make_crr("other"));
  // Only the version asked for goes in.
  auto one = applier.apply_buffered(actor, 1);
  ASSERT_TRUE(one) << one.error().message;
  ASSERT_TRUE(one->has_value());
  EXPECT_TRUE((*one)->deferred.empty());
  EXPECT_EQ((*one)->versions_applied.size(), 1u);
  EXPECT_EQ((*one)->changed_rows.count("other"), 1u);
  EXPECT_EQ(b.db.dump("SELECT * FROM other"), "(7) ");
  EXPECT_TRUE(b.books.contains_version(actor, 1));
  EXPECT_FALSE(b.books.contains_version(actor, 2));
  // Applied versions are no longer buffered.
  auto again = applier.apply_buffered(actor, 1);
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->has_value());
  EXPECT_TRUE(b.books.check());
}

}  // namespace
}  // namespace patina::crdt

#include "crdt/sync_needs.hpp"

namespace patina::crdt {
namespace {

// Found by the cluster simulator (tests/sim, seed 9): a node holds version 1
// of A as a partial (its tail chunk lost); by the time it syncs, A's later
// writes superseded every change of that tail, so A stores the version with a
// highest seq below the real last_seq. The Partial request must still be
// answered with the requested seqs (holes) and the real last_seq, or the
// version stays partial forever.
TEST(ChangeApplier, PartialWhoseTailWasSupersededCompletesBySync) {
  Node a(site_of(0xA1));
  Node c(site_of(0xC3));
  a.db.exec("BEGIN; INSERT INTO t VALUES (1, 'x', 1); INSERT INTO t VALUES (2, 'y', 2); COMMIT");
  auto v1 = *changes_for_version(*a.db.crr, a.db.crr->site_id(), 1);
  std::int64_t last = 0;
  for (const auto& ch : v1) last = std::max(last, ch.seq);
  // C got the head of version 1 only: row 1's changes.
  std::vector<Change> head;
  std::int64_t head_end = 0;
  for (const auto& ch : v1)
    if (ch.pk == v1.front().pk) {
      head.push_back(ch);
      head_end = std::max(head_end, ch.seq);
    }
  ASSERT_LT(head_end, last);
  Changeset first{a.db.crr->site_id(), 1, Range{0, head_end}, last, 0, head};
  ChangeApplier(*c.db.crr, c.books).apply(std::vector<Incoming>{Incoming{first, std::nullopt}}).value();
  ASSERT_FALSE(c.books.contains_version(a.db.crr->site_id(), 1));
  // A then rewrites row 2 entirely: version 1's tail seqs are gone at A.
  a.db.exec("UPDATE t SET a = 'z', b = 3 WHERE id = 2");

  auto ours = SyncState::from(c.db.crr->site_id(), c.db.crr->db_version(), c.books);
  auto theirs = SyncState::from(a.db.crr->site_id(), a.db.crr->db_version(), a.books);
  std::vector<Incoming> got;
  for (const auto& req : SyncNeeds::compute(ours, theirs)) {
    if (req.kind == SyncRequest::Kind::partial) {
      auto served = serve_partial(*a.db.crr, a.books, req.actor, req.versions.start, req.seqs);
      ASSERT_TRUE(served) << served.error().message;
      ASSERT_FALSE(served->empty()) << "the superseded tail must still be served";
      for (auto& cs : *served) {
        EXPECT_EQ(cs.last_seq, last);
        got.push_back(Incoming{std::move(cs), std::nullopt});
      }
    } else {
      auto served = serve_versions(*a.db.crr, a.books, req.actor, req.versions);
      ASSERT_TRUE(served);
      for (auto& cs : served->changesets) got.push_back(Incoming{std::move(cs), std::nullopt});
    }
  }
  ChangeApplier(*c.db.crr, c.books).apply(got).value();
  EXPECT_TRUE(c.books.contains_version(a.db.crr->site_id(), 1));
  EXPECT_TRUE(c.books.contains_version(a.db.crr->site_id(), 2));
  EXPECT_TRUE(c.books.check());
  EXPECT_EQ(c.db.dump("SELECT * FROM t ORDER BY id"), a.db.dump("SELECT * FROM t ORDER BY id"));
}

// A chunk reporting a smaller last_seq (served from a store that lost the
// superseded tail) must not pull the partial's last_seq below seqs it holds.
TEST(ChangeApplier, PartialKeepsTheLargestLastSeq) {
  Node c(site_of(0xC3));
  const SiteId b = site_of(0xB2);
  auto& books = c.books;
  ASSERT_TRUE(books.record_partial(b, 1, Range{4, 5}, 5, 0, {}));
  auto done = books.record_partial(b, 1, Range{0, 1}, 1, 0, {});
  ASSERT_TRUE(done);
  EXPECT_FALSE(*done);
  EXPECT_EQ(books.actor(b)->partials.at(1).last_seq, 5);
  EXPECT_TRUE(books.check());
}

}  // namespace
}  // namespace patina::crdt
