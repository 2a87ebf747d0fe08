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

}  // namespace
}  // namespace patina::crdt
